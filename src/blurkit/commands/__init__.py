"""Sub-commands of the ``blurkit`` command line.

Each module here defines ``add_parser(subparsers)``, which adds one sub-command whose parser has
``func`` set (via ``set_defaults``) to a callable ``func(args) -> int`` returning the exit status.
"""

COMMANDS = ("blur", "measure", "train", "evaluate", "experiment", "bench", "neural")
