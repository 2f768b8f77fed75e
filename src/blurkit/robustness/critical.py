"""The smallest blur that flips each correctly classified image ("critical sigma")."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _common as c
from . import quality as q

__all__ = ["CriticalSigma", "critical_sigma"]


@dataclass
class CriticalSigma:
    """Per-image critical blur levels and the image quality given up at the flip.

    Attributes:
        family: blur family; ``max_sigma``, ``grid``, ``tol``: the search settings.
        sigma: ``(N,)`` smallest level found to change the decision (px). ``nan`` for images the
            model gets wrong unblurred; ``inf`` for images still correct at ``max_sigma`` (censored).
            The true boundary lies in ``(sigma - tol, sigma]`` (after the first flip on the grid).
        clean_correct: ``(N,)`` bool, the images that were searched.
        labels: ``(N,)`` true classes; ``flip_pred``: ``(N,)`` class predicted at ``sigma`` (-1 if none).
        psnr, ssim: ``(N,)`` between the clean image and the flipping image (nan where no flip).
    """

    family: str
    max_sigma: float
    grid: list[float]
    tol: float
    sigma: torch.Tensor
    clean_correct: torch.Tensor
    labels: torch.Tensor
    flip_pred: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    evaluations: int = field(default=0)

    @property
    def n(self) -> int:
        return int(self.sigma.shape[0])

    @property
    def n_searched(self) -> int:
        return int(self.clean_correct.sum())

    @property
    def flipped(self) -> torch.Tensor:
        """``(N,)`` bool: a flip was found within ``max_sigma``."""
        return torch.isfinite(self.sigma)

    @property
    def median(self) -> float:
        """Median critical level over the searched images (the mean of the two middle values for an
        even count, as ``numpy.median``; ``inf`` if half or more never flip)."""
        return _median(self.sigma[self.clean_correct])

    def survival(self, levels: Any = None) -> tuple[list[float], list[float]]:
        """Share of the searched images still correct at each level: ``P(sigma > level)``.

        Args:
            levels: levels to evaluate (default: 0 and the scan grid).

        Returns:
            ``(levels, share)`` lists.
        """
        lv = [0.0, *self.grid] if levels is None else [float(v) for v in levels]
        s = self.sigma[self.clean_correct]
        if s.numel() == 0:
            return lv, [float("nan")] * len(lv)
        return lv, [float((s > v).double().mean()) for v in lv]

    def summary(self) -> dict[str, Any]:
        fl = self.flipped & self.clean_correct
        return {
            "family": self.family, "n": self.n, "n_searched": self.n_searched, "n_flipped": int(fl.sum()),
            "median_sigma": self.median, "median_psnr_at_flip": _nanmedian(self.psnr[fl]),
            "median_ssim_at_flip": _nanmedian(self.ssim[fl]), "max_sigma": self.max_sigma, "tol": self.tol,
            "model_evaluations": self.evaluations,
        }

    def to_dict(self) -> dict[str, Any]:
        """Summary, survival curve and per-image values (JSON-ready)."""
        lv, sv = self.survival()
        return {**self.summary(), "grid": list(self.grid), "survival": {"levels": lv, "share": sv},
                "sigma": self.sigma.tolist(), "clean_correct": self.clean_correct.tolist(),
                "labels": self.labels.tolist(), "flip_pred": self.flip_pred.tolist(),
                "psnr": self.psnr.tolist(), "ssim": self.ssim.tolist()}

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """JSON text of :meth:`to_dict`; written atomically to ``path`` if given."""
        return c.write_json(self.to_dict(), path, indent)

    def to_dataframe(self):
        """One row per image (needs pandas)."""
        return c.to_dataframe([{"sigma": float(s), "clean_correct": bool(k), "label": int(y), "flip_pred": int(p),
                                "psnr": float(a), "ssim": float(b)}
                               for s, k, y, p, a, b in zip(self.sigma, self.clean_correct, self.labels,
                                                           self.flip_pred, self.psnr, self.ssim)])

    def plot_survival(self, ax=None, label: str | None = None, **kwargs):
        """Step plot of the survival curve (matplotlib); returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.gca()
        s = torch.sort(self.sigma[self.clean_correct]).values
        s = s[torch.isfinite(s)].tolist()
        n = max(self.n_searched, 1)
        xs = [0.0, *s, self.max_sigma]
        ys = [1.0, *[1.0 - (i + 1) / n for i in range(len(s))]]
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", label=label, **kwargs)
        ax.set_xlabel(f"{self.family} level (px)")
        ax.set_ylabel("share still correct")
        return ax


def _median(t: torch.Tensor) -> float:
    """``numpy.median`` of a 1-D tensor (``nan`` if empty); infinite values sort last."""
    if t.numel() == 0:
        return float("nan")
    v = torch.sort(t.double()).values
    m = v.numel() // 2
    if v.numel() % 2:
        return float(v[m])
    a, b = float(v[m - 1]), float(v[m])
    return b if math.isinf(b) else (a + b) / 2


def _nanmedian(t: torch.Tensor) -> float:
    return _median(t[~torch.isnan(t)])


def _predict(model, x, transform, dev, amp) -> torch.Tensor:
    return c.logits_of(model, x, transform, dev, amp).argmax(1)


def critical_sigma(
    model: nn.Module,
    data: Any,
    family: str = "gaussian",
    *,
    max_sigma: float = 8.0,
    grid_step: float = 0.5,
    tol: float = 0.02,
    device: torch.device | str | None = None,
    amp: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    blur_kwargs: Mapping[str, Any] | None = None,
    quality: bool = True,
    data_range: float = 1.0,
    progress: bool = True,
    max_batches: int | None = None,
) -> CriticalSigma:
    """For each correctly classified image, the smallest blur that changes the model's decision.

    Search, for all images of a batch at once:

    1. **coarse scan** on the grid ``grid_step, 2 grid_step, ..., max_sigma``: the first grid level
       at which the decision differs from the label (images that flip stop being blurred). A
       decision that flips and flips back between grid points is not seen; a flip that later
       recovers is still counted at its first grid level (non-monotonic curves are fine).
    2. **bisection** between the last correct and the first flipped grid level, with one blur
       level *per image* in each batched step, until the bracket is at most ``tol`` wide. The
       reported level is the bracket's upper end, a level verified to flip.

    The "box" family searches integer radii (no bisection; its ``tol`` is 1 px). ``quality`` adds PSNR and SSIM
    between each clean image and its flipping blur ("the minimal sacrifice of image quality that
    causes a misclassification").

    Args:
        model: classifier (``nn.Module``, logits out).
        data: iterable of ``(images, labels)`` batches.
        family: ``"gaussian"``, ``"motion"``, ``"defocus"`` or ``"box"``.
        max_sigma: largest level searched (px); the scan never goes beyond it.
        grid_step: spacing of the coarse scan (px); a step above ``max_sigma`` scans ``max_sigma`` alone.
        tol: width of the final bracket (px).
        device, amp, transform, blur_kwargs, progress, max_batches: as in :func:`accuracy_curve`.
        quality: compute PSNR/SSIM at the flip.
        data_range: value range of the images for PSNR/SSIM (1.0 for [0, 1] images).

    Returns:
        :class:`CriticalSigma`.

    Example:
        >>> res = critical_sigma(net, loader, "gaussian", max_sigma=6, tol=0.02)
        >>> res.median, res.survival([1, 2, 3]), float(res.ssim.nanmean())
    """
    models, single = c.as_models(model)
    if not single:
        raise TypeError("critical_sigma takes one model; call it once per model")
    net = models["model"]
    fam = c.check_family(family)
    for name, v in (("max_sigma", max_sigma), ("grid_step", grid_step), ("tol", tol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
    c.check_options(transform=transform, data_range=data_range)
    c.check_max_batches(max_batches)
    blur_kwargs = c.check_blur_kwargs(fam, blur_kwargs)
    if fam == "box":
        grid = [float(r) for r in range(1, int(math.floor(max_sigma)) + 1)]
        tol = 1.0  # integer radii: the boundary lies in (sigma - 1, sigma]
    else:  # grid_step, 2 grid_step, ... up to max_sigma, and max_sigma itself
        n_grid = int(math.floor(max_sigma / grid_step + 1e-9))
        grid = [grid_step * (i + 1) for i in range(n_grid)]
        if not grid or grid[-1] < max_sigma - 1e-9:
            grid.append(float(max_sigma))
    if not grid:
        raise ValueError(f"max_sigma={max_sigma!r} leaves no level to search for family {fam!r}")
    dev = c.resolve_device(device, models)
    was_training = net.training if isinstance(net, nn.Module) else False
    if isinstance(net, nn.Module):
        net.eval()
    gl = torch.tensor(grid, dtype=torch.float64)
    out_sigma, out_ok, out_y, out_pred, out_psnr, out_ssim = [], [], [], [], [], []
    evals = 0
    total = c.count_batches(data)
    try:
        with torch.no_grad(), c.progress_bar(total, f"critical_sigma ({fam})", progress) as bar:
            for x, y in c.batches(data, dev, max_batches):
                B = x.shape[0]
                logits = c.logits_of(net, x, transform, dev, amp)
                c.check_labels(y, logits.shape[1])
                ok = (logits.argmax(1) == y).cpu()
                evals += B
                sig = torch.full((B,), float("nan"), dtype=torch.float64)
                fpred = torch.full((B,), -1, dtype=torch.int64)
                ps = torch.full((B,), float("nan"))
                ss = torch.full((B,), float("nan"))
                idx = torch.nonzero(ok).flatten()  # on the CPU, like the per-image results
                if idx.numel():
                    xs, ys = x.index_select(0, idx.to(dev)), y.index_select(0, idx.to(dev))
                    n = idx.numel()
                    first = torch.full((n,), -1, dtype=torch.int64)
                    alive = torch.ones(n, dtype=torch.bool)
                    for j, g in enumerate(grid):  # 1. coarse scan, flipped images drop out
                        a = torch.nonzero(alive).flatten()
                        if a.numel() == 0:
                            break
                        ad = a.to(dev)
                        p = _predict(net, c.apply_blur(xs.index_select(0, ad), fam, g, blur_kwargs),
                                     transform, dev, amp)
                        evals += a.numel()
                        fl = (p != ys.index_select(0, ad)).cpu()
                        first[a[fl]] = j
                        alive[a[fl]] = False
                    found = torch.nonzero(first >= 0).flatten()
                    res = torch.full((n,), float("inf"), dtype=torch.float64)
                    if found.numel():
                        fj = first[found]
                        hi = gl[fj].clone()
                        lo = torch.where(fj > 0, gl[(fj - 1).clamp_min(0)], torch.zeros_like(hi))
                        fd = found.to(dev)
                        xf, yf = xs.index_select(0, fd), ys.index_select(0, fd)
                        while fam != "box" and float((hi - lo).max()) > tol:  # 2. batched bisection
                            act = torch.nonzero(hi - lo > tol).flatten()
                            mid = (lo[act] + hi[act]) / 2
                            ad = act.to(dev)
                            p = _predict(net, c.apply_blur(xf.index_select(0, ad), fam,
                                                           mid.to(dev, torch.float32), blur_kwargs),
                                         transform, dev, amp)
                            evals += act.numel()
                            fl = (p != yf.index_select(0, ad)).cpu()
                            hi[act] = torch.where(fl, mid, hi[act])
                            lo[act] = torch.where(fl, lo[act], mid)
                        res[found] = hi
                        xb = c.apply_blur(xf, fam, hi.to(dev, torch.float32), blur_kwargs)
                        pf = _predict(net, xb, transform, dev, amp)
                        evals += found.numel()
                        fp = torch.full((n,), -1, dtype=torch.int64)
                        fp[found] = pf.cpu()
                        fpred[idx] = fp
                        if quality:
                            pq = torch.full((n,), float("nan"))
                            sq = torch.full((n,), float("nan"))
                            pq[found] = q.psnr(xf.float(), xb.float(), data_range).cpu()
                            sq[found] = q.ssim(xf.float(), xb.float(), data_range).cpu()
                            ps[idx] = pq
                            ss[idx] = sq
                    sig[idx] = res
                out_sigma.append(sig)
                out_ok.append(ok)
                out_y.append(y.cpu())
                out_pred.append(fpred)
                out_psnr.append(ps)
                out_ssim.append(ss)
                if bar is not None:
                    bar.update(1)
    finally:
        if isinstance(net, nn.Module):
            net.train(was_training)
    if not out_sigma:
        raise ValueError("data yielded no batches")
    return CriticalSigma(family=fam, max_sigma=float(max_sigma), grid=grid, tol=float(tol),
                         sigma=torch.cat(out_sigma), clean_correct=torch.cat(out_ok), labels=torch.cat(out_y),
                         flip_pred=torch.cat(out_pred), psnr=torch.cat(out_psnr), ssim=torch.cat(out_ssim),
                         evaluations=evals)
