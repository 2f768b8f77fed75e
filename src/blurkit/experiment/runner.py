"""Run the blur experiment: train each regime, evaluate all models together, write the report.

:func:`run_experiment` is what ``blurkit experiment`` calls; :func:`evaluate_checkpoints` is what
``blurkit evaluate`` calls; both end in :func:`evaluate_models`, which measures every model on the
same test images and returns the ``results`` dict that :func:`blurkit.experiment.report.render_report`
turns into ``report.html``.

Units. Every blur level in ``results`` (Gaussian sigma, motion length, defocus radius, critical
sigma) is in **pixels at 224 x 224** (``reference_size``), the unit of Jang & Tong's regimes and of
the Geirhos et al. human low-pass data; it is multiplied by ``image_size / reference_size`` before
blurring the test images (``levels_px`` holds the pixels actually applied). So sigma 8 on a 28 px
Fashion-MNIST image is a 1 px blur, the same fraction of the image as 8 px at 224.

``results`` schema (all numbers are fractions unless named otherwise)::

    results["regimes"][name] = {
        "clean_accuracy", "train_seconds", "checkpoint", "history",
        "curves": {family: {"levels", "levels_px", "top1", "ci_low", "ci_high", "auc", "auc_ci"}},
        "critical": {"median", "survival": {"sigma", "fraction"}, "psnr": [...], "ssim": [...],
                     "n_searched", "n_flipped", "median_psnr", "median_ssim"},
        "corruptions": {corruption: [error at severity 1..5]}, "clean_error",
        "corruption_summary": {"mce_blur", "mce_noise", "mce_all", "ce": {corruption: CE}},
        "worst_case": {"n", "flip_rate", "mean_psnr", "isotropic_psnr", "mean_ssim", "isotropic_ssim"},
    }
    results["corruption_table"] = {"headers", "rows"}; results["timings"] = {stage: seconds}
    results["dataset"], results["config"], results["device"], results["created"], results["name"]

Example:
    >>> from blurkit.experiment.runner import ExperimentConfig, run_experiment
    >>> results = run_experiment(ExperimentConfig.quick_preset(out="runs/quick"))
    >>> results["regimes"]["strong"]["curves"]["gaussian"]["auc"]
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BlurkitError

__all__ = ["ExperimentConfig", "run_experiment", "evaluate_models", "evaluate_checkpoints", "make_figures",
           "rerender", "Stages", "DEFAULT_REGIMES", "FIGURES"]

FIGURES = ("examples", "accuracy_gaussian", "accuracy_motion", "accuracy_defocus", "survival", "quality_at_flip",
           "corruptions", "worst_case")
"""Figure keys (``<out>/<key>.png``) in the order the report shows them."""

DEFAULT_REGIMES = ("standard", "weak", "strong")

# training settings compared when deciding whether a finished regime can be reused
_REUSE_KEYS = ("data", "regime", "epochs", "image_size", "channels", "model", "model_options", "batch_size",
               "lr", "seed", "reference_size", "limit")


@dataclass
class ExperimentConfig:
    """Settings of ``blurkit experiment``.

    Blur levels (``gaussian_levels``, ``motion_levels``, ``defocus_levels``, ``critical_max``,
    ``critical_step``) are pixels at ``reference_size`` (224), scaled to ``image_size``.

    The defaults fit the whole run (three regimes trained and evaluated) in 2-8 minutes on a
    2-core CPU: 28 px Fashion-MNIST, 10,000 training images, 2 epochs of a ``small-cnn`` of width 16.
    """

    name: str = "default"
    out: str | None = None                      # default runs/<name>
    data: str | None = None                     # None: Fashion-MNIST; or a folder / spec for load_dataset
    regimes: tuple[str, ...] = DEFAULT_REGIMES
    model: str = "small-cnn"
    model_options: dict[str, Any] = field(default_factory=lambda: {"width": 16})
    epochs: int = 2
    image_size: int = 28
    channels: int = 1
    train_limit: int = 10000
    test_limit: int = 1000
    batch_size: int = 64
    lr: float = 0.05
    device: str = "auto"
    threads: int = 1                            # torch CPU threads (1: fastest on a shared 2-core CPU; 0: default)
    seed: int = 0
    reference_size: int = 224
    gaussian_levels: tuple[float, ...] = (0, 2, 4, 6, 8, 10, 12, 16, 20, 24)
    motion_levels: tuple[float, ...] = (0, 4, 8, 12, 16, 24, 32, 40)
    defocus_levels: tuple[float, ...] = (0, 2, 4, 6, 8, 10, 12, 16)
    critical_max: float = 32.0
    critical_step: float = 2.0
    corruption_limit: int = 500
    worst_case_n: int = 16
    worst_case_steps: int = 60
    n_bootstrap: int = 1000
    quick: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.regimes = tuple(self.regimes)
        for name in ("epochs", "image_size", "train_limit", "test_limit", "batch_size", "corruption_limit",
                     "worst_case_n", "worst_case_steps", "reference_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "worst_case_n" else 1):
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0: torch's default); got {self.threads!r}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 px; got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {self.channels!r}")
        if not self.regimes:
            raise ValueError("regimes must name at least one training regime")
        if len(set(self.regimes)) != len(self.regimes):
            raise ValueError(f"regimes must not repeat; got {list(self.regimes)}")
        from ..train import REGIMES

        bad = [r for r in self.regimes if r not in REGIMES]
        if bad:
            raise ValueError(f"unknown regime(s) {bad}; choose from {sorted(REGIMES)}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0; got {self.lr!r}")
        if not self.name or any(c in self.name for c in "/\\") or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name (no '/'); got {self.name!r}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.name

    @property
    def scale(self) -> float:
        """Pixels of the test images per reference (224 px) pixel."""
        return self.image_size / self.reference_size

    @classmethod
    def quick_preset(cls, **overrides: Any) -> ExperimentConfig:
        """A smoke-test configuration (about a minute on 2 CPU cores): tiny model, subsets, few levels."""
        base = dict(name="quick", model_options={"width": 8}, epochs=1, train_limit=1024, test_limit=200,
                    gaussian_levels=(0, 4, 8, 16, 24), motion_levels=(0, 8, 16, 32), defocus_levels=(0, 4, 8, 16),
                    critical_max=24.0, critical_step=4.0, corruption_limit=64, worst_case_n=4,
                    worst_case_steps=8, n_bootstrap=100, quick=True)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["regimes"] = list(self.regimes)
        return d


class Stages:
    """Printed progress: ``[stage] ... done in 12.3 s`` lines on stderr, and the seconds per stage."""

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"blurkit experiment [{time.perf_counter() - self.t0:6.1f} s] {text}", file=self.stream, flush=True)

    @contextmanager
    def stage(self, key: str, text: str) -> Iterator[None]:
        self.say(f"{text} ...")
        t = time.perf_counter()
        yield
        dt = time.perf_counter() - t
        self.seconds[key] = self.seconds.get(key, 0.0) + dt
        self.say(f"{text}: done in {dt:.1f} s")


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0: leave torch's setting)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------------------------------- data
def _materialise(ds: Any, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Up to ``limit`` images of ``ds`` (a random subset, seeded) as uint8/float tensors + labels + classes."""
    from ..data import TensorImageDataset

    n = len(ds)
    if n == 0:
        raise BlurkitError("the dataset is empty")
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) if limit is None or limit >= n else torch.randperm(n, generator=g)[:limit].sort().values
    base = ds
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    classes = [str(c) for c in getattr(base, "classes", [])]
    if isinstance(ds, TensorImageDataset):
        return ds.images[idx], ds.labels[idx], classes or list(getattr(ds, "classes", []) or [])
    xs, ys = [], []
    for i in idx.tolist():
        x, y = ds[i]
        xs.append(torch.as_tensor(x))
        ys.append(int(y))
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise BlurkitError(f"images have different sizes {sorted(shapes)[:3]}...; pass --image-size")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), classes


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def load_split(cfg: ExperimentConfig, split: str, limit: int, seed: int):
    """``(images uint8/float (N, C, S, S), labels (N,), classes)`` of ``cfg.data`` at ``cfg.image_size``."""
    from ..data import load_dataset

    ds = load_dataset(cfg.data, split, image_size=cfg.image_size, channels=cfg.channels)
    return _materialise(ds, limit, seed)


# ------------------------------------------------------------------------------------------ train
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BlurkitError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return dev


def _wrap(model: nn.Module, info: Mapping[str, Any]) -> nn.Module:
    """``[0, 1]`` images in -> logits out (the checkpoint's normalisation in front)."""
    from ..train import Preprocess

    return nn.Sequential(Preprocess(info["mean"], info["std"], int(info["in_channels"])), model).eval()


def _train_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    return float(sum(float(r.get("epoch_time_s", 0.0)) for r in history))


def train_regime(cfg: ExperimentConfig, regime: str, train_set: Any, val_set: Any, stages: Stages
                 ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train one regime into ``<out>/regimes/<regime>`` (or reuse its finished checkpoint).

    Returns:
        ``(model taking [0, 1] images, model_info, record)`` with ``record`` = ``{"train_seconds",
        "checkpoint", "history", "reused"}``.
    """
    from ..train import TrainConfig, load_checkpoint, load_model, train

    folder = cfg.out_dir / "regimes" / regime
    tc = TrainConfig(out=str(folder), data=cfg.data, image_size=cfg.image_size, channels=cfg.channels,
                     limit=cfg.train_limit, model=cfg.model, model_options=dict(cfg.model_options), regime=regime,
                     reference_size=cfg.reference_size, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                     device=cfg.device, seed=cfg.seed, progress=cfg.progress, tensorboard=False, threads=cfg.threads,
                     save_every_steps=50, resume=True)
    ckpt = folder / "last.pt"
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        old = state.get("config", {})
        new = tc.to_dict()
        diff = [k for k in _REUSE_KEYS if old.get(k) != new.get(k)]
        if diff:
            raise BlurkitError(f"{folder} holds a '{regime}' model trained with other settings "
                               f"({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}); "
                               f"use another --name / --out or delete that folder")
        if int(state.get("epoch", 0)) >= cfg.epochs and int(state.get("step_in_epoch", 0)) == 0:
            model, info = load_model(ckpt)
            history = list(state.get("metrics", []))
            stages.say(f"regime '{regime}': finished checkpoint found ({ckpt}), not training again")
            return _wrap(model, info), info, {"train_seconds": _train_seconds(history), "checkpoint": str(ckpt),
                                              "history": history, "reused": True}
        stages.say(f"regime '{regime}': resuming the interrupted training from {ckpt}")
    from ..data import TensorImageDataset

    x, y, classes = train_set
    res = train(tc, train_data=TensorImageDataset(x, y, channels=cfg.channels, classes=classes or None),
                val_data=TensorImageDataset(*val_set[:2], channels=cfg.channels, classes=classes or None))
    record = {"train_seconds": _train_seconds(res.history), "checkpoint": str(res.checkpoint),
              "history": res.history, "reused": False}
    return _wrap(res.model, res.model_info), res.model_info, record


# --------------------------------------------------------------------------------------- evaluate
def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 250) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, x.shape[0], size)]


def _finite(vals: Sequence[float]) -> list[float]:
    return [float(v) for v in vals if v is not None and math.isfinite(float(v))]


def _mean(vals: Sequence[float]) -> float | None:
    v = _finite(vals)
    return sum(v) / len(v) if v else None


def evaluate_models(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor, cfg: ExperimentConfig,
                    stages: Stages | None = None, *, classes: Sequence[str] = ()) -> tuple[dict[str, Any], dict]:
    """Run the evaluation suite on every model with the same test images.

    Args:
        models: name -> classifier taking ``[0, 1]`` images ``(B, C, H, W)`` (logits out).
        x: ``(N, C, H, W)`` test images (uint8 or float in ``[0, 1]``); y: ``(N,)`` labels.
        cfg: levels, subset sizes and bootstrap settings (:class:`ExperimentConfig`).
        stages: progress printer (default: a new one).
        classes: class names (for figure captions).

    Returns:
        ``(regimes, extras)``: ``regimes[name]`` holds ``clean_accuracy``, ``curves``, ``critical``,
        ``corruptions``, ``corruption_summary``, ``worst_case`` (see the module docstring);
        ``extras`` holds tensors the figures need (worst-case examples).
    """
    from .. import corruptions as C
    from .. import robustness as R

    stages = stages or Stages(cfg.progress)
    dev = _device(cfg.device)
    models = {n: m.to(dev).eval() for n, m in models.items()}
    xf = _to_unit(x)
    data = _batches(xf, y)
    scale = cfg.scale
    out: dict[str, dict[str, Any]] = {n: {} for n in models}
    extras: dict[str, Any] = {"worst_case": {}}
    show = cfg.progress

    families = (("gaussian", cfg.gaussian_levels), ("motion", cfg.motion_levels), ("defocus", cfg.defocus_levels))
    for fam, levels in families:
        with stages.stage(f"curve_{fam}", f"accuracy vs {fam} blur ({len(levels)} levels x {len(models)} models, "
                                          f"{xf.shape[0]} images)"):
            lv_px = [float(v) * scale for v in levels]
            curves = R.accuracy_curve(models, data, lv_px, family=fam, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed,
                                      progress=show, device=dev)
            for n, cv in curves.items():
                out[n].setdefault("curves", {})[fam] = {
                    "levels": [float(v) for v in levels], "levels_px": lv_px, "top1": list(cv.top1),
                    "ci_low": [v[0] for v in cv.top1_ci], "ci_high": [v[1] for v in cv.top1_ci],
                    "auc": cv.auc, "auc_ci": list(cv.auc_ci), "n": cv.n}
                if fam == "gaussian":
                    out[n]["clean_accuracy"] = cv.top1[0] if levels[0] == 0 else None
    if any(out[n].get("clean_accuracy") is None for n in models):
        with torch.no_grad():
            for n, m in models.items():
                acc = sum(int((m(xb.to(dev)).argmax(1).cpu() == yb).sum()) for xb, yb in data) / xf.shape[0]
                out[n]["clean_accuracy"] = acc

    crit_res: dict[str, Any] = {}
    for n, m in models.items():
        with stages.stage("critical", f"critical sigma of '{n}' (scan to {cfg.critical_max:g} px at "
                                      f"{cfg.reference_size}, bisection)"):
            res = R.critical_sigma(m, data, "gaussian", max_sigma=cfg.critical_max * scale,
                                   grid_step=cfg.critical_step * scale, tol=0.25 * scale,
                                   progress=show, device=dev)
        crit_res[n] = res
        lv, share = res.survival()
        fl = res.flipped & res.clean_correct
        med = res.median
        out[n]["critical"] = {
            "median": med / scale if not math.isnan(med) else None,  # inf: most images never flip
            "survival": {"sigma": [v / scale for v in lv], "fraction": share},
            "psnr": _finite(res.psnr[fl].tolist()), "ssim": _finite(res.ssim[fl].tolist()),
            "n_searched": res.n_searched, "n_flipped": int(fl.sum()),
            "median_psnr": res.summary()["median_psnr_at_flip"], "median_ssim": res.summary()["median_ssim_at_flip"],
            "max_sigma": cfg.critical_max}

    nc = min(cfg.corruption_limit, xf.shape[0])
    cdata = "cifar" if cfg.image_size < 96 else "imagenet"
    with stages.stage("corruptions", f"{len(C.CORRUPTIONS)} corruptions x 5 severities on {nc} images "
                                     f"({cdata} parameters)"):
        errs = R.evaluate_corruptions(models, _batches(xf[:nc], y[:nc]), list(C.CORRUPTIONS), dataset=cdata,
                                      seed=cfg.seed, progress=show, device=dev)
    base_name = "standard" if "standard" in models else next(iter(models))
    for n in models:
        e = errs[n]
        out[n]["corruptions"] = {k: list(v) for k, v in e.items() if k != "clean"}
        out[n]["clean_error"] = e["clean"]
        summ: dict[str, Any] = {"baseline": base_name}
        for fam, names in (("blur", C.BLUR_CORRUPTIONS), ("noise", C.NOISE_CORRUPTIONS), ("all", C.CORRUPTIONS)):
            try:
                r = R.corruption_errors({k: e[k] for k in names}, baseline={k: errs[base_name][k] for k in names})
                summ[f"mce_{fam}"] = r.mce
                if fam == "all":
                    summ["ce"] = dict(r.ce)
            except ValueError as exc:  # baseline error 0 on a corruption: CE undefined
                summ[f"mce_{fam}"] = None
                summ.setdefault("notes", []).append(str(exc))
        out[n]["corruption_summary"] = summ
        out[n]["corruption_dataset"] = cdata

    if cfg.worst_case_n > 0:
        for n, m in models.items():
            res = crit_res[n]
            sel = torch.nonzero(res.clean_correct & res.flipped).flatten()[: cfg.worst_case_n]
            if sel.numel() == 0:
                out[n]["worst_case"] = {"n": 0, "note": "no image flipped within the critical-sigma search range"}
                continue
            with stages.stage("worst_case", f"worst-case anisotropic blur of '{n}' ({sel.numel()} images, "
                                            f"{cfg.worst_case_steps} steps)"):
                wc = R.worst_case_blur(m, xf[sel].to(dev), y[sel].to(dev), "anisotropic", metric="ssim",
                                       steps=cfg.worst_case_steps, init_sigma=res.sigma[sel].float(),
                                       max_sigma=cfg.critical_max * scale, seed=cfg.seed, device=dev)
            f = wc.flipped.cpu()
            out[n]["worst_case"] = {
                "n": int(sel.numel()), "family": "anisotropic", "flip_rate": float(f.float().mean()),
                "mean_psnr": _mean(wc.psnr.cpu()[f].tolist()), "isotropic_psnr": _mean(res.psnr[sel][f].tolist()),
                "mean_ssim": _mean(wc.ssim.cpu()[f].tolist()), "isotropic_ssim": _mean(res.ssim[sel][f].tolist())}
            extras["worst_case"][n] = {"index": sel, "result": wc, "critical": res.sigma[sel].float()}
    return out, extras


def corruption_table(regimes: Mapping[str, Any]) -> dict[str, Any]:
    """Clean error, CE per corruption (relative to the baseline regime), mCE blur / noise, per regime."""
    names: list[str] = []
    for reg in regimes.values():
        for k in reg.get("corruption_summary", {}).get("ce", {}):
            if k not in names:
                names.append(k)
    headers = ["regime", "clean error", *[k.replace("_", " ") + " CE" for k in names], "blur mCE", "noise mCE"]
    rows = []
    for n, reg in regimes.items():
        s = reg.get("corruption_summary", {})
        rows.append([n, reg.get("clean_error"), *[s.get("ce", {}).get(k) for k in names], s.get("mce_blur"),
                     s.get("mce_noise")])
    return {"headers": headers, "rows": rows}


# ---------------------------------------------------------------------------------------- figures
def make_figures(results: Mapping[str, Any], x: torch.Tensor, y: torch.Tensor, extras: Mapping[str, Any],
                 cfg: ExperimentConfig, classes: Sequence[str] = ()) -> dict[str, bytes]:
    """All report figures as PNG bytes (keys as :func:`render_report` expects)."""
    from .. import corruptions as C
    from ..filtering import gaussian_blur
    from . import plots

    regs = results["regimes"]
    scale = cfg.scale
    chance = 1.0 / max(len(classes), 2) if classes else None
    figs: dict[str, bytes] = {}
    unit = f"px at {cfg.reference_size}; x{scale:.3g} on the {cfg.image_size} px images"
    figs["accuracy_gaussian"] = plots.accuracy_figure(regs, "gaussian", xlabel=f"Gaussian sigma ({unit})",
                                                      scale_to_224=1.0, chance=chance)
    figs["accuracy_motion"] = plots.accuracy_figure(regs, "motion", xlabel=f"motion length ({unit})", chance=chance)
    figs["accuracy_defocus"] = plots.accuracy_figure(regs, "defocus", xlabel=f"defocus radius ({unit})",
                                                     chance=chance)
    figs["survival"] = plots.survival_figure(regs, xlabel=f"Gaussian sigma ({unit})")
    figs["quality_at_flip"] = plots.quality_figure(regs)
    figs["corruptions"] = plots.corruption_figure(regs)

    # examples: one test image under each regime's training sigmas and each corruption severity
    xf = _to_unit(x[:1])
    label = classes[int(y[0])] if classes else f"class {int(y[0])}"
    rows: list[tuple[str, list[tuple[str, torch.Tensor]]]] = []
    from .. import presets

    for rname in results.get("regimes", {}):
        try:
            sig = presets.get(rname).sigma_distribution()[0]
        except (KeyError, ValueError, AttributeError):
            continue
        items = [(f"sigma {s:g}" if s else f"clean ({label})",
                  gaussian_blur(xf, float(s) * scale, truncate=2.0)[0] if s else xf[0]) for s in sig]
        rows.append((rname, items))
    gen = torch.Generator().manual_seed(cfg.seed)
    cdata = "cifar" if cfg.image_size < 96 else "imagenet"
    for cname in C.CORRUPTIONS:
        rows.append((cname.replace("_", " "), [(f"severity {s}", C.corrupt(xf, cname, s, dataset=cdata,
                                                                             generator=gen)[0]) for s in range(1, 6)]))
    figs["examples"] = plots.examples_figure(rows)

    # worst case: clean / isotropic critical sigma / optimised blur, three images per regime
    wrows = []
    for rname, ex in extras.get("worst_case", {}).items():
        wc, idx, crit = ex["result"], ex["index"], ex["critical"]
        xs = _to_unit(x[idx])
        adv = wc.apply(xs.to(wc.ssim.device)).cpu()
        from ..robustness import psnr as _psnr

        items = []
        shown = [i for i in range(len(idx)) if bool(wc.flipped[i])][:3]
        for i in shown:
            iso = gaussian_blur(xs[i:i + 1], float(crit[i]), truncate=3.0)[0]
            name_y = classes[int(y[idx[i]])] if classes else str(int(y[idx[i]]))
            name_p = classes[int(wc.pred[i])] if classes else str(int(wc.pred[i]))
            items += [(f"clean: {name_y}", xs[i]),
                      (f"iso {float(crit[i]) / scale:.1f}px@{cfg.reference_size} "
                       f"{float(_psnr(xs[i:i + 1], iso[None])):.1f} dB", iso),
                      (f"worst: {name_p} {float(wc.psnr[i]):.1f} dB", adv[i])]
        if items:
            wrows.append((rname, items))
    if wrows:
        figs["worst_case"] = plots.examples_figure(wrows)
    return figs


# ------------------------------------------------------------------------------------------ drive
def _dataset_info(cfg: ExperimentConfig, n_train: int | None, n_test: int, classes: Sequence[str]) -> dict[str, Any]:
    return {"name": cfg.data or "fashion-mnist", "train_size": n_train, "test_size": n_test,
            "image_size": cfg.image_size, "channels": cfg.channels, "classes": list(classes),
            "reference_size": cfg.reference_size, "scale": cfg.scale}


def _device_text(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _finish(results: dict[str, Any], x: torch.Tensor, y: torch.Tensor, extras: Mapping[str, Any],
            cfg: ExperimentConfig, classes: Sequence[str], stages: Stages) -> Path:
    from .report import render_report

    results["corruption_table"] = corruption_table(results["regimes"])
    with stages.stage("figures", "figures"):
        figs = make_figures(results, x, y, extras, cfg, classes)
        out = cfg.out_dir
        from .report import write_atomic

        for k, png in figs.items():
            write_atomic(out / f"{k}.png", png)
        for k in FIGURES:  # a figure this run did not make (e.g. no worst-case flip): no stale copy left
            if k not in figs:
                (out / f"{k}.png").unlink(missing_ok=True)
    results["timings"] = dict(stages.seconds)
    results["timings"]["total"] = time.perf_counter() - stages.t0
    path = render_report(results, figs, out)
    stages.say(f"report: {path} (results: {out / 'results.json'}); total {results['timings']['total']:.1f} s")
    return path


def run_experiment(cfg: ExperimentConfig, *, stages: Stages | None = None) -> dict[str, Any]:
    """Train every regime of ``cfg`` (reusing finished ones), evaluate them together, write the report.

    Returns:
        The ``results`` dict (also written to ``<out>/results.json``; ``<out>/report.html`` beside it).

    Example:
        >>> results = run_experiment(ExperimentConfig.quick_preset(out="/tmp/quick"))
        >>> sorted(results["regimes"])
        ['standard', 'strong', 'weak']
    """
    with _threads(cfg.threads):
        return _run_experiment(cfg, stages or Stages(cfg.progress))


def _run_experiment(cfg: ExperimentConfig, stages: Stages) -> dict[str, Any]:
    out = cfg.out_dir
    dev = _device(cfg.device)
    stages.say(f"run '{cfg.name}' -> {out}; regimes {', '.join(cfg.regimes)}; model {cfg.model}; "
               f"{cfg.image_size} px; device {dev}")
    with stages.stage("data", "loading data"):
        test = load_split(cfg, "test", cfg.test_limit, cfg.seed + 1)
        train_set = load_split(cfg, "train", cfg.train_limit, cfg.seed)
    x, y, classes = test
    classes = classes or train_set[2]
    from ..models import build_model

    with torch.device("meta"):  # the model options checked before anything is written (no memory used)
        build_model(cfg.model, max(len(classes), 2), cfg.channels,
                    **{"image_size": cfg.image_size, **dict(cfg.model_options)})
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, nn.Module] = {}
    records: dict[str, dict[str, Any]] = {}
    val = (x[: min(500, x.shape[0])], y[: min(500, x.shape[0])])
    for i, regime in enumerate(cfg.regimes):
        with stages.stage(f"train_{regime}", f"[{i + 1}/{len(cfg.regimes)}] training regime '{regime}' "
                                             f"({train_set[0].shape[0]} images x {cfg.epochs} epochs)"):
            m, _info, rec = train_regime(cfg, regime, train_set, val, stages)
        models[regime] = m
        records[regime] = rec
    regs, extras = evaluate_models(models, x, y, cfg, stages, classes=classes)
    for n in regs:
        regs[n].update({"train_seconds": records[n]["train_seconds"], "checkpoint": records[n]["checkpoint"],
                        "reused_checkpoint": records[n]["reused"],
                        "history": [{k: v for k, v in r.items() if isinstance(v, (int, float, str))}
                                    for r in records[n]["history"]]})
    results: dict[str, Any] = {
        "name": cfg.name, "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": _device_text(dev), "dataset": _dataset_info(cfg, int(train_set[0].shape[0]), int(x.shape[0]),
                                                              classes),
        "config": cfg.to_dict(), "regimes": regs, "kind": "experiment"}
    _finish(results, x, y, extras, cfg, classes, stages)
    return results


def evaluate_checkpoints(paths: Sequence[str], cfg: ExperimentConfig, *, names: Sequence[str] | None = None,
                         stages: Stages | None = None, same_size: bool = False) -> dict[str, Any]:
    """The evaluation suite and report for trained checkpoints (``blurkit evaluate``).

    Args:
        paths: checkpoint files or run folders (``<folder>/last.pt``).
        cfg: evaluation settings; ``image_size`` and ``data`` default to the first checkpoint's
            (the caller fills them in, see :func:`checkpoint_defaults`).
        names: display names (default: the regime stored in each checkpoint, made unique).
        same_size: refuse checkpoints trained at different image sizes (``blurkit evaluate`` without
            ``--image-size``: ``cfg.image_size`` is then only the first checkpoint's size).

    Returns:
        The ``results`` dict (``report.html`` and ``results.json`` written to ``cfg.out_dir``).
    """
    with _threads(cfg.threads):
        return _evaluate_checkpoints(paths, cfg, names, stages or Stages(cfg.progress), same_size)


def _evaluate_checkpoints(paths: Sequence[str], cfg: ExperimentConfig, names: Sequence[str] | None,
                          stages: Stages, same_size: bool = False) -> dict[str, Any]:
    from ..train import load_checkpoint, load_model

    if not paths:
        raise ValueError("give at least one checkpoint")
    models: dict[str, nn.Module] = {}
    n_classes = set()
    sizes: dict[str, int] = {}
    with stages.stage("load", f"loading {len(paths)} checkpoint(s)"):
        for i, p in enumerate(paths):
            state = load_checkpoint(p)
            model, info = load_model(p)
            base = names[i] if names else str(state.get("config", {}).get("regime") or Path(p).stem)
            name, k = base, 2
            while name in models:
                name, k = f"{base}-{k}", k + 1
            models[name] = _wrap(model, info)
            n_classes.add(int(info["num_classes"]))
            sizes[str(p)] = int(info.get("image_size") or cfg.image_size)
    if len(n_classes) > 1:
        raise BlurkitError(f"the checkpoints have different numbers of classes {sorted(n_classes)}; "
                           "evaluate them separately")
    if same_size and len(set(sizes.values())) > 1:
        listed = ", ".join(f"{p}: {n} px" for p, n in sizes.items())
        raise BlurkitError(f"the checkpoints were trained at different image sizes ({listed}); pass "
                           "--image-size to evaluate all of them at one size, or evaluate them separately")
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    with stages.stage("data", "loading test data"):
        x, y, classes = load_split(cfg, "test", cfg.test_limit, cfg.seed + 1)
    if int(y.max()) >= next(iter(n_classes)):
        raise BlurkitError(f"the test data has labels up to {int(y.max())} but the model has "
                           f"{next(iter(n_classes))} classes; pass the --data it was trained on")
    regs, extras = evaluate_models(models, x, y, cfg, stages, classes=classes)
    for n, p in zip(models, paths):
        state = load_checkpoint(p)
        hist = list(state.get("metrics", []))
        regs[n].update({"train_seconds": _train_seconds(hist), "checkpoint": str(p)})
    dev = _device(cfg.device)
    results: dict[str, Any] = {
        "name": cfg.name, "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": _device_text(dev), "dataset": _dataset_info(cfg, None, int(x.shape[0]), classes),
        "config": {**cfg.to_dict(), "checkpoints": [str(p) for p in paths]}, "regimes": regs, "kind": "evaluate"}
    _finish(results, x, y, extras, cfg, classes, stages)
    return results


def checkpoint_defaults(path: str) -> dict[str, Any]:
    """``data``, ``image_size``, ``channels``, ``model`` of a checkpoint's training run (``blurkit evaluate``)."""
    from ..train import load_checkpoint

    st = load_checkpoint(path)
    c = st.get("config", {})
    info = st.get("model_info", {})
    return {"data": c.get("data"), "image_size": int(info.get("image_size") or c.get("image_size") or 28),
            "channels": int(c.get("channels", 1)), "model": str(info.get("name", c.get("model", "?")))}


def rerender(out_dir: str | Path) -> Path:
    """Rebuild ``<out_dir>/report.html`` from its ``results.json`` and PNG figures (no training, no evaluation).

    Example:
        >>> rerender("runs/default")   # after editing the report template
    """
    import json

    out = Path(out_dir)
    path = out / "results.json"
    if not path.is_file():
        raise BlurkitError(f"{path} not found: run blurkit experiment first")
    from .report import render_report

    results = json.loads(path.read_text())
    figs = {k: (out / f"{k}.png").read_bytes() for k in FIGURES if (out / f"{k}.png").is_file()}
    return render_report(results, figs, out)
