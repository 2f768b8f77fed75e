"""``blurkit bench``: run the speed tables in ``benchmarks/`` (peers side by side, one run each)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ..errors import BlurkitError

EXAMPLES = """examples:
  blurkit bench                      # every benchmark, one after the other
  blurkit bench blur augment         # only these
  blurkit bench blur -- --quick      # arguments after -- go to the (one) named script
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run the speed benchmarks (benchmarks/*.py)", description=__doc__,
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all); e.g. blur, augment, measure")
    p.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    p.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def find_benchmarks() -> Path:
    """The ``benchmarks/`` folder of the source checkout blurkit runs from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "benchmarks"
        if (cand / "_timing.py").exists():
            return cand
    raise BlurkitError("the benchmarks/ folder was not found: `blurkit bench` runs from a source checkout "
                       "(git clone, then `bash scripts/setup.sh`)")


def available(folder: Path) -> dict[str, Path]:
    out = {}
    for f in sorted(folder.glob("*.py")):
        if f.name.startswith("_"):
            continue
        name = f.stem
        for suffix in ("_throughput", "_speed"):
            name = name.removesuffix(suffix)
        out[name] = f
    return out


def run(args: argparse.Namespace) -> int:
    folder = find_benchmarks()
    scripts = available(folder)
    if args.list:
        for name, f in scripts.items():
            print(f"{name:14s} {f.relative_to(folder.parent)}")
        return 0
    # argparse drops the "--" and puts what follows it among the names: the first name that starts
    # with "-" begins the script's own flags
    given = list(args.names or [])
    cut = next((i for i, a in enumerate(given) if a.startswith("-")), len(given))
    extra = [a for a in [*given[cut:], *(args.extra or [])] if a != "--"]
    names = given[:cut] or list(scripts)
    if extra and len(names) != 1:
        raise BlurkitError(f"script flags ({' '.join(extra)}) differ between the benchmarks: name one benchmark "
                           "to pass them, e.g. `blurkit bench blur -- --quick`")
    unknown = [n for n in names if n not in scripts]
    if unknown:
        raise BlurkitError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(scripts)}")
    status = 0
    for n in names:
        print(f"\n## {n} ({scripts[n].name})\n", flush=True)
        status |= subprocess.call([sys.executable, str(scripts[n]), *extra])
    return status
