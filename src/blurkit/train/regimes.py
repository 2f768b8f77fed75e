"""Training regimes: how a batch is blurred and what loss the model is trained on.

Every regime works on float batches in ``[0, 1]`` *on the training device*, after flips/rotations
and before normalisation (the Jang & Tong order). Its random draws come from a
:class:`~blurkit.train.distributed.StepRandom`, i.e. they are made for the global batch and sliced
to this rank, so DDP runs see the same blurs as a single process and a resumed run the same blurs
as an uninterrupted one.

=================  ===================================================================================
regime             what it does
=================  ===================================================================================
``standard``       no blur (Jang & Tong's baseline)
``weak``           sigma in {0..5} with p ~ exp(-1.18 sigma) (Jang & Tong)
``strong``         sigma in {0, 1, 2, 4, 8} equally likely (Jang & Tong)
``mix``            half of every batch blurred with sigma 4 (Yoshihara et al. 2023, "S+B")
``random-mix``     half of every batch, sigma ~ U(0, 5) (Yoshihara)
``multi-steps``    epoch-keyed: sigma 4, 3, 2, 1, 0, every ``every`` epochs (Yoshihara)
``custom``         ``sigmas`` + ``weights``, or ``sigma = [low, high]`` (+ ``distribution``), ``p``
``schedule``       ``stages = [[start_epoch, sigma], ...]`` or ``sigmas`` + ``every`` (epoch-keyed)
``families``       a mix of Gaussian / motion / defocus / box blur (``families`` table + ``weights``)
``adversarial``    per-image worst-case sigma (inner maximisation through the differentiable engine,
                   bounded by ``sigma_max`` and optionally an SSIM floor), mixed with clean images
``consistency``    clean + blurred views, cross-entropy on clean + ``weight`` x Jensen-Shannon
                   consistency (AugMix-style, :func:`blurkit.losses.blur_consistency`)
``deblur-front``   a deblurring front end before the classifier (needs :class:`blurkit.DeblurFront`)
=================  ===================================================================================

Sigmas are pixels at ``reference_size`` (224) and are scaled to the training resolution.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BlurkitError
from ..filtering import gaussian_blur
from .distributed import StepRandom, step_seed

__all__ = ["StepContext", "Regime", "FrontModel", "deblur_front", "BlurRegimeTrainer", "AdversarialRegime",
           "ConsistencyRegime", "REGIMES", "build_regime", "worst_case_sigma"]


@dataclass
class StepContext:
    """What a regime needs besides the batch.

    Attributes:
        model: the (possibly DDP-wrapped / compiled) model to train.
        inner: the bare model (for extra forward passes that must not trigger DDP gradient hooks).
        prep: ``[0, 1]`` float batch -> normalised model input (channels repeated, memory format).
        criterion: ``(logits, labels) -> loss`` (mean over the batch).
        autocast: a context manager factory for mixed precision (a no-op without AMP).
        scale: pixels per reference pixel (``image_size / reference_size``).
    """

    model: nn.Module
    inner: nn.Module
    prep: Callable[[torch.Tensor], torch.Tensor]
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast: Callable[[], contextlib.AbstractContextManager]
    scale: float = 1.0


class Regime:
    """Base class: no blur. Subclasses override :meth:`blur` and/or :meth:`loss`."""

    name = "standard"
    blurs = False

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (epoch-keyed schedules switch here)."""

    def blur(self, x: torch.Tensor, rng: StepRandom) -> torch.Tensor:
        """The regime's random blur of a ``[0, 1]`` batch ``(b, C, H, W)`` (identity here)."""
        return x

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: StepRandom, ctx: StepContext
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss for one micro-batch; returns ``(loss, logits)`` (logits for accuracy)."""
        xb = self.blur(x, rng)
        with ctx.autocast():
            logits = ctx.model(ctx.prep(xb))
            loss = ctx.criterion(logits, y)
        return loss, logits

    def describe(self) -> str:
        return self.name


def _slice_params(params: Mapping[str, torch.Tensor], rng: StepRandom) -> dict[str, torch.Tensor]:
    return {k: rng.take(v) for k, v in params.items()}


class BlurRegimeTrainer(Regime):
    """Train on images blurred by a :mod:`blurkit.augment` transform (any family, mix or schedule).

    The transform's parameters are drawn for the global batch with a seed derived from the training
    position (``transform.reseed`` + ``sample_params``), sliced to this rank, and applied with
    ``transform.apply`` on the training device.
    """

    blurs = True

    def __init__(self, name: str, transform: nn.Module) -> None:
        self.name = name
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(epoch)

    def blur(self, x: torch.Tensor, rng: StepRandom) -> torch.Tensor:
        self.transform.reseed(step_seed(rng.seed, rng.epoch, rng.step, 1000 + rng.next_call()))
        params = self.transform.sample_params(rng.global_batch, x.shape[-2], x.shape[-1], "cpu")
        return self.transform.apply(x, _slice_params(params, rng))

    def describe(self) -> str:
        return f"{self.name}: {self.transform!r}"


@contextlib.contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics unchanged inside the block (momentum 0), train-mode batch stats."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None
                          else None))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom, nbt in saved:
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


def worst_case_sigma(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma_max: float | torch.Tensor, *,
                     prep: Callable[[torch.Tensor], torch.Tensor] = lambda t: t, steps: int = 3,
                     step_size: float = 0.5, init: torch.Tensor | None = None, truncate: float = 2.0,
                     border: str = "reflect", min_ssim: float | None = None,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                     ) -> torch.Tensor:
    """Per-image Gaussian sigma in ``[0, sigma_max]`` that (locally) maximises the cross-entropy.

    Projected signed-gradient ascent on sigma through :func:`blurkit.gaussian_blur` (differentiable
    in sigma): ``sigma <- clip(sigma + step_size * sigma_max * sign(dL/dsigma), 0, sigma_max)``.
    With ``min_ssim``, sigmas whose blurred image falls below that SSIM to the clean image (the
    fidelity budget, :func:`blurkit.measure.ssim`) are shrunk by bisection towards 0.

    Args:
        model: classifier (its parameters get no gradient here; BatchNorm statistics are not updated).
        x: ``(B, C, H, W)`` images in ``[0, 1]``; ``y``: ``(B,)`` labels.
        sigma_max: the budget in pixels (number or ``(B,)``).
        prep: normalisation applied before the model.
        steps: ascent steps; ``step_size``: step as a fraction of ``sigma_max``.
        init: starting sigmas ``(B,)`` (default ``sigma_max / 2``).

    Returns:
        ``(B,)`` sigmas in pixels (detached).

    Example:
        >>> s = worst_case_sigma(model, x, y, sigma_max=2.0, steps=5)
    """
    smax = torch.as_tensor(sigma_max, dtype=torch.float32, device=x.device).expand(x.shape[0]).clone()
    s = (smax / 2) if init is None else init.detach().to(x.device, torch.float32).clamp(min=0).minimum(smax)
    x = x.detach()
    with frozen_norm_stats(model):
        for _ in range(steps):
            s = s.detach().requires_grad_(True)
            with autocast():
                xb = gaussian_blur(x, s, truncate=truncate, border=border)
                loss = F.cross_entropy(model(prep(xb)).float(), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, s)
            s = (s.detach() + step_size * smax * g.sign()).clamp(min=0).minimum(smax)
    s = s.detach()
    if min_ssim is not None:
        from .. import measure

        lo, hi = torch.zeros_like(s), s.clone()
        with torch.no_grad():
            ok = measure.ssim(gaussian_blur(x, s, truncate=truncate, border=border).float(), x.float(),
                              data_range=1.0) >= min_ssim
            for _ in range(6):  # bisection on the images that break the budget
                if bool(ok.all()):
                    break
                mid = (lo + hi) / 2
                good = measure.ssim(gaussian_blur(x, mid, truncate=truncate, border=border).float(), x.float(),
                                    data_range=1.0) >= min_ssim
                lo = torch.where(~ok & good, mid, lo)
                hi = torch.where(~ok & ~good, mid, hi)
            s = torch.where(ok, s, lo)
    return s


class AdversarialRegime(Regime):
    """Worst-case blur training: each step, find per-image sigmas that maximise the loss, train on them.

    Options (``regime_options``): ``sigma_max`` (reference pixels, default 4), ``steps`` (3),
    ``step_size`` (0.5 of ``sigma_max``), ``fraction`` of each batch replaced by its worst-case blur
    (0.5; the rest go through the ``base`` regime, default ``standard``), ``min_ssim`` (None),
    ``truncate`` (2).
    """

    name = "adversarial"
    blurs = True

    def __init__(self, scale: float, base: Regime, *, sigma_max: float = 4.0, steps: int = 3,
                 step_size: float = 0.5, fraction: float = 0.5, min_ssim: float | None = None,
                 truncate: float = 2.0, border: str = "reflect") -> None:
        if not (sigma_max > 0):
            raise ValueError(f"regime_options.sigma_max must be > 0 (pixels at reference size); got {sigma_max!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"regime_options.steps must be an int >= 1; got {steps!r}")
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not (0 < step_size < math.inf):
            raise ValueError(f"regime_options.step_size must be a finite number > 0 (a fraction of sigma_max per "
                             f"ascent step); got {step_size!r}")
        if not (0 <= fraction <= 1):
            raise ValueError(f"regime_options.fraction must be in [0, 1]; got {fraction!r}")
        if min_ssim is not None and not (0 < min_ssim < 1):
            raise ValueError(f"regime_options.min_ssim must be in (0, 1) or absent; got {min_ssim!r}")
        self.sigma_max_px = float(sigma_max) * scale
        self.sigma_max, self.steps, self.step_size, self.fraction = sigma_max, steps, step_size, fraction
        self.min_ssim, self.truncate, self.border, self.base = min_ssim, truncate, border, base

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def loss(self, x, y, rng, ctx):
        init = rng.uniform(0.0, self.sigma_max_px)
        chosen = rng.uniform() < self.fraction
        was_training = ctx.inner.training
        s = worst_case_sigma(ctx.inner, x, y, self.sigma_max_px, prep=ctx.prep, steps=self.steps,
                             step_size=self.step_size, init=init, truncate=self.truncate, border=self.border,
                             min_ssim=self.min_ssim, autocast=ctx.autocast)
        ctx.inner.train(was_training)
        xa = gaussian_blur(x, torch.where(chosen, s, torch.zeros_like(s)), truncate=self.truncate,
                           border=self.border)
        xb = torch.where(chosen.view(-1, 1, 1, 1), xa, self.base.blur(x, rng))
        with ctx.autocast():
            logits = ctx.model(ctx.prep(xb))
            loss = ctx.criterion(logits, y)
        self.last_mean_sigma = float(s[chosen].mean()) if bool(chosen.any()) else 0.0
        return loss, logits

    def describe(self) -> str:
        return (f"adversarial: sigma <= {self.sigma_max} (ref px; {self.sigma_max_px:.3g} px here), "
                f"{self.steps} steps, fraction {self.fraction}, min_ssim {self.min_ssim}, base {self.base.name}")


def _js(clean: torch.Tensor, views: list[torch.Tensor]) -> torch.Tensor:
    try:
        from ..losses import blur_consistency
    except ImportError:  # pragma: no cover - losses ships with blurkit; kept for partial installs
        ps = [F.softmax(t.float(), 1) for t in [clean, *views]]
        m = torch.stack(ps).mean(0).clamp(1e-7, 1).log()
        return sum(F.kl_div(m, p, reduction="batchmean") for p in ps) / len(ps)
    return blur_consistency(clean.float(), [v.float() for v in views], "js")


class ConsistencyRegime(Regime):
    """Clean + blurred views; loss = CE(clean) + ``weight`` * JS(clean, blurred views) (AugMix-style).

    Options: ``base`` (regime drawing the blurred views, default ``strong``), ``views`` (1 or 2,
    default 2 as AugMix), ``weight`` (12, AugMix's lambda), ``ce_on_views`` (False: CE on clean only).
    The views are forwarded with the clean batch in one pass.
    """

    name = "consistency"
    blurs = True

    def __init__(self, base: Regime, *, views: int = 2, weight: float = 12.0, ce_on_views: bool = False) -> None:
        if views not in (1, 2, 3):
            raise ValueError(f"regime_options.views must be 1, 2 or 3; got {views!r}")
        if not weight >= 0:
            raise ValueError(f"regime_options.weight must be >= 0; got {weight!r}")
        self.base, self.views, self.weight, self.ce_on_views = base, views, float(weight), ce_on_views

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def loss(self, x, y, rng, ctx):
        xs = [x] + [self.base.blur(x, rng) for _ in range(self.views)]
        with ctx.autocast():
            logits = ctx.model(ctx.prep(torch.cat(xs)))
            parts = list(logits.split(x.shape[0]))
            ce = ctx.criterion(parts[0], y)
            if self.ce_on_views:
                ce = (ce + sum(ctx.criterion(p, y) for p in parts[1:])) / len(parts)
        loss = ce + self.weight * _js(parts[0], parts[1:])
        return loss, parts[0]

    def describe(self) -> str:
        return f"consistency: {self.views} view(s) from {self.base.name}, JS weight {self.weight}"


# ------------------------------------------------------------------------------------- building
def _gaussian_from_options(opts: dict[str, Any], scale_ref: float | None, truncate: float | None,
                           border: str | None) -> nn.Module:
    from ..augment import RandomGaussianBlur

    kw: dict[str, Any] = {"reference_size": scale_ref, "truncate": truncate or 2.0, "border": border or "reflect",
                          "p": float(opts.pop("p", 1.0)), "exact_fraction": bool(opts.pop("exact_fraction", False))}
    if "sigmas" in opts:
        kw["sigmas"] = [float(s) for s in opts.pop("sigmas")]
        if "weights" in opts:
            kw["weights"] = [float(w) for w in opts.pop("weights")]
    elif "sigma" in opts:
        s = opts.pop("sigma")
        kw["sigma"] = tuple(float(a) for a in s) if isinstance(s, (list, tuple)) else float(s)
        if "distribution" in opts:
            kw["distribution"] = opts.pop("distribution")
    else:
        raise ValueError("regime 'custom' needs regime_options.sigmas (+ weights) or regime_options.sigma "
                         "(a number or [low, high]); e.g. --sigmas 0,1,2,4,8 --weights 1,1,1,1,1")
    return RandomGaussianBlur(**kw)


_FAMILY_CLASSES = {"gaussian": "RandomGaussianBlur", "motion": "RandomMotionBlur", "defocus": "RandomDefocusBlur",
                   "box": "RandomBoxBlur"}


def _families(opts: dict[str, Any], scale_ref: float | None, truncate: float | None,
              border: str | None) -> nn.Module:
    from .. import augment

    fams = opts.pop("families", None)
    if not isinstance(fams, dict) or not fams:
        raise ValueError("regime 'families' needs regime_options.families, a table family -> options, e.g. "
                         "{gaussian = {sigma = [0.5, 4]}, motion = {length = [3, 15]}, defocus = {radius = [1, 4]}}")
    transforms = {}
    for name, fo in fams.items():
        fo = dict(fo or {})
        family = fo.pop("family", name)
        if family not in _FAMILY_CLASSES:
            raise ValueError(f"regime_options.families: unknown family {family!r}; known: {', '.join(_FAMILY_CLASSES)}")
        fo = {k: (tuple(v) if isinstance(v, list) and k not in ("sigmas", "weights", "sizes") else v)
              for k, v in fo.items()}
        fo.setdefault("reference_size", scale_ref)
        if border:
            fo.setdefault("border", border)
        if family == "gaussian":
            fo.setdefault("truncate", truncate or 2.0)
        transforms[name] = getattr(augment, _FAMILY_CLASSES[family])(**fo)
    return augment.RandomBlur(transforms, weights=opts.pop("weights", None), p=float(opts.pop("p", 1.0)))


def _blur_regime(name: str, opts: dict[str, Any], scale_ref: float | None, truncate: float | None,
                 border: str | None) -> Regime:
    from .. import presets

    if name == "standard" and not opts:
        return Regime()
    if name in presets.names():
        preset = presets.get(name)
        over: dict[str, Any] = {"reference_size": scale_ref}
        if truncate is not None:
            over["truncate"] = truncate
        if border is not None:
            over["border"] = border
        if "sigma" in opts:
            over["sigma"] = opts.pop("sigma")
        if isinstance(preset, presets.BlurSchedule) and ("every" in opts or "sigmas" in opts):
            preset = presets.BlurSchedule(name, sigmas=tuple(opts.pop("sigmas", preset.sigmas)),
                                          every=int(opts.pop("every", preset.every)), p=preset.p,
                                          truncate=preset.truncate, border=preset.border)
        t = preset.transform(**over)
        if name == "standard":
            return Regime()
        return BlurRegimeTrainer(name, t)
    if name == "custom":
        return BlurRegimeTrainer(name, _gaussian_from_options(opts, scale_ref, truncate, border))
    if name == "schedule":
        if "stages" in opts:
            stages = sorted((int(e), float(s)) for e, s in opts.pop("stages"))
            if not stages or stages[0][0] != 0:
                raise ValueError("regime_options.stages must be [[0, sigma], [epoch, sigma], ...] starting at epoch 0")
            return BlurRegimeTrainer(name, _StagedGaussian(stages, scale_ref, truncate or 2.0, border or "reflect"))
        sched = presets.BlurSchedule("schedule", sigmas=tuple(float(s) for s in opts.pop("sigmas", ())),
                                     every=int(opts.pop("every", 1)), truncate=truncate or 2.0,
                                     border=border or "reflect")
        return BlurRegimeTrainer(name, sched.transform(reference_size=scale_ref))
    if name == "families":
        return BlurRegimeTrainer(name, _families(opts, scale_ref, truncate, border))
    raise ValueError(f"unknown regime {name!r}; known: {', '.join(REGIMES)}")


class _StagedGaussian(nn.Module):
    """Epoch-keyed Gaussian blur with arbitrary stage starts: ``[(start_epoch, sigma), ...]``."""

    def __init__(self, stages: list[tuple[int, float]], reference_size: float | None, truncate: float,
                 border: str) -> None:
        super().__init__()
        from ..augment import RandomGaussianBlur

        self.stages = stages
        self.inner = RandomGaussianBlur(sigma=stages[0][1], truncate=truncate, border=border,
                                        reference_size=reference_size)
        self.kw = {"truncate": truncate, "border": border, "reference_size": reference_size}

    def set_epoch(self, epoch: int) -> None:
        from ..augment import RandomGaussianBlur

        sigma = [s for e, s in self.stages if e <= epoch][-1]
        self.inner = RandomGaussianBlur(sigma=sigma, **self.kw)

    def reseed(self, seed: int) -> None:
        self.inner.reseed(seed)

    def sample_params(self, *a: Any, **k: Any) -> dict[str, torch.Tensor]:
        return self.inner.sample_params(*a, **k)

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.apply(x, params)

    def extra_repr(self) -> str:
        return f"stages={self.stages}"


REGIMES = ("standard", "weak", "strong", "mix", "random-mix", "multi-steps", "custom", "schedule", "families",
           "adversarial", "consistency", "deblur-front")


def build_regime(name: str, options: Mapping[str, Any] | None, *, image_size: int, reference_size: int = 224,
                 truncate: float | None = None, border: str | None = None) -> Regime:
    """Build a regime from its name and options (see the module table).

    Args:
        name: a regime name (:data:`REGIMES`) or any name registered in :mod:`blurkit.presets`.
        options: regime options (``regime_options`` of the config); unknown keys raise ``ValueError``.
        image_size: training image side in pixels; ``reference_size``: side the sigmas refer to
            (0: sigmas are pixels of the training images).
        truncate, border: override the regime's kernel truncation and border.

    Example:
        >>> r = build_regime("strong", {}, image_size=32)
        >>> r = build_regime("custom", {"sigmas": [0, 2, 4], "weights": [2, 1, 1]}, image_size=64)
    """
    opts = dict(options or {})
    scale_ref = float(reference_size) if reference_size else None
    scale = image_size / reference_size if reference_size else 1.0
    if name == "adversarial":
        base = build_regime(opts.pop("base", "standard"), opts.pop("base_options", {}), image_size=image_size,
                            reference_size=reference_size, truncate=truncate, border=border)
        keys = ("sigma_max", "steps", "step_size", "fraction", "min_ssim")
        kw = {k: opts.pop(k) for k in keys if k in opts}
        r: Regime = AdversarialRegime(scale, base, truncate=truncate or 2.0, border=border or "reflect", **kw)
    elif name == "consistency":
        base = build_regime(opts.pop("base", "strong"), opts.pop("base_options", {}), image_size=image_size,
                            reference_size=reference_size, truncate=truncate, border=border)
        kw = {k: opts.pop(k) for k in ("views", "weight", "ce_on_views") if k in opts}
        r = ConsistencyRegime(base, **kw)
    elif name == "deblur-front":
        base_name = opts.pop("base", "strong")
        opts.pop("front", None)
        r = build_regime(base_name, opts.pop("base_options", {}), image_size=image_size,
                         reference_size=reference_size, truncate=truncate, border=border)
    else:
        r = _blur_regime(name, opts, scale_ref, truncate, border)
    if opts:
        raise ValueError(f"unknown regime_options for regime {name!r}: {', '.join(sorted(opts))}")
    return r


class FrontModel(nn.Module):
    """Deblurring front end + classifier on normalised inputs: un-normalise, deblur in ``[0, 1]``, re-normalise.

    Args:
        front: module mapping ``[0, 1]`` images to deblurred images (e.g. ``DeblurFront(model=None)``).
        classifier: the classifier; ``mean``, ``std``: the normalisation of its inputs.
    """

    def __init__(self, front: nn.Module, classifier: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.front, self.classifier = front, classifier
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.front(x * self.std + self.mean)
        return self.classifier((y - self.mean) / self.std)


def deblur_front(options: Mapping[str, Any] | None) -> nn.Module:
    """The deblurring front end of the ``deblur-front`` regime (``regime_options.front`` passed to it).

    Raises:
        BlurkitError: :class:`blurkit.DeblurFront` is not available in this installation.
    """
    try:
        from ..deblur import DeblurFront
    except ImportError:
        raise BlurkitError("regime 'deblur-front' needs blurkit.deblur.DeblurFront, which this installation "
                           "does not have yet; use another regime") from None
    front_opts = dict((options or {}).get("front", {}))
    front_opts.pop("model", None)
    return DeblurFront(None, **front_opts)
