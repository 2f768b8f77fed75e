"""Accuracy as a function of blur strength, for one or several models in one pass over the data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _common as c

__all__ = ["AccuracyCurve", "accuracy_curve"]


@dataclass
class AccuracyCurve:
    """Top-1 / top-k accuracy of one model at each blur level, with bootstrap confidence intervals.

    Attributes:
        model: the model's name.
        family: blur family (``"gaussian"``, ``"motion"``, ``"defocus"``, ``"box"``).
        levels: blur levels (sigma / length / radius in px), increasing.
        n: number of images.
        top1, topk: accuracy (fraction) per level; ``topk`` is ``None`` when ``k`` exceeds the classes.
        k: the ``k`` of ``topk``.
        top1_ci, topk_ci: ``(low, high)`` per level (bootstrap percentile interval, level ``ci``).
        auc: normalised area under the top-1 curve (trapezoid over the levels divided by the level
            range; the mean accuracy over the range), in ``[0, 1]``; the top-1 value if one level.
        auc_ci: bootstrap interval of ``auc``.
        correct: ``(levels, n)`` bool tensor, image-by-level top-1 correctness (not serialised).
    """

    model: str
    family: str
    levels: list[float]
    n: int
    top1: list[float]
    topk: list[float] | None
    k: int
    top1_ci: list[tuple[float, float]]
    topk_ci: list[tuple[float, float]] | None
    auc: float
    auc_ci: tuple[float, float]
    ci: float
    n_bootstrap: int
    correct: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` (JSON-ready; without the per-image ``correct`` matrix)."""
        return {
            "model": self.model, "family": self.family, "levels": list(self.levels), "n": self.n,
            "top1": list(self.top1), "topk": None if self.topk is None else list(self.topk), "k": self.k,
            "top1_ci": [list(v) for v in self.top1_ci],
            "topk_ci": None if self.topk_ci is None else [list(v) for v in self.topk_ci],
            "auc": self.auc, "auc_ci": list(self.auc_ci), "ci": self.ci, "n_bootstrap": self.n_bootstrap,
        }

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """JSON text of :meth:`to_dict`; also written atomically to ``path`` if given."""
        return c.write_json(self.to_dict(), path, indent)

    def to_dataframe(self):
        """One row per level (needs pandas)."""
        rows = []
        for i, lv in enumerate(self.levels):
            rows.append({"model": self.model, "family": self.family, "level": lv, "top1": self.top1[i],
                         "top1_low": self.top1_ci[i][0], "top1_high": self.top1_ci[i][1],
                         f"top{self.k}": None if self.topk is None else self.topk[i]})
        return c.to_dataframe(rows)

    def plot(self, ax=None, label: str | None = None, **kwargs):
        """Plot top-1 accuracy with its confidence band (matplotlib); returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.gca()
        line, = ax.plot(self.levels, self.top1, marker="o", label=label or self.model, **kwargs)
        ax.fill_between(self.levels, [v[0] for v in self.top1_ci], [v[1] for v in self.top1_ci],
                        color=line.get_color(), alpha=0.2)
        ax.set_xlabel({"gaussian": "Gaussian sigma (px)", "motion": "motion length (px)",
                       "defocus": "defocus radius (px)", "box": "box radius (px)"}[self.family])
        ax.set_ylabel("top-1 accuracy")
        return ax


def _auc(levels: Sequence[float], acc: torch.Tensor) -> torch.Tensor:
    """Normalised trapezoid area of ``acc (..., L)`` over ``levels``."""
    if len(levels) == 1:
        return acc[..., 0]
    lv = torch.tensor(levels, dtype=acc.dtype)
    area = ((acc[..., 1:] + acc[..., :-1]) / 2 * (lv[1:] - lv[:-1])).sum(-1)
    return area / (lv[-1] - lv[0])


def accuracy_curve(
    model: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
    data: Any,
    sigmas: Sequence[float] | torch.Tensor = (0, 1, 2, 3, 4, 6, 8),
    family: str = "gaussian",
    *,
    k: int = 5,
    device: torch.device | str | None = None,
    amp: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    blur_kwargs: Mapping[str, Any] | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    progress: bool = True,
    max_batches: int | None = None,
) -> AccuracyCurve | dict[str, AccuracyCurve]:
    """Top-1 and top-k accuracy at each blur level, with AUC and bootstrap confidence intervals.

    Every batch is blurred once per level and fed to all models, so comparing models costs one
    pass over the data. Blurring happens on the raw images (before ``transform``, e.g. the
    normalisation the model expects).

    Args:
        model: a classifier (``nn.Module`` mapping ``(B, C, H, W)`` to logits ``(B, classes)``), or a
            list / dict of them.
        data: iterable of ``(images, labels)`` batches (a ``DataLoader``, a list, ...); images
            ``(B, C, H, W)``, labels ``(B,)`` class indices.
        sigmas: increasing blur levels in px (Gaussian sigma, motion length, defocus radius or box
            radius ``r`` of a ``2r+1`` box, by ``family``; box radii must be integers); 0 is the
            clean image.
        family: ``"gaussian"``, ``"motion"``, ``"defocus"`` or ``"box"``.
        k: the ``k`` of top-k accuracy (default 5).
        device: where to run (default: the first model's parameters' device).
        amp: run the models under ``torch.autocast`` (float16 on CUDA, bfloat16 on CPU).
        transform: applied to the blurred batch before the models (e.g. normalisation).
        blur_kwargs: extra arguments of the blur (``truncate``, ``border``, motion ``angle``, ...).
        n_bootstrap: bootstrap resamples of the images for the intervals (0: none). The resamples
            are paired: every model's interval uses the same resampled image sets.
        ci: interval level (0.95: 2.5 and 97.5 percentiles).
        seed: seed of the bootstrap.
        progress: show a tqdm progress bar.
        max_batches: stop after this many batches.

    Returns:
        :class:`AccuracyCurve` for one model, or ``{name: AccuracyCurve}`` for a list/dict.

    Example:
        >>> curve = accuracy_curve(net, loader, sigmas=[0, 1, 2, 4], family="gaussian")
        >>> curve.top1, curve.auc, curve.to_json("curve.json")
    """
    models, single = c.as_models(model)
    fam = c.check_family(family)
    levels = c.check_levels(sigmas)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    c.check_options(transform=transform, seed=seed, ci=ci)
    c.check_max_batches(max_batches)
    blur_kwargs = c.check_blur_kwargs(fam, blur_kwargs)
    if fam == "box" and any(v != int(v) for v in levels):
        raise ValueError(f"box levels are integer radii r (a (2r + 1)-wide box); got {levels}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    dev = c.resolve_device(device, models)
    was_training = {n: (m.training if isinstance(m, nn.Module) else False) for n, m in models.items()}
    for m in models.values():
        if isinstance(m, nn.Module):
            m.eval()
    top1: dict[str, list[torch.Tensor]] = {n: [] for n in models}
    topk: dict[str, list[torch.Tensor]] = {n: [] for n in models}
    n_classes: dict[str, int] = {}
    total = c.count_batches(data)
    if total is not None and max_batches is not None:
        total = min(total, max_batches)
    try:
        with torch.no_grad(), c.progress_bar(total, f"accuracy_curve ({fam})", progress) as bar:
            for x, y in c.batches(data, dev, max_batches):
                rows1 = {n: [] for n in models}
                rowsk = {n: [] for n in models}
                for lv in levels:
                    xb = c.apply_blur(x, fam, lv, blur_kwargs) if lv > 0 else x
                    for name, m in models.items():
                        logits = c.logits_of(m, xb, transform, dev, amp)
                        if lv == levels[0]:  # once per batch and model
                            c.check_labels(y, logits.shape[1])
                        n_classes[name] = logits.shape[1]
                        kk = min(k, n_classes[name])
                        pred = logits.topk(kk, dim=1).indices
                        rows1[name].append((pred[:, 0] == y).cpu())
                        rowsk[name].append((pred == y[:, None]).any(1).cpu())
                for name in models:
                    top1[name].append(torch.stack(rows1[name]))
                    topk[name].append(torch.stack(rowsk[name]))
                if bar is not None:
                    bar.update(1)
    finally:
        for name, m in models.items():
            if isinstance(m, nn.Module):
                m.train(was_training[name])
    if not top1[next(iter(models))]:
        raise ValueError("data yielded no batches")
    out = {}
    for name in models:
        corr1 = torch.cat(top1[name], dim=1)  # (L, N)
        corrk = torch.cat(topk[name], dim=1)
        # the same seed for every model: paired resamples (the same images drawn for each model)
        gen = torch.Generator().manual_seed(seed)
        out[name] = _summarise(name, fam, levels, corr1, corrk, k, n_classes[name], n_bootstrap, ci, gen)
    return out["model"] if single else out


def _summarise(name: str, fam: str, levels: list[float], corr1: torch.Tensor, corrk: torch.Tensor, k: int,
               n_classes: int, n_bootstrap: int, ci: float, gen: torch.Generator) -> AccuracyCurve:
    n = corr1.shape[1]
    a1 = corr1.double().mean(1)
    ak = corrk.double().mean(1)
    auc = float(_auc(levels, a1))
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    if n_bootstrap > 0:
        b1, bk_, bauc = [], [], []
        for counts in c.bootstrap_indices_counts(n, n_bootstrap, gen):
            s1 = counts @ corr1.double().T / n  # (k, L)
            sk = counts @ corrk.double().T / n
            b1.append(s1)
            bk_.append(sk)
            bauc.append(_auc(levels, s1))
        B1, BK, BA = torch.cat(b1), torch.cat(bk_), torch.cat(bauc)
        q = torch.tensor([lo_q, hi_q], dtype=torch.float64)
        c1 = torch.quantile(B1, q, dim=0).T.tolist()
        ck = torch.quantile(BK, q, dim=0).T.tolist()
        ca = torch.quantile(BA, q).tolist()
    else:
        c1 = [[float("nan")] * 2 for _ in levels]
        ck = [[float("nan")] * 2 for _ in levels]
        ca = [float("nan")] * 2
    has_k = k < n_classes
    return AccuracyCurve(
        model=name, family=fam, levels=list(levels), n=n, top1=a1.tolist(),
        topk=ak.tolist() if has_k else None, k=k,
        top1_ci=[(float(a), float(b)) for a, b in c1],
        topk_ci=[(float(a), float(b)) for a, b in ck] if has_k else None,
        auc=auc, auc_ci=(float(ca[0]), float(ca[1])), ci=ci, n_bootstrap=n_bootstrap, correct=corr1,
    )
