"""``blurkit neural``: score model layers against neural responses (ridge predictivity and RSA)."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BlurkitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

EXAMPLES = """examples:
  # three training regimes, responses (stimuli x units x repetitions), two layers each
  blurkit neural --stimuli stimuli/ --responses it_sites.npy \\
      --checkpoint standard=runs/standard --checkpoint weak=runs/weak --checkpoint strong=runs/strong \\
      --layers features.2 features.5 --pool 4 --out results/neural

  # list the layer names of a checkpoint's model
  blurkit neural --checkpoint runs/strong --list-layers

  # a model of your own: module:function returning an nn.Module, plus a plain state_dict file
  blurkit neural --stimuli stimuli/ --responses voxels.csv --model mypkg.nets:build \\
      --checkpoint mine.pt --image-size 224 --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 \\
      --layers layer3 layer4 --project 2000 --out results/mine

Row i of the responses is the i-th image of --stimuli in sorted file-name order (or the order of
--stimuli-order). Outputs in --out: neural_scores.csv, neural_scores.json and one plot per metric
(predictivity.png, normalized.png when the responses have repetitions, rsa.png).
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "neural", help="compare models with neural responses: ridge predictivity and RSA per layer",
        description="Score each layer of each model against recorded responses to the same stimuli: "
                    "cross-validated ridge predictivity (nested CV for alpha, split-half noise ceiling) "
                    "and representational similarity (RDM correlation), with bootstrap intervals.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stimuli", type=Path, help="folder of stimulus images (sorted by file name)")
    p.add_argument("--stimuli-order", type=Path,
                   help="text file with one image file name per line: the order of the response rows")
    p.add_argument("--responses", type=Path,
                   help="responses: .npy/.npz (stimuli x units [x repetitions]), .csv (stimuli x units, "
                        "empty cells = NaN) or .h5/.hdf5 (needs h5py)")
    p.add_argument("--key", help="array name inside a .npz or .h5 file (default: the only one)")
    p.add_argument("--repetitions-axis", type=int, default=None,
                   help="axis of repetitions in 3-D responses (default 2)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                   help="a blurkit checkpoint (file or run folder), or with --model a plain state_dict; "
                        "repeat for several models")
    p.add_argument("--model", help="'module:function' returning an nn.Module (called without arguments), "
                                   "or a blurkit model name; used for checkpoints that are plain state_dicts")
    p.add_argument("--num-classes", type=int, default=10, help="with --model NAME: output classes")
    p.add_argument("--in-channels", type=int, default=None, help="with --model: input channels (default: "
                                                                  "number of --mean values)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize stimuli to this square size (default: the checkpoint's; 224 with --model)")
    p.add_argument("--mean", type=float, nargs="+", default=None,
                   help="normalisation mean per channel (default: the checkpoint's; 0.449 with --model)")
    p.add_argument("--std", type=float, nargs="+", default=None,
                   help="normalisation std per channel (default: the checkpoint's; 0.226 with --model)")
    p.add_argument("--layers", nargs="+", help="layer names (see --list-layers)")
    p.add_argument("--list-layers", action="store_true", help="print each model's layer names and exit")
    p.add_argument("--pool", default="none", help="spatial pooling: none, avg, max or a grid size (int)")
    p.add_argument("--project", type=int, default=None,
                   help="random-project each layer to this many features (bounds memory)")
    p.add_argument("--metrics", nargs="+", default=["predictivity", "rsa"], choices=["predictivity", "rsa"])
    p.add_argument("--folds", type=int, default=5, help="outer cross-validation folds (default 5)")
    p.add_argument("--inner-folds", type=int, default=None,
                   help="inner folds choosing alpha (default: exact leave-one-out in closed form)")
    p.add_argument("--shared-alpha", action="store_true", help="one ridge alpha for all units")
    p.add_argument("--rdm", default="correlation", choices=["correlation", "euclidean"])
    p.add_argument("--compare", default="spearman", choices=["spearman", "kendall_tau_a", "pearson"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of stimuli (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--cache", type=Path, default=None, help="folder caching layer activations")
    p.add_argument("--out", type=Path, help="output folder")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ io

def load_responses(path: Path, key: str | None = None) -> np.ndarray:
    """Read a responses array from .npy, .npz, .csv or .h5/.hdf5 as float64."""
    if not path.is_file():
        raise BlurkitError(f"responses file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arr = z[_pick_key(list(z.keys()), key, path)]
    elif suffix == ".csv":
        arr = _read_csv(path)
    elif suffix in (".h5", ".hdf5"):
        try:
            import h5py  # type: ignore[import-not-found]
        except ImportError:
            raise BlurkitError(f"{path}: reading .h5 files needs h5py (pip install h5py); or save the "
                               "array as .npy") from None
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            arr = np.asarray(f[_pick_key(names, key, path)])
    else:
        raise BlurkitError(f"{path}: unknown responses format {suffix!r}; use .npy, .npz, .csv, .h5 or .hdf5")
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise BlurkitError(f"{path}: responses must be numeric; got dtype {arr.dtype}") from None


def _pick_key(names: list[str], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in names:
            raise BlurkitError(f"{path}: no array named {key!r}; found {', '.join(names) or 'none'}")
        return key
    if len(names) != 1:
        raise BlurkitError(f"{path} holds {len(names)} arrays ({', '.join(names)}); choose one with --key")
    return names[0]


def _read_csv(path: Path) -> np.ndarray:
    text = path.read_text(encoding="utf-8-sig").splitlines()
    rows = [line.split(",") for line in text if line.strip()]
    if not rows:
        raise BlurkitError(f"{path} is empty")

    def num(cell: str) -> float:
        cell = cell.strip()
        return math.nan if cell == "" or cell.lower() in ("nan", "na") else float(cell)

    try:
        [num(c) for c in rows[0]]
    except ValueError:
        rows = rows[1:]  # header
    try:
        data = [[num(c) for c in r] for r in rows]
    except ValueError as exc:
        raise BlurkitError(f"{path}: non-numeric cell ({exc})") from None
    widths = {len(r) for r in data}
    if len(widths) != 1:
        raise BlurkitError(f"{path}: rows have different numbers of columns {sorted(widths)}")
    return np.asarray(data, dtype=np.float64)


def list_stimuli(folder: Path, order: Path | None = None) -> list[Path]:
    """Image files of ``folder`` sorted by name, or in the order listed in ``order``."""
    if not folder.is_dir():
        raise BlurkitError(f"stimuli folder not found: {folder}")
    if order is not None:
        if not order.is_file():
            raise BlurkitError(f"stimuli order file not found: {order}")
        names = [ln.strip() for ln in order.read_text(encoding="utf-8").splitlines() if ln.strip()]
        files = [folder / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise BlurkitError(f"{len(missing)} stimuli listed in {order} do not exist, e.g. {missing[0]}")
        return files
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if not files:
        raise BlurkitError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def load_stimuli(files: list[Path], size: int, channels: int) -> torch.Tensor:
    """Images as float ``(N, channels, size, size)`` in ``[0, 1]`` (grey if channels == 1; no crop),
    turned upright by their EXIF orientation; 16-bit images are divided by 65535."""
    from .._io import open_upright

    out = torch.empty(len(files), channels, size, size)
    for i, f in enumerate(files):
        try:
            im = open_upright(f)
            if im.mode in ("I;16", "I;16L", "I;16B"):
                arr = torch.from_numpy(np.asarray(im).astype(np.float32) / 65535.0)
                if channels == 3:
                    arr = arr[..., None].expand(-1, -1, 3)
            elif im.mode in ("I", "F"):
                raise BlurkitError(f"{f}: 32-bit ({im.mode}) images have no fixed range; save the stimuli as "
                                   "8- or 16-bit images")
            else:
                im = im.convert("L" if channels == 1 else "RGB")
                arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
        except OSError as exc:
            raise BlurkitError(f"cannot read image {f}: {exc}") from None
        arr = arr[None] if arr.dim() == 2 else arr.permute(2, 0, 1)
        out[i] = torch.nn.functional.interpolate(arr[None], size=(size, size), mode="bilinear",
                                                 align_corners=False, antialias=True)[0]
    return out


# ------------------------------------------------------------------------------------------------ models

def _split_name(spec: str) -> tuple[str | None, str]:
    if "=" in spec:
        name, path = spec.split("=", 1)
        if name and not Path(spec).exists():
            return name, path
    return None, spec


def _default_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    if path.stem in ("last", "best", "final") and path.parent.name:
        return path.parent.name
    return path.stem


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise BlurkitError(f"--model {spec!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BlurkitError(f"--model {spec!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_models(args: argparse.Namespace) -> list[tuple[str, nn.Module, dict[str, Any]]]:
    """(name, model in eval mode, preprocessing info) for each --checkpoint."""
    if not args.checkpoint:
        raise BlurkitError("give at least one --checkpoint (a blurkit checkpoint or, with --model, a state_dict)")
    out: list[tuple[str, nn.Module, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for spec in args.checkpoint:
        name, raw = _split_name(spec)
        path = Path(raw)
        if not path.exists():
            raise BlurkitError(f"checkpoint not found: {path}")
        file = path / "last.pt" if path.is_dir() else path
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
            raise BlurkitError(f"{file}: cannot load ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and state.get("format") == "blurkit-checkpoint":
            from ..train.checkpoint import load_model

            model, info = load_model(file)
            info = dict(info)
        else:
            if not args.model:
                raise BlurkitError(f"{file} is not a blurkit checkpoint; give --model module:function (or a "
                                   "blurkit model name) to build the network its state_dict belongs to")
            mean = args.mean or [0.449]
            in_ch = args.in_channels or (3 if len(mean) == 3 else 1)
            if ":" in args.model:
                model = _resolve(args.model)()
                if not isinstance(model, nn.Module):
                    raise BlurkitError(f"--model {args.model!r} returned {type(model).__name__}, not an nn.Module")
            else:
                from ..models import build_model

                model = build_model(args.model, args.num_classes, in_ch)
            sd = state
            if isinstance(state, dict):
                for k in ("model", "state_dict", "model_state_dict"):
                    if isinstance(state.get(k), dict):
                        sd = state[k]
                        break
            try:
                model.load_state_dict(sd)
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise BlurkitError(f"{file}: weights do not fit --model {args.model!r}: "
                                   f"{str(exc).splitlines()[0]}") from None
            info = {"in_channels": in_ch, "image_size": 224, "mean": list(mean), "std": list(args.std or [0.226])}
        label = name or _default_name(path)
        if label in seen:
            seen[label] += 1
            label = f"{label}-{seen[label]}"
        else:
            seen[label] = 1
        out.append((label, model.eval(), info))
    return out


def _preprocess_options(args: argparse.Namespace, info: dict[str, Any]) -> tuple[int, list[float], list[float], int]:
    if args.image_size is not None and args.image_size < 8:
        raise BlurkitError(f"--image-size must be at least 8 px; got {args.image_size}")
    size = args.image_size or info.get("image_size") or 224
    if isinstance(size, (list, tuple)):
        size = int(size[0])
    mean = list(args.mean or info.get("mean") or [0.449])
    std = list(args.std or info.get("std") or [0.226])
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise BlurkitError(f"--mean and --std need 1 or 3 values each, the same number; got {mean} and {std}")
    in_ch = int(info.get("in_channels") or len(mean))
    return int(size), mean, std, in_ch


def _prepare(images: torch.Tensor, mean: list[float], std: list[float], in_ch: int) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (images - m) / s
    if x.shape[1] != in_ch:
        if x.shape[1] != 1:
            raise BlurkitError(f"cannot feed {x.shape[1]}-channel stimuli to a {in_ch}-channel model")
        x = x.expand(-1, in_ch, -1, -1).contiguous()
    return x


def _parse_pool(text: str) -> str | int | None:
    t = str(text).lower()
    if t in ("none", ""):
        return None
    if t in ("avg", "max"):
        return t
    try:
        g = int(t)
    except ValueError:
        raise BlurkitError(f"--pool must be none, avg, max or an int grid size; got {text!r}") from None
    if g < 1:
        raise BlurkitError(f"--pool grid size must be >= 1; got {g}")
    return g


# ------------------------------------------------------------------------------------------------ run

def run(args: argparse.Namespace) -> int:
    from .. import neural

    models = load_models(args)
    if args.list_layers:
        for name, model, _ in models:
            print(f"{name}: {' '.join(neural.layer_names(model))}")
        return 0
    for flag in ("stimuli", "responses", "layers", "out"):
        if not getattr(args, flag):
            raise BlurkitError(f"--{flag} is required (see blurkit neural --help)")
    pool = _parse_pool(args.pool)
    responses = load_responses(args.responses, args.key)
    files = list_stimuli(args.stimuli, args.stimuli_order)
    if responses.ndim not in (2, 3):
        raise BlurkitError(f"{args.responses}: responses must be 2-D (stimuli x units) or 3-D (stimuli x units x "
                           f"repetitions); got shape {responses.shape}")
    if responses.shape[0] != len(files):
        raise BlurkitError(f"{len(files)} stimulus images in {args.stimuli} but {responses.shape[0]} response rows "
                           f"in {args.responses}; row i must be the i-th image in sorted file-name order")
    n_nan = int(np.isnan(responses).sum())
    if n_nan:
        print(f"note: {n_nan} NaN response values are masked (per unit for predictivity, pairwise for RSA)",
              file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    popt = {"folds": args.folds, "inner_folds": args.inner_folds, "alpha_per_unit": not args.shared_alpha,
            "repetitions_axis": args.repetitions_axis, "bootstrap": args.bootstrap}
    ropt = {"rdm": args.rdm, "compare": args.compare, "repetitions_axis": args.repetitions_axis,
            "bootstrap": args.bootstrap}
    results = neural.NeuralResults()
    stimuli_cache: dict[tuple[int, int], torch.Tensor] = {}
    for name, model, info in models:
        size, mean, std, in_ch = _preprocess_options(args, info)
        key = (size, len(mean))
        if key not in stimuli_cache:
            stimuli_cache[key] = load_stimuli(files, size, len(mean))
        images = _prepare(stimuli_cache[key], mean, std, in_ch)
        model.to(device)
        feats = neural.activations(model, images, args.layers, batch_size=args.batch_size, pool=pool,
                                   project=args.project, seed=args.seed, cache=args.cache, device=device)
        model.cpu()
        print(f"{name}: " + ", ".join(f"{k} {v.shape[1]} features" for k, v in feats.items()), file=sys.stderr)
        results = results + neural.score_layers(feats, responses, model=name, metrics=args.metrics, seed=args.seed,
                                                predictivity_options=popt, rsa_options=ropt)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "neural_scores.csv")
    results.to_json(out / "neural_scores.json")
    written = ["neural_scores.csv", "neural_scores.json"]
    plots = []
    if "predictivity" in args.metrics:
        plots.append("predictivity")
        if any(math.isfinite(r.normalized) for r in results.rows):
            plots.append("normalized")
    if "rsa" in args.metrics:
        plots.append("rsa")
    for metric in plots:
        results.plot(out / f"{metric}.png", metric=metric, title=f"{metric} vs layer depth")
        written.append(f"{metric}.png")
    _print_table(results, args.metrics)
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def _print_table(results: Any, metrics: list[str]) -> None:
    cols = ["model", "layer", "features"]
    if "predictivity" in metrics:
        cols += ["r (95% CI)", "ceiling", "normalised"]
    if "rsa" in metrics:
        cols += ["RSA (95% CI)"]
    lines = []
    for r in results.rows:
        row = [r.model, r.layer, str(r.n_features)]
        if "predictivity" in metrics:
            row += [f"{r.predictivity:.3f} ({r.predictivity_ci_low:.3f}, {r.predictivity_ci_high:.3f})",
                    f"{r.ceiling:.3f}", f"{r.normalized:.3f}"]
        if "rsa" in metrics:
            row += [f"{r.rsa:.3f} ({r.rsa_ci_low:.3f}, {r.rsa_ci_high:.3f})"]
        lines.append(row)
    widths = [max(len(c), *(len(x[i]) for x in lines)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in lines:
        print("  ".join(x.ljust(w) for x, w in zip(row, widths)))
