"""The ``blurkit`` command line: ``blurkit <command> --help`` for each command.

Errors a user can fix (bad arguments, missing files or data) print one line, ``blurkit: error: ...``,
and exit with status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMANDS
from .errors import BlurkitError

EXAMPLES = """examples:
  blurkit blur photo.png blurred.png --sigma 3
  blurkit measure images/ --csv
  blurkit experiment --quick
  blurkit train --regime strong --epochs 3 --out runs/strong
  blurkit bench
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blurkit", description="Blur for computer vision: make it, train with it, measure it, undo it.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"blurkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue  # command not part of this installation
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("blurkit: interrupted", file=sys.stderr)
        return 130
    except (BlurkitError, ValueError, TypeError, FileNotFoundError, PermissionError, OSError) as exc:
        if args.debug:
            raise
        print(f"blurkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
