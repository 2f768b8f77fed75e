"""``blurkit train``: train a classifier under a blur regime; leaves a checkpoint and a metrics log.

Options come from flags, or from a TOML file (``--config``; flags given on the command line override
it). The resolved configuration is stored beside the checkpoint as ``config.toml`` and ``config.json``,
so ``blurkit train --config runs/x/config.toml`` repeats a run and ``--resume`` continues it exactly.
Sigmas are pixels at 224 x 224 (``--reference-size``), scaled to the training resolution.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BlurkitError
from . import keyval

EXAMPLES = """regimes: standard, weak, strong (Jang & Tong 2024); mix, random-mix, multi-steps (Yoshihara 2023);
  custom (--sigmas/--weights or --sigma-range), schedule (--stages), families, adversarial, consistency,
  deblur-front.  More options per regime: --regime-option KEY=VALUE (JSON values) or a [regime] table.

examples:
  blurkit train --regime strong --epochs 3 --out runs/strong
  blurkit train --regime weak --image-size 64 --channels 3 --model resnet18-cifar --limit 20000
  blurkit train --regime custom --sigmas 0,1,2,4 --weights 4,1,1,1 --eval-sigmas 1,2,4,8
  blurkit train --regime adversarial --regime-option sigma_max=4 --regime-option steps=3
  blurkit train --data photos/ --image-size 128 --channels 3 --skip-bad --model resnet18
  blurkit train --config runs/strong/config.toml --resume        # continue an interrupted run
  torchrun --nproc_per_node=2 -m blurkit train --regime strong --batch-size 128 --out runs/ddp
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _size(text: str) -> int:
    return 0 if text.lower() in ("none", "keep", "0", "") else int(text)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a classifier with blur (regimes, DDP, checkpoints)",
                              description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE", help="options from a TOML (or YAML) file; flags override it")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="'fashion-mnist' (default, Debian's dataset-fashion-mnist), a folder of IDX "
                                  "files or class sub-folders of images, or module:function")
    g.add_argument("--val-data", help="evaluation data (default: test split of --data); 'none' to skip")
    g.add_argument("--image-size", type=_size, help="resize images to this side (default 32; 0 or none: keep)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 (grey repeated / RGB)")
    g.add_argument("--limit", type=int, help="use N training images (Fashion-MNIST: the first N; an image tree or "
                                                "module:function: a fixed random subset, so every class stays)")
    g.add_argument("--val-limit", type=int, help="use N evaluation images (chosen as for --limit)")
    g.add_argument("--skip-bad", action="store_true", help="skip unreadable image files (count reported)")
    g.add_argument("--workers", dest="num_workers", type=int, help="DataLoader workers for image folders")
    g.add_argument("--rotate", type=float, help="random rotation in degrees (Jang & Tong: 10; default 0)")
    g.add_argument("--no-hflip", dest="hflip", action="store_false", help="no random horizontal flips")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="small-cnn (default), resnet18, resnet50, resnet18-cifar, resnet50-cifar, "
                                   "alexnet, or module:function")
    g.add_argument("--blurpool", action="store_true", help="anti-aliased variant (BlurPool, Zhang 2019)")
    g.add_argument("--model-option", dest="model_option", action="append", type=keyval, metavar="KEY=VALUE",
                   help="model option, e.g. width=16, norm=group, stem=cifar (repeatable)")
    g = p.add_argument_group("blur regime")
    g.add_argument("--regime", help="blur regime (see below); default standard")
    g.add_argument("--sigmas", type=_floats, help="custom regime: sigma set, e.g. 0,1,2,4,8")
    g.add_argument("--weights", type=_floats, help="custom regime: weights of --sigmas")
    g.add_argument("--sigma-range", type=_floats, metavar="LOW,HIGH", help="custom regime: uniform sigma range")
    g.add_argument("--stages", metavar="EPOCH:SIGMA,...", help="schedule regime, e.g. 0:4,5:2,10:0")
    g.add_argument("--regime-option", dest="regime_option", action="append", type=keyval, metavar="KEY=VALUE",
                   help="regime option (JSON value), e.g. sigma_max=4, base=\"weak\", views=2 (repeatable)")
    g.add_argument("--reference-size", type=int, help="image side the sigmas refer to (224; 0: pixels as is)")
    g.add_argument("--truncate", type=float, help="kernel radius ceil(truncate*sigma) (default: the regime's)")
    g.add_argument("--eval-sigmas", type=_floats, help="also evaluate at these sigmas, e.g. 1,2,4,8")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="global batch per optimizer step (default 64)")
    g.add_argument("--optimizer", choices=("sgd", "adamw"))
    g.add_argument("--lr", type=float, help="learning rate (default 0.05; the paper: 1e-3 for ImageNet)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--scheduler", choices=("none", "cosine", "step"))
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    g.add_argument("--label-smoothing", type=float)
    g = p.add_argument_group("hardware and run")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    g.add_argument("--threads", type=int, help="torch CPU threads per process (0: default)")
    g.add_argument("--amp", choices=("none", "bf16", "fp16"), help="mixed precision")
    g.add_argument("--channels-last", dest="channels_last", action="store_true", help="force channels_last")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--seed", type=int)
    g.add_argument("--out", help="run folder (checkpoints, metrics, config); default runs/blurkit")
    g.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="continue from OUT/last.pt (or the given checkpoint) if it exists")
    g.add_argument("--save-every-steps", type=int, help="also checkpoint every N optimizer steps")
    g.add_argument("--keep-epoch-checkpoints", action="store_true", help="keep epoch_NNN.pt files")
    g.add_argument("--eval-every", type=int, help="evaluate every N epochs")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """Build the :class:`~blurkit.train.TrainConfig` from parsed arguments (file first, flags on top)."""
    from ..train import TrainConfig

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "debug", "config", "print_config")}
    base = TrainConfig.from_toml(args.config).to_dict() if getattr(args, "config", None) else {}
    regime_options = dict(base.get("regime_options", {}))
    model_options = dict(base.get("model_options", {}))
    for k, v in flags.pop("regime_option", []) or []:
        regime_options[k] = v
    for k, v in flags.pop("model_option", []) or []:
        model_options[k] = v
    if "sigmas" in flags:
        regime_options["sigmas"] = flags.pop("sigmas")
    if "weights" in flags:
        regime_options["weights"] = flags.pop("weights")
    if "sigma_range" in flags:
        rng = flags.pop("sigma_range")
        if len(rng) != 2:
            raise ValueError(f"--sigma-range must be LOW,HIGH; got {rng}")
        regime_options["sigma"] = rng
    if "stages" in flags:
        try:
            regime_options["stages"] = [[int(a), float(b)] for a, b in
                                         (s.split(":") for s in flags.pop("stages").split(","))]
        except ValueError:
            raise ValueError("--stages must look like 0:4,5:2,10:0 (start epoch:sigma)") from None
    if ("sigmas" in regime_options or "sigma" in regime_options) and "regime" not in flags \
            and base.get("regime", "standard") == "standard":
        flags["regime"] = "custom"
    if "stages" in regime_options and "regime" not in flags and base.get("regime", "standard") == "standard":
        flags["regime"] = "schedule"
    base.update(flags)
    base["regime_options"] = regime_options
    base["model_options"] = model_options
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from ..train import train
    from ..train.config import dump_toml

    cfg = config_from_args(args)
    if getattr(args, "print_config", False):
        sys.stdout.write(dump_toml(cfg.to_dict()))
        return 0
    try:
        result = train(cfg)
    except KeyboardInterrupt:
        raise
    except RuntimeError as exc:  # process-group / device failures: one clear line
        raise BlurkitError(f"training failed: {exc}") from exc
    if result.out_dir is not None:
        final = result.final
        parts = [f"{k}={final[k]:.4f}" for k in final if k.startswith(("val_acc", "train_loss")) and final.get(k)
                 is not None]
        print(f"blurkit train: done; checkpoint {result.checkpoint}; " + " ".join(parts))
    return 0
