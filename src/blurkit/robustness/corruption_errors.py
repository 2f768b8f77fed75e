"""Corruption errors (CE), mean CE and relative mCE (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import corruptions as _c
from . import _common as c

__all__ = ["ALEXNET_ERRORS", "ALEXNET_CLEAN_ERROR", "CorruptionErrors", "corruption_errors",
           "evaluate_corruptions"]

# AlexNet top-1 error on ImageNet-C, averaged over severities 1-5 (hendrycks/robustness ImageNet-C
# test code; the four "extra" corruptions after the 15 main ones).
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204,
    "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
    "speckle_noise": 0.845388, "gaussian_blur": 0.787108, "spatter": 0.717512, "saturate": 0.658248,
}
# torchvision's AlexNet (the model the ImageNet-C AlexNet errors come from): 56.522 % top-1 accuracy.
ALEXNET_CLEAN_ERROR = 0.43478


@dataclass
class CorruptionErrors:
    """CE per corruption, mCE and (if clean errors are known) relative CE / mCE, as fractions.

    ``ce[c] = sum_s E(model, c, s) / sum_s E(baseline, c, s)``; ``mce`` is the mean over the
    corruptions given. ``relative_ce[c] = sum_s (E(model, c, s) - E(model, clean)) /
    sum_s (E(baseline, c, s) - E(baseline, clean))`` (``nan`` where the baseline's errors equal its
    clean error, and then ``relative_mce`` is ``nan`` too). Multiply by 100 for the paper's percentages.
    """

    ce: dict[str, float]
    mce: float
    relative_ce: dict[str, float] | None
    relative_mce: float | None
    errors: dict[str, float]
    baseline_errors: dict[str, float]
    clean_error: float | None
    baseline_clean_error: float | None
    baseline: str

    def to_dict(self) -> dict[str, Any]:
        return {"ce": dict(self.ce), "mce": self.mce, "relative_ce": self.relative_ce,
                "relative_mce": self.relative_mce, "errors": dict(self.errors),
                "baseline_errors": dict(self.baseline_errors), "clean_error": self.clean_error,
                "baseline_clean_error": self.baseline_clean_error, "baseline": self.baseline}

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        return c.write_json(self.to_dict(), path, indent)

    def to_dataframe(self):
        """One row per corruption (needs pandas)."""
        return c.to_dataframe([{"corruption": k, "error": self.errors[k], "ce": v,
                                "relative_ce": None if self.relative_ce is None else self.relative_ce[k]}
                               for k, v in self.ce.items()])


def _error_list(name: str, v: object, who: str) -> list[float]:
    """The error rate(s) of one entry: one number, or one per severity."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        vals = [float(v)]
    elif isinstance(v, torch.Tensor):
        vals = [float(t) for t in v.flatten()]
    elif isinstance(v, Sequence) and not isinstance(v, str) and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in v):
        vals = [float(t) for t in v]
    else:
        raise TypeError(f"{who}[{name!r}] must be an error rate or a sequence of error rates per severity; "
                        f"got {v!r}")
    if not vals or any(not math.isfinite(t) or t < 0 or t > 1 for t in vals):
        raise ValueError(f"{who}[{name!r}] must hold error rates in [0, 1] (fractions, not percent); got {vals}")
    return vals


def _mean_error(name: str, v: object, who: str) -> float:
    vals = _error_list(name, v, who)
    return sum(vals) / len(vals)


def _severity_count(v: object) -> int | None:
    """Number of per-severity errors in an entry (``None`` for a single, already averaged number)."""
    if isinstance(v, torch.Tensor):
        return None if v.dim() == 0 else v.numel()
    if isinstance(v, Sequence) and not isinstance(v, str):
        return len(v)
    return None


def _check_rate(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
        raise ValueError(f"{name} must be an error rate in [0, 1] (a fraction, not percent); got {v!r}")
    return float(v)


def corruption_errors(
    errors: Mapping[str, Sequence[float] | float],
    *,
    clean_error: float | None = None,
    baseline: str | Mapping[str, Sequence[float] | float] = "alexnet",
    baseline_clean_error: float | None = None,
) -> CorruptionErrors:
    """CE, mCE and relative mCE of a model's corruption errors against a baseline's.

    Args:
        errors: ``{corruption: [error at severity 1..5]}`` (fractions in [0, 1]) or one error per
            corruption (the mean over severities). As returned by :func:`evaluate_corruptions`;
            a ``"clean"`` entry is used as ``clean_error``.
        clean_error: the model's error on clean images (enables relative CE).
        baseline: ``"alexnet"`` (the published ImageNet-C AlexNet errors, :data:`ALEXNET_ERRORS`,
            clean error :data:`ALEXNET_CLEAN_ERROR`) or a baseline model's errors in the same form.
        baseline_clean_error: the baseline's clean error (taken from ``baseline["clean"]`` if there).

    Returns:
        :class:`CorruptionErrors`.

    Example:
        >>> r = corruption_errors({"defocus_blur": [.3, .4, .5, .6, .7]}, clean_error=.2)
        >>> round(r.ce["defocus_blur"], 4)  # 0.5 / 0.81988
        0.6098
    """
    if not isinstance(errors, Mapping) or not errors:
        raise TypeError(f"errors must be a non-empty dict corruption -> errors; got {errors!r}")
    errs = dict(errors)
    if clean_error is not None:
        clean_error = _check_rate("clean_error", clean_error)
    if baseline_clean_error is not None:
        baseline_clean_error = _check_rate("baseline_clean_error", baseline_clean_error)
    if "clean" in errs:
        ce0 = errs.pop("clean")
        clean_error = _mean_error("clean", ce0, "errors") if clean_error is None else clean_error
    if not errs:
        raise ValueError("errors has no corruption entries (only 'clean'); CE needs at least one corruption")
    if isinstance(baseline, str):
        if baseline != "alexnet":
            raise ValueError(f"baseline must be 'alexnet' or a dict of a baseline model's errors; got {baseline!r}")
        base = dict(ALEXNET_ERRORS)
        base_name = "alexnet"
        if baseline_clean_error is None:
            baseline_clean_error = ALEXNET_CLEAN_ERROR
    elif isinstance(baseline, Mapping):
        base = {k: _mean_error(k, v, "baseline") for k, v in baseline.items() if k != "clean"}
        if "clean" in baseline and baseline_clean_error is None:
            baseline_clean_error = _mean_error("clean", baseline["clean"], "baseline")
        base_name = "custom"
    else:
        raise TypeError(f"baseline must be 'alexnet' or a dict; got {type(baseline).__name__}")
    mean_err = {k: _mean_error(k, v, "errors") for k, v in errs.items()}
    missing = [k for k in mean_err if k not in base]
    if missing:
        raise ValueError(f"the baseline has no errors for {missing}; it has {sorted(base)}")
    # CE compares errors summed over the same severities
    for k, v in errs.items():
        n = _severity_count(v)
        if n is None:
            continue
        if isinstance(baseline, Mapping):
            nb = _severity_count(baseline[k])
            if nb is not None and nb != n:
                raise ValueError(f"errors[{k!r}] has {n} severities but baseline[{k!r}] has {nb}; CE compares "
                                 "the same severities (evaluate both models on the same ones)")
        elif n != 5:
            warnings.warn(f"errors[{k!r}] has {n} severities, but the published AlexNet errors average "
                          "severities 1-5: the CE compares different severity sets", stacklevel=2)
    ce = {}
    for k, e in mean_err.items():
        if base[k] <= 0:
            raise ValueError(f"baseline error for {k!r} is 0; CE is undefined")
        ce[k] = e / base[k]
    rel = None
    rel_m = None
    if clean_error is not None and baseline_clean_error is not None:
        rel = {}
        for k, e in mean_err.items():
            d = base[k] - float(baseline_clean_error)
            # undefined (nan) when the baseline loses nothing to this corruption
            rel[k] = (e - float(clean_error)) / d if d != 0 else float("nan")
        rel_m = sum(rel.values()) / len(rel)
    return CorruptionErrors(
        ce=ce, mce=sum(ce.values()) / len(ce), relative_ce=rel, relative_mce=rel_m,
        errors=mean_err, baseline_errors={k: base[k] for k in mean_err},
        clean_error=None if clean_error is None else float(clean_error),
        baseline_clean_error=None if baseline_clean_error is None else float(baseline_clean_error),
        baseline=base_name,
    )


def evaluate_corruptions(
    model: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
    data: Any,
    corruptions: Sequence[str] = _c.BLUR_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    dataset: str = "imagenet",
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    max_batches: int | None = None,
) -> dict[str, float | list[float]] | dict[str, dict[str, float | list[float]]]:
    """Top-1 errors on clean and corrupted images (``blurkit.corruptions``), for :func:`corruption_errors`.

    Each batch is corrupted once per (corruption, severity) and shared by all models; the random
    parts use one ``torch.Generator`` seeded with ``seed``.

    Args:
        model: classifier or list/dict of classifiers.
        data: iterable of ``(images, labels)``, images in ``[0, 1]``.
        corruptions: names from :data:`blurkit.corruptions.CORRUPTIONS`.
        severities: distinct severities in 1..5 (CE against ``"alexnet"`` needs all five).
        dataset: ``"imagenet"`` or ``"cifar"`` parameter tables.
        seed, device, amp, transform, progress, max_batches: as in :func:`accuracy_curve`.

    Returns:
        ``{"clean": error, corruption: [error per severity]}`` (one model) or ``{name: that}``.
    """
    models, single = c.as_models(model)
    if isinstance(corruptions, str) or not isinstance(corruptions, Iterable):
        raise TypeError(f"corruptions must be a sequence of corruption names; got {corruptions!r}")
    corruptions = list(corruptions)
    if not corruptions:
        raise ValueError(f"corruptions must name at least one corruption; choose from {_c.CORRUPTIONS}")
    for name in corruptions:
        if name not in _c.CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; choose from {_c.CORRUPTIONS}")
    if len(set(corruptions)) != len(corruptions):
        raise ValueError(f"corruptions must not repeat a name; got {corruptions}")
    if isinstance(severities, (str, bytes)) or not isinstance(severities, Iterable):
        raise TypeError(f"severities must be a sequence of integers in 1..5; got {severities!r}")
    sev = list(severities)
    if (not sev or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in sev)
            or len(set(sev)) != len(sev)):
        raise ValueError(f"severities must be distinct integers in 1..5; got {sev}")
    if not isinstance(dataset, str) or dataset not in _c.PARAMS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, _c.PARAMS))}; got {dataset!r}")
    c.check_options(transform=transform, seed=seed)
    c.check_max_batches(max_batches)
    dev = c.resolve_device(device, models)
    gen = torch.Generator(device=dev).manual_seed(seed)
    wrong = {n: {"clean": 0, **{(k, s): 0 for k in corruptions for s in sev}} for n in models}
    total_n = 0
    states = {n: m.training for n, m in models.items() if isinstance(m, nn.Module)}
    for m in models.values():
        if isinstance(m, nn.Module):
            m.eval()
    try:
        with torch.no_grad(), c.progress_bar(c.count_batches(data), "corruptions", progress) as bar:
            for x, y in c.batches(data, dev, max_batches):
                total_n += x.shape[0]
                for name, m in models.items():
                    logits = c.logits_of(m, x, transform, dev, amp)
                    c.check_labels(y, logits.shape[1])
                    wrong[name]["clean"] += int((logits.argmax(1) != y).sum())
                for k in corruptions:
                    for s in sev:
                        xc = _c.corrupt(x, k, s, dataset=dataset, generator=gen)
                        for name, m in models.items():
                            p = c.logits_of(m, xc, transform, dev, amp).argmax(1)
                            wrong[name][(k, s)] += int((p != y).sum())
                if bar is not None:
                    bar.update(1)
    finally:
        for n, m in models.items():
            if n in states:
                m.train(states[n])
    if total_n == 0:
        raise ValueError("data yielded no batches")
    out = {}
    for name in models:
        w = wrong[name]
        out[name] = {"clean": w["clean"] / total_n,
                     **{k: [w[(k, s)] / total_n for s in sev] for k in corruptions}}
    return out["model"] if single else out
