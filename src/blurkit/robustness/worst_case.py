"""Worst-case blur: per-image blur parameters optimised by gradient to flip a decision cheaply."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import filtering as _f
from .. import kernels as _kernels
from .._validation import check_images, per_sample
from . import _common as c
from . import quality as q

__all__ = ["WorstCaseBlur", "worst_case_blur", "WORST_CASE_FAMILIES"]

WORST_CASE_FAMILIES = ("gaussian", "anisotropic", "motion", "free")


@dataclass
class WorstCaseBlur:
    """Result of :func:`worst_case_blur` for a batch.

    Attributes:
        family, metric, budget: the search settings.
        params: best parameters per image: ``sigma`` (gaussian); ``sigma``, ``sigma_y``, ``angle``
            (anisotropic); ``length``, ``angle`` (motion); ``kernel`` ``(B, K, K)`` (free).
        flipped: ``(B,)`` bool, a flip was found within the budget.
        clean_correct: ``(B,)`` bool, the model was right on the clean image (others are skipped).
        ssim, psnr: ``(B,)`` fidelity of the best flipping blur (nan where none was found).
        pred: ``(B,)`` class predicted under the best blur (-1 where none).
    """

    family: str
    metric: str
    budget: float
    params: dict[str, torch.Tensor]
    flipped: torch.Tensor
    clean_correct: torch.Tensor
    ssim: torch.Tensor
    psnr: torch.Tensor
    pred: torch.Tensor
    steps: int = field(default=0)

    @property
    def cost(self) -> torch.Tensor:
        """``1 - SSIM`` (metric "ssim") or ``-PSNR`` (metric "psnr") per image; nan where no flip."""
        return 1.0 - self.ssim if self.metric == "ssim" else -self.psnr

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Blur ``images`` (the same batch) with the found parameters (identity where none)."""
        return _blur(images, self.family, {k: v.to(images.device) for k, v in self.params.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "metric": self.metric, "budget": self.budget, "steps": self.steps,
                "flipped": self.flipped.tolist(), "clean_correct": self.clean_correct.tolist(),
                "ssim": self.ssim.tolist(), "psnr": self.psnr.tolist(), "pred": self.pred.tolist(),
                "params": {k: v.tolist() for k, v in self.params.items()}}

    def to_json(self, path=None, indent: int = 2) -> str:
        return c.write_json(self.to_dict(), path, indent)


def _blur(x: torch.Tensor, family: str, p: dict[str, torch.Tensor]) -> torch.Tensor:
    if family == "gaussian":
        return _f.gaussian_blur(x, p["sigma"])
    if family == "anisotropic":
        return _f.gaussian_blur(x, p["sigma"], sigma_y=p["sigma_y"], angle=p["angle"])
    if family == "motion":
        return _f.motion_blur(x, p["length"], p["angle"])
    return _f.filter2d(x, p["kernel"])


def _params(family: str, theta: dict[str, torch.Tensor], max_sigma: float) -> dict[str, torch.Tensor]:
    """Map unconstrained variables to blur parameters (bounded, differentiable)."""
    if family == "free":
        B, K, _ = theta["logits"].shape
        return {"kernel": torch.softmax(theta["logits"].flatten(1), dim=1).view(B, K, K)}
    out = {}
    for k, v in theta.items():
        if k == "angle":
            out[k] = v
        else:  # sigma-like: (0, max_sigma) through a sigmoid
            out[k] = max_sigma * torch.sigmoid(v)
    return out


def _init(family: str, B: int, kernel_size: int, init: torch.Tensor, max_sigma: float,
          generator: torch.Generator, device) -> dict[str, torch.Tensor]:
    def logit(v: torch.Tensor) -> torch.Tensor:
        r = (v / max_sigma).clamp(1e-4, 1 - 1e-4)
        return torch.log(r / (1 - r))

    ang = torch.rand(B, generator=generator, dtype=torch.float32) * 180.0 - 90.0
    if family == "gaussian":
        th = {"sigma": logit(init)}
    elif family == "anisotropic":
        th = {"sigma": logit(init), "sigma_y": logit(init), "angle": ang}  # isotropic start
    elif family == "motion":
        th = {"length": logit(init * math.sqrt(12.0)), "angle": ang}  # same spread along the streak
    else:
        r = kernel_size // 2
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        d2 = t[:, None] ** 2 + t[None, :] ** 2
        base = -d2[None] / (2 * init.clamp_min(0.3)[:, None, None] ** 2)  # log of a Gaussian kernel
        noise = 0.01 * torch.randn(B, kernel_size, kernel_size, generator=generator)
        th = {"logits": base + noise}
    return {k: v.to(device).requires_grad_(True) for k, v in th.items()}


def _isotropic(family: str, init: torch.Tensor, kernel_size: int, dtype: torch.dtype,
               device) -> dict[str, torch.Tensor] | None:
    """The isotropic Gaussian of ``init`` px in the family's own parameters (``None`` for motion, or
    a free kernel too small to hold it): evaluated as the search's first candidate."""
    sig = init.to(device, dtype)
    if family == "gaussian":
        return {"sigma": sig}
    if family == "anisotropic":
        return {"sigma": sig, "sigma_y": sig.clone(), "angle": torch.zeros_like(sig)}
    if family == "free":
        k = _kernels.gaussian(sig, dtype=dtype, device=device)  # truncate 3, as gaussian_blur's default
        kh = k.shape[-1]
        if kh > kernel_size:
            return None
        out = torch.zeros(sig.shape[0], kernel_size, kernel_size, dtype=dtype, device=device)
        o = (kernel_size - kh) // 2
        out[:, o:o + kh, o:o + kh] = k
        return {"kernel": out}
    return None


def worst_case_blur(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    family: str = "anisotropic",
    *,
    metric: str = "ssim",
    budget: float | None = None,
    steps: int = 100,
    lr: float = 0.1,
    kernel_size: int | None = None,
    max_sigma: float = 8.0,
    init_sigma: float | torch.Tensor = 0.5,
    penalty: float = 1.0,
    margin: float = 0.5,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    data_range: float = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> WorstCaseBlur:
    """Optimise blur parameters per image, by gradient through the engine, to flip the decision
    at the smallest fidelity cost.

    Each image's parameters (Gaussian sigma; anisotropic sigma, sigma_y and angle; motion length
    and angle; or a free non-negative kernel summing to 1, parameterised by a softmax over
    ``kernel_size x kernel_size`` logits) minimise ``relu(margin_y + margin) + lam * cost`` with Adam,
    where ``margin_y = logit_y - max_{j != y} logit_j`` and ``cost = 1 - SSIM`` (or ``-PSNR / 10``).
    Each image's weight ``lam`` doubles while it is flipped and halves while it is not (an online
    version of the Carlini-Wagner constant search), and the cheapest flipping parameters seen
    within the budget are kept.

    Args:
        model: classifier (``nn.Module``, logits out), differentiable.
        images: ``(B, C, H, W)`` float, in ``[0, data_range]``.
        labels: ``(B,)`` true classes.
        family: ``"gaussian"``, ``"anisotropic"``, ``"motion"`` or ``"free"``.
        metric: ``"ssim"`` or ``"psnr"`` (the fidelity to keep high).
        budget: least acceptable fidelity: SSIM (default 0.0) or PSNR in dB (default 0.0); flips
            below it are not counted.
        steps: optimisation steps. lr: Adam step size.
        kernel_size: odd size of the free kernel (default ``2 ceil(3 max(init_sigma)) + 1``, at least 9).
        max_sigma: upper bound of sigma / sigma_y / motion length (px).
        init_sigma: starting blur (px), a number or one per image ``(B,)``. The isotropic Gaussian
            of ``init_sigma`` (``gaussian_blur``'s, truncate 3) is evaluated first, in the family's
            own parameters, and kept as the first candidate where it flips within the budget. With
            the :func:`critical_sigma` values (verified flips) the gaussian, anisotropic and free
            families therefore report a cost no higher than the isotropic critical sigma's, up to
            float rounding (the 2-D kernels round differently from the separable blur: ~1e-4 SSIM at
            most in the tests; a free kernel must be large enough to hold that Gaussian, as the
            default size is). The motion
            family starts at length ``sqrt(12) init_sigma`` (the same spread), not at a known flip:
            for it this is a search, not a bound.
        penalty: initial ``lam``. margin: logit margin to aim beyond the decision boundary.
        transform: applied after the blur, before the model (e.g. normalisation).
        data_range: image value range for SSIM/PSNR.
        seed: seed of the initial angles / kernel noise.
        device: where to run (default: the images' device).

    Returns:
        :class:`WorstCaseBlur`.

    Example:
        >>> r = worst_case_blur(net, x, y, "anisotropic", metric="ssim", steps=100)
        >>> r.flipped.float().mean(), r.ssim[r.flipped].median()
    """
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"model must be an nn.Module (logits out); got {type(model).__name__}")
    if not isinstance(family, str) or family not in WORST_CASE_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(map(repr, WORST_CASE_FAMILIES))}; got {family!r}")
    if metric not in ("ssim", "psnr"):
        raise ValueError(f"metric must be 'ssim' or 'psnr'; got {metric!r}")
    x4, _ = check_images(images)
    if not x4.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor; got {x4.dtype}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (x4.shape[0],) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({x4.shape[0]},); got {labels!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    for name, v in (("max_sigma", max_sigma), ("lr", lr), ("penalty", penalty)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (logits); got {margin!r}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not math.isfinite(budget) or (metric == "ssim" and not -1 <= budget <= 1)):
        allowed = "an SSIM in [-1, 1]" if metric == "ssim" else "a finite PSNR in dB"
        raise ValueError(f"budget must be {allowed} or None; got {budget!r}")
    c.check_options(transform=transform, seed=seed, data_range=data_range)
    init = per_sample(init_sigma, "init_sigma", x4.shape[0], minimum=0.0, strict=True).detach().float().cpu()
    if kernel_size is None:
        kernel_size = max(9, 2 * math.ceil(3 * float(init.max())) + 1)
    if family == "free" and (isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3
                             or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be an odd integer >= 3; got {kernel_size!r}")
    if budget is None:
        budget = 0.0
    dev = c.resolve_device(device, {}) if device is not None else x4.device
    wdt = c.model_dtype(model) or (x4.dtype if x4.dtype in (torch.float32, torch.float64) else torch.float32)
    x = x4.to(dev, wdt)  # the model's floating dtype (float64 models get float64 images)
    y = labels.to(dev).long()
    B = x.shape[0]
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
    gen = torch.Generator().manual_seed(seed)
    theta = {k: v.detach().to(wdt).requires_grad_(True)
             for k, v in _init(family, B, kernel_size, init, max_sigma, gen, dev).items()}
    opt = torch.optim.Adam(list(theta.values()), lr=lr)
    lam = torch.full((B,), float(penalty), device=dev, dtype=wdt)
    best_cost = torch.full((B,), float("inf"), device=dev, dtype=wdt)
    best = {k: v.detach().clone() for k, v in _params(family, theta, max_sigma).items()}
    best_ssim = torch.full((B,), float("nan"), device=dev, dtype=wdt)
    best_psnr = torch.full((B,), float("nan"), device=dev, dtype=wdt)
    best_pred = torch.full((B,), -1, dtype=torch.long, device=dev)

    def fidelity(xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fidelity, cost) of each blurred image: SSIM and 1 - SSIM, or PSNR and -PSNR / 10."""
        if metric == "ssim":
            f = q._local_ssim(x, xb, data_range)
            return f, 1.0 - f
        f = q._local_psnr(x, xb, data_range)
        return f, -f / 10.0

    try:
        with torch.no_grad():
            clean_logits = c.logits_of(model, x, transform, dev, False)
            c.check_labels(y, clean_logits.shape[1])
            clean_ok = clean_logits.argmax(1) == y
            cand = _isotropic(family, init, kernel_size, wdt, dev)
            if cand is not None:  # the isotropic blur, evaluated exactly: the first candidate
                xb0 = _blur(x, family, cand)
                lg = c.logits_of(model, xb0, transform, dev, False)
                mg0 = lg.gather(1, y[:, None]).squeeze(1) - lg.masked_fill(
                    F.one_hot(y, lg.shape[1]).bool(), float("-inf")).amax(1)
                fid0, cost0 = fidelity(xb0)
                ok0 = (mg0 < 0) & clean_ok & (fid0 >= budget)
                best_cost = torch.where(ok0, cost0, best_cost)
                for k, v in cand.items():
                    best[k] = torch.where(ok0.view(-1, *([1] * (v.dim() - 1))), v, best[k])
                best_pred = torch.where(ok0, lg.argmax(1), best_pred)
        for _ in range(steps):
            p = _params(family, theta, max_sigma)
            xb = _blur(x, family, p)
            logits = c.logits_of(model, xb, transform, dev, False)
            true = logits.gather(1, y[:, None]).squeeze(1)
            other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
            mg = true - other
            fid, cost = fidelity(xb)
            loss = (F.relu(mg + margin) + lam * cost)[clean_ok].sum()
            with torch.no_grad():
                fl = (mg < 0) & clean_ok & (fid >= budget)
                better = fl & (cost < best_cost)
                if bool(better.any()):
                    best_cost = torch.where(better, cost.detach(), best_cost)
                    for k, v in p.items():
                        sel = better.view(-1, *([1] * (v.dim() - 1)))
                        best[k] = torch.where(sel, v.detach(), best[k])
                    best_pred = torch.where(better, logits.argmax(1), best_pred)
                lam = torch.where(mg < 0, lam * 2.0, lam * 0.5).clamp(1e-3, 1e4)
            opt.zero_grad(set_to_none=True)
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
                for t, g in zip(theta.values(), grads):
                    t.grad = g
                opt.step()
        found = torch.isfinite(best_cost)
        with torch.no_grad():
            if bool(found.any()):
                xb = _blur(x, family, best)
                best_ssim = torch.where(found, q._local_ssim(x, xb, data_range), best_ssim)
                best_psnr = torch.where(found, q._local_psnr(x, xb, data_range), best_psnr)
        # identity parameters where nothing was found
        ident = _identity(family, best, found)
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return WorstCaseBlur(family=family, metric=metric, budget=float(budget),
                         params={k: v.cpu() for k, v in ident.items()}, flipped=found.cpu(),
                         clean_correct=clean_ok.cpu(), ssim=best_ssim.cpu(), psnr=best_psnr.cpu(),
                         pred=best_pred.cpu(), steps=steps)


def _identity(family: str, best: dict[str, torch.Tensor], found: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in best.items():
        if k == "kernel":
            K = v.shape[-1]
            eye = torch.zeros_like(v)
            eye[:, K // 2, K // 2] = 1.0
            out[k] = torch.where(found.view(-1, 1, 1), v, eye)
        elif k == "angle":
            out[k] = v
        else:
            out[k] = torch.where(found, v, torch.zeros_like(v))
    return out
