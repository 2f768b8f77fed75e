"""``blurkit experiment``: train the blur regimes, evaluate them together, write an HTML report.

Trains each regime (default: Jang & Tong's standard, weak and strong) on the same images, then
measures every model on the same test images: accuracy vs Gaussian / motion / defocus blur (95%
bootstrap bands, with the Geirhos et al. human low-pass accuracies for reference), critical-sigma
survival curves and the PSNR/SSIM given up at the flip, blur and noise corruption errors (CE / mCE
relative to the standard model) and worst-case blur examples. Writes <out>/report.html (one
self-contained file), results.json and the PNG figures. Blur levels are pixels at 224 x 224 scaled
to the image size. Finished regimes are not trained again: rerun the same command to resume.
"""

from __future__ import annotations

import argparse

from ..errors import BlurkitError
from . import keyval

EXAMPLES = """examples:
  blurkit experiment                          # Fashion-MNIST, standard/weak/strong, ~10 min on 2 CPU cores
  blurkit experiment --quick --out /tmp/smoke # about a minute: a smoke test
  blurkit experiment --regimes standard,strong,mix --name mix
  blurkit experiment --data photos/ --image-size 64 --channels 3 --model resnet18-cifar --epochs 5
  blurkit experiment --device cuda --train-limit 60000 --test-limit 10000 --epochs 10 --name full
"""


def _regimes(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated regime names, got {text!r}")
    return vals


def add_common(p: argparse.ArgumentParser) -> None:
    """Evaluation options shared by ``experiment`` and ``evaluate``."""
    p.add_argument("--data", help="test/train data: 'fashion-mnist' (default), a folder of IDX files, or an "
                                  "ImageFolder tree root/<class>/<images> (train/ and test/ or val/ inside)")
    p.add_argument("--image-size", type=int, help="image side in px (experiment default 28)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 grey (default, as Jang & Tong), 3 RGB")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1, fastest on a shared 2-core CPU; "
                                               "0: torch's default)")
    p.add_argument("--name", help="run name (report title; output folder runs/<name>)")
    p.add_argument("--out", help="output folder (default runs/<name>)")
    p.add_argument("--test-limit", type=int, help="test images evaluated (default 1000; quick 200)")
    p.add_argument("--seed", type=int, help="seed of the subsets, training and bootstrap (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke-test sizes: finishes in about a minute")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress output")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("experiment", help="train blur regimes, evaluate them, write an HTML report",
                              description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              argument_default=argparse.SUPPRESS)
    p.add_argument("--regimes", type=_regimes, help="comma-separated training regimes (default standard,weak,strong;"
                                                    " see blurkit train --help for the others)")
    p.add_argument("--model", help="architecture: small-cnn (default), resnet18-cifar, resnet18, alexnet, ...")
    p.add_argument("--model-option", action="append", type=keyval, metavar="KEY=VALUE",
                   help="model option (default width=16 for small-cnn), repeatable")
    p.add_argument("--epochs", type=int, help="training epochs per regime (default 2; quick 1)")
    p.add_argument("--train-limit", type=int, help="training images (random subset; default 10000; quick 1024)")
    p.add_argument("--batch-size", type=int, help="training batch size (default 64)")
    p.add_argument("--lr", type=float, help="SGD learning rate (default 0.05, cosine schedule)")
    add_common(p)
    p.set_defaults(func=run, progress=True)


_FIELDS = ("regimes", "model", "epochs", "train_limit", "batch_size", "lr", "data", "image_size", "channels",
           "device", "threads", "name", "out", "test_limit", "seed", "progress")


def build_config(args: argparse.Namespace, fields: tuple[str, ...] = _FIELDS, **extra):
    """An :class:`~blurkit.experiment.runner.ExperimentConfig` from parsed arguments (only those given)."""
    from ..experiment.runner import ExperimentConfig

    kw = {f: getattr(args, f) for f in fields if hasattr(args, f)}
    kw.update(extra)
    if hasattr(args, "model_option"):
        kw["model_options"] = dict(args.model_option)
    elif "model" in kw and kw["model"] != "small-cnn":
        kw["model_options"] = {}
    quick = bool(getattr(args, "quick", False))
    if quick:
        return ExperimentConfig.quick_preset(**kw)
    return ExperimentConfig(**kw)


def run(args: argparse.Namespace) -> int:
    from ..experiment.runner import run_experiment

    cfg = build_config(args)
    try:
        results = run_experiment(cfg)
    except KeyboardInterrupt:
        raise
    except RuntimeError as exc:  # a model option torch refuses, a device failure: one clear line
        raise BlurkitError(f"the experiment failed: {exc}") from exc
    print(f"report: {cfg.out_dir / 'report.html'}")
    from ..experiment.report import claims_text

    for verdict, text in claims_text(results):
        mark = {True: "[replicates]", False: "[does not replicate]", None: "[unclear]"}[verdict]
        print(f"  {mark} {text}")
    return 0
