"""Figures of the experiment report (matplotlib, Agg backend), returned as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "accuracy_figure",
    "survival_figure",
    "quality_figure",
    "corruption_figure",
    "examples_figure",
    "worst_case_figure",
    "HUMAN_LOWPASS",
]

# Geirhos et al. 2018 (16-class, greyscale, Gaussian low-pass, sigma in px at 224 px): human top-1.
HUMAN_LOWPASS = {"sigma": [0.0, 3.0, 5.0, 10.0], "accuracy": [0.859, 0.718, 0.583, 0.312]}

_COLORS = {"standard": "#1f77b4", "weak": "#ff7f0e", "strong": "#2ca02c", "adversarial": "#d62728",
           "consistency": "#9467bd", "deblur-front": "#8c564b"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _num(v: Any) -> float:
    """A JSON number back to float: ``"inf"``/``"-inf"`` strings and ``None`` (nan) included."""
    if v is None:
        return float("nan")
    return float(v)


def _color(name: str, i: int) -> str:
    return _COLORS.get(name, f"C{i % 10}")


def accuracy_figure(regimes: Mapping[str, Any], family: str, *, xlabel: str, scale_to_224: float | None = None,
                    chance: float | None = None) -> bytes:
    """Top-1 accuracy vs blur level, one line per regime with its bootstrap band.

    Args:
        regimes: ``{name: {"curves": {family: {"levels", "top1", "ci_low", "ci_high"}}}}``.
        family: which curve to draw.
        xlabel: axis label (units).
        scale_to_224: if given, levels are multiplied by it (pixels at the dataset resolution -> pixels at
            224 px) and the Geirhos et al. human low-pass accuracies are drawn for comparison.
        chance: chance accuracy (dashed line).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, (name, reg) in enumerate(regimes.items()):
        c = reg.get("curves", {}).get(family)
        if not c:
            continue
        x = np.asarray(c["levels"], dtype=float) * (scale_to_224 or 1.0)
        y = np.asarray(c["top1"], dtype=float)
        ax.plot(x, y, "o-", color=_color(name, i), label=name, ms=3.5)
        if c.get("ci_low") is not None and c.get("ci_high") is not None:
            ax.fill_between(x, c["ci_low"], c["ci_high"], color=_color(name, i), alpha=0.18, lw=0)
    if scale_to_224 is not None and family == "gaussian":
        ax.plot(HUMAN_LOWPASS["sigma"], HUMAN_LOWPASS["accuracy"], "k--s", ms=4, lw=1,
                label="humans (Geirhos 2018, 16-class)")
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def survival_figure(regimes: Mapping[str, Any], *, xlabel: str = "Gaussian sigma (px)") -> bytes:
    """Share of images still correct vs sigma, from each regime's critical-sigma survival curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, (name, reg) in enumerate(regimes.items()):
        s = reg.get("critical", {}).get("survival")
        if not s:
            continue
        med = _num(reg["critical"].get("median"))
        med_text = f"median {med:.1f}" if math.isfinite(med) else "median beyond the range"
        ax.step(s["sigma"], s["fraction"], where="post", color=_color(name, i), label=f"{name} ({med_text})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share still correct")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def quality_figure(regimes: Mapping[str, Any]) -> bytes:
    """Box plots of PSNR and SSIM between each clean image and its flipping blur, per regime."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    names = [n for n, r in regimes.items() if r.get("critical", {}).get("psnr")]
    for ax, key, label in ((axes[0], "psnr", "PSNR at flip (dB)"), (axes[1], "ssim", "SSIM at flip")):
        data = [np.asarray(regimes[n]["critical"][key], dtype=float) for n in names]
        data = [d[np.isfinite(d)] for d in data]
        if any(len(d) for d in data):
            ax.boxplot(data, tick_labels=names, showfliers=False)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(fig)


def corruption_figure(regimes: Mapping[str, Any]) -> bytes:
    """Top-1 error per corruption (panels) and severity (x), one line per regime."""
    plt = _plt()
    names = sorted({c for r in regimes.values() for c in r.get("corruptions", {})})
    if not names:
        names = ["(none)"]
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.3 * rows), squeeze=False, sharey=True)
    for k, cname in enumerate(names):
        ax = axes[k // cols][k % cols]
        for i, (rname, reg) in enumerate(regimes.items()):
            errs = reg.get("corruptions", {}).get(cname)
            if errs:
                ax.plot(range(1, len(errs) + 1), errs, "o-", ms=3, color=_color(rname, i), label=rname)
        ax.set_title(cname.replace("_", " "), fontsize=9)
        ax.set_xticks(range(1, 6))
        ax.grid(alpha=0.3)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].set_ylabel("top-1 error")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _show(ax, img: torch.Tensor, title: str) -> None:
    a = img.detach().float().cpu().clamp(0, 1)
    if a.shape[0] == 1:
        ax.imshow(a[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(a[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _cell(img: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` image in [0, 1] -> ``(H, W, 3)`` float array for a mosaic."""
    a = img.detach().float().cpu().clamp(0, 1)
    a = a[:1].expand(3, -1, -1) if a.shape[0] != 3 else a[:3]
    return a.permute(1, 2, 0).numpy()


def examples_figure(rows: Sequence[tuple[str, Sequence[tuple[str, torch.Tensor]]]]) -> bytes:
    """A grid of images: each row ``(row_label, [(caption, image (C, H, W) in [0, 1]), ...])``.

    Drawn as one mosaic (one ``imshow``, nearest-neighbour pixels) with the captions above each
    cell and the row labels on the left; images of a row may differ in size (each is centred).
    """
    plt = _plt()
    ncol = max(1, max(len(r[1]) for r in rows))
    cells = [[_cell(im) for _, im in items] for _, items in rows]
    ch = max((c.shape[0] for r in cells for c in r), default=1)
    cw = max((c.shape[1] for r in cells for c in r), default=1)
    gap_x, gap_y = max(2, cw // 8), max(2, ch // 3)
    H = len(rows) * (ch + gap_y) + gap_y
    W = ncol * (cw + gap_x)
    mosaic = np.ones((H, W, 3), dtype=np.float32)
    for i, r in enumerate(cells):
        for j, c in enumerate(r):
            y0 = gap_y + i * (ch + gap_y) + (ch - c.shape[0]) // 2
            x0 = j * (cw + gap_x) + (cw - c.shape[1]) // 2
            mosaic[y0:y0 + c.shape[0], x0:x0 + c.shape[1]] = c
    fig_w = 1.3 * ncol + 1.2
    fig_h = fig_w * H / (W + W * 1.2 / (1.3 * ncol))
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((1.2 / fig_w, 0.0, 1.0 - 1.2 / fig_w, 1.0))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.axis("off")
    for i, (label, items) in enumerate(rows):
        yc = gap_y + i * (ch + gap_y)
        ax.text(-gap_x, yc + ch / 2, label, ha="right", va="center", fontsize=8)
        for j, (cap, _) in enumerate(items):
            ax.text(j * (cw + gap_x) + cw / 2, yc - 0.5, cap, ha="center", va="bottom", fontsize=6.5)
    return _png(fig)


def worst_case_figure(items: Sequence[tuple[torch.Tensor, torch.Tensor, str, str]]) -> bytes:
    """Pairs (clean, worst-case blurred, clean caption, blurred caption) side by side."""
    plt = _plt()
    n = max(1, len(items))
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.2), squeeze=False)
    for j, (clean, adv, c1, c2) in enumerate(items):
        _show(axes[0][j], clean, c1)
        _show(axes[1][j], adv, c2)
    fig.tight_layout()
    return _png(fig)
