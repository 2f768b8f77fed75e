"""Sub-commands of the ``blurkit`` command line.

Each module here defines ``add_parser(subparsers)``, which adds one sub-command whose parser has
``func`` set (via ``set_defaults``) to a callable ``func(args) -> int`` returning the exit status.
The argument types shared by several commands live here.
"""

from __future__ import annotations

import argparse
import json

COMMANDS = ("blur", "measure", "train", "evaluate", "experiment", "bench", "neural")


def keyval(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` argument; the value is parsed as JSON when it is JSON (numbers, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v
