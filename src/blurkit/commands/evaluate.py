"""``blurkit evaluate``: the experiment's evaluation suite and report for trained checkpoints.

Loads each checkpoint (a ``last.pt`` file or a run folder written by ``blurkit train`` or ``blurkit
experiment``), evaluates all models together on the same test images (accuracy vs blur with
bootstrap bands, critical sigma, blur and noise corruption errors relative to the model named
'standard' or else the first one, worst-case blur) and writes <out>/report.html, results.json and
the figures. The test data and image size default to those the first checkpoint was trained on.
"""

from __future__ import annotations

import argparse

from .experiment import add_common, build_config

EXAMPLES = """examples:
  blurkit evaluate runs/default/regimes/standard runs/default/regimes/strong
  blurkit evaluate runs/strong/last.pt --out runs/eval-strong --test-limit 2000
  blurkit evaluate a.pt b.pt --names baseline,blurred --quick
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate trained checkpoints (blur robustness report)",
                              description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              argument_default=argparse.SUPPRESS)
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint files or run folders")
    p.add_argument("--names", help="comma-separated display names, one per checkpoint "
                                   "(default: each checkpoint's regime)")
    add_common(p)
    p.set_defaults(func=run, progress=True)


def run(args: argparse.Namespace) -> int:
    from ..errors import BlurkitError
    from ..experiment.runner import checkpoint_defaults, evaluate_checkpoints

    paths = list(args.checkpoints)
    names = None
    if hasattr(args, "names"):
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(paths) or not all(names) or len(set(names)) != len(names):
            raise BlurkitError(f"--names needs {len(paths)} distinct non-empty names, one per checkpoint; "
                               f"got {args.names!r}")
    d = checkpoint_defaults(paths[0])
    extra = {"data": getattr(args, "data", d["data"]), "image_size": getattr(args, "image_size", d["image_size"]),
             "channels": getattr(args, "channels", d["channels"]), "model": d["model"], "model_options": {}}
    if not hasattr(args, "name"):
        extra["name"] = "evaluate"
    fields = ("device", "threads", "name", "out", "test_limit", "seed", "progress")
    cfg = build_config(args, fields, **extra)
    evaluate_checkpoints(paths, cfg, names=names, same_size=not hasattr(args, "image_size"))
    print(f"report: {cfg.out_dir / 'report.html'}")
    return 0
