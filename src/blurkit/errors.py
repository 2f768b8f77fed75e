"""Exceptions that the command line turns into one clear line (no traceback)."""

from __future__ import annotations


class BlurkitError(Exception):
    """A user-facing error: bad input, missing data, unreadable file. The message says what to do."""
