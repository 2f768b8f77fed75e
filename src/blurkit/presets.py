"""Published blur-training regimes as ready-made transforms, and the Jang & Tong grayscale pipeline.

Regimes (sigma in pixels at 224 x 224, one sigma drawn per image):

============  =============================================  =====================  =========================
name          sigma distribution                             truncate (kernel)      source
============  =============================================  =====================  =========================
standard      0 (no blur)                                    2                      Jang & Tong 2024
weak          0..5, weights .6937 .2129 .0653 .0200 .0062    2 (2*ceil(2s)+1)       Jang & Tong 2024
              .0019 (p ~ exp(-1.18 sigma))
strong        0, 1, 2, 4, 8, weights .2 each                 2 (2*ceil(2s)+1)       Jang & Tong 2024
mix           sigma 4 on exactly half of each batch          4 (OpenCV auto size)   Yoshihara et al. 2023
random-mix    sigma ~ U(0, 5) on exactly half of each batch  4 (OpenCV auto size)   Yoshihara et al. 2023
multi-steps   sigma 4, 3, 2, 1, 0, changing every 10 epochs  4 (OpenCV auto size)   Yoshihara et al. 2023
============  =============================================  =====================  =========================

Validation in Jang & Tong uses no blur (the ``standard`` regime).

Sources:
    H. Jang and F. Tong, "Improved modeling of human vision by incorporating robustness to blur in
    convolutional neural networks", Nature Communications 15:1989 (2024), code hojin89/BlurTraining
    (``add_blur_with(images, sigmas, weights)``, kernel size ``2*ceil(2*sigma)+1``).
    S. Yoshihara, T. Fukiage and S. Nishida, "Does training with blurred images bring convolutional
    neural networks closer to humans with respect to robust object recognition and internal
    representations?", Frontiers in Psychology 14:1047694 (2023), code
    KUCognitiveInformaticsLab/blur-training (``--mode mix / random-mix / multi-steps``; blur with
    ``cv2.GaussianBlur(img, (0, 0), sigma)`` on float images, whose automatic kernel radius is about
    ``4 * sigma``, hence ``truncate=4``).

The "mix" sigma: the authors trained one "S+B" model per fixed sigma (1, 2, 3, 4, 5 and 10 in their
analysis code) and their comparisons single out sigma 4 (``mix_s04``); blurkit's ``mix`` preset uses
sigma 4 and ``presets.transform("mix", sigma=s)`` gives any other member of the family.

Example:
    >>> import blurkit as bk
    >>> bk.presets.names()
    ('standard', 'weak', 'strong', 'mix', 'random-mix', 'multi-steps')
    >>> aug = bk.presets.transform("strong", reference_size=224, seed=0)   # a RandomGaussianBlur
    >>> pipe = bk.GrayscaleBlurPipeline("strong", seed=0)                  # grey, blur, normalise, 3 ch
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._validation import check_images, describe, restore_batch
from .augment import RandomGaussianBlur, _RandomBlurBase

__all__ = [
    "BlurRegime",
    "BlurSchedule",
    "ScheduledGaussianBlur",
    "GrayscaleBlurPipeline",
    "STANDARD",
    "WEAK",
    "STRONG",
    "MIX",
    "RANDOM_MIX",
    "MULTI_STEPS",
    "names",
    "get",
    "register",
    "transform",
    "to_grayscale",
    "LUMA_BT601",
]

JANG_TONG = ("Jang & Tong, Nature Communications 15:1989 (2024), doi 10.1038/s41467-024-45679-0; "
             "code github.com/hojin89/BlurTraining")
YOSHIHARA = ("Yoshihara, Fukiage & Nishida, Frontiers in Psychology 14:1047694 (2023); "
             "code github.com/KUCognitiveInformaticsLab/blur-training")


# ---------------------------------------------------------------------------------------- regimes
@dataclass(frozen=True)
class BlurRegime:
    """A static blur-training regime: how one sigma is drawn per training image.

    Either a weighted discrete set (``sigmas`` with ``weights``) or a uniform range
    (``sigma_range``), applied to each image with probability ``p`` (exactly ``p * B`` images of each
    batch when ``exact_fraction``). Sigmas are pixels at 224 x 224.

    Attributes:
        name, description, source: identification.
        sigmas, weights: discrete set and (unnormalised) weights, or ``None``.
        sigma_range: ``(low, high)`` for a uniform draw, or ``None``.
        p, exact_fraction: fraction of images blurred.
        truncate: kernel radius ``ceil(truncate * sigma)``; ``border``: border mode.
    """

    name: str
    sigmas: tuple[float, ...] | None = None
    weights: tuple[float, ...] | None = None
    sigma_range: tuple[float, float] | None = None
    p: float = 1.0
    exact_fraction: bool = False
    truncate: float = 2.0
    border: str = "reflect"
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if (self.sigmas is None) == (self.sigma_range is None):
            raise ValueError(f"regime {self.name!r}: give exactly one of sigmas= or sigma_range=")
        # validate by building the transform once (same checks and messages)
        self.transform()

    # -- derived facts ------------------------------------------------------------------------------
    def sigma_distribution(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Distribution of the sigma an image receives (0 = not blurred), for discrete regimes.

        Returns:
            ``(values, probabilities)``: sorted distinct sigmas and their probabilities (``p`` included).
        """
        if self.sigmas is None:
            raise ValueError(f"regime {self.name!r} draws sigma from a continuous range {self.sigma_range}")
        w = self.weights if self.weights is not None else (1.0,) * len(self.sigmas)
        total = float(sum(w))
        probs: dict[float, float] = {}
        for s, wi in zip(self.sigmas, w):
            probs[float(s)] = probs.get(float(s), 0.0) + self.p * wi / total
        probs[0.0] = probs.get(0.0, 0.0) + (1.0 - self.p)
        values = tuple(sorted(v for v, q in probs.items() if q > 0))
        return values, tuple(probs[v] for v in values)

    @property
    def blur_fraction(self) -> float:
        """Expected fraction of images blurred (sigma > 0)."""
        if self.sigmas is None:
            lo, hi = self.sigma_range  # type: ignore[misc]
            return self.p if lo > 0 or hi > lo else 0.0
        vals, probs = self.sigma_distribution()
        return float(sum(q for v, q in zip(vals, probs) if v > 0))

    @property
    def mean_sigma(self) -> float:
        """Expected sigma over all images (0 for unblurred ones), pixels at 224 px."""
        if self.sigmas is None:
            lo, hi = self.sigma_range  # type: ignore[misc]
            return self.p * (lo + hi) / 2.0
        vals, probs = self.sigma_distribution()
        return float(sum(v * q for v, q in zip(vals, probs)))

    @property
    def kernel_sizes(self) -> dict[float, int]:
        """Kernel size ``2 * ceil(truncate * sigma) + 1`` for each sigma of a discrete regime."""
        if self.sigmas is None:
            raise ValueError(f"regime {self.name!r} draws sigma from a continuous range")
        return {float(s): 2 * math.ceil(self.truncate * s - 1e-9) + 1 for s in self.sigmas}

    # -- transform ------------------------------------------------------------------------------------
    def transform(self, **overrides: Any) -> RandomGaussianBlur:
        """A :class:`~blurkit.augment.RandomGaussianBlur` for this regime.

        Args:
            **overrides: any :class:`RandomGaussianBlur` argument, e.g. ``reference_size=224``,
                ``seed=0``, ``generator=g``, ``border="replicate"``, ``return_params=True``, or
                ``sigma=4`` (replaces the regime's sigma distribution).
        """
        kw: dict[str, Any] = {"p": self.p, "exact_fraction": self.exact_fraction, "truncate": self.truncate,
                              "border": self.border}
        if "sigma" not in overrides and "sigmas" not in overrides:
            if self.sigmas is not None:
                if len(self.sigmas) == 1 and self.weights in (None, (1.0,)):
                    kw["sigma"] = float(self.sigmas[0])
                else:
                    kw["sigmas"], kw["weights"] = list(self.sigmas), self.weights
            else:
                kw["sigma"] = tuple(self.sigma_range)  # type: ignore[arg-type]
        kw.update(overrides)
        return RandomGaussianBlur(**kw)


@dataclass(frozen=True)
class BlurSchedule:
    """An epoch-keyed blur schedule: one fixed sigma per stage of ``every`` epochs.

    ``sigma_for_epoch(e) = sigmas[min(e // every, len(sigmas) - 1)]`` (epochs count from 0).

    Attributes:
        name, description, source: identification.
        sigmas: sigma of each stage (pixels at 224 px); the last one holds for all later epochs.
        every: stage length in epochs.
        p, truncate, border: as :class:`BlurRegime`.
    """

    name: str
    sigmas: tuple[float, ...]
    every: int = 10
    p: float = 1.0
    truncate: float = 4.0
    border: str = "reflect"
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.sigmas or not all(isinstance(s, numbers.Real) and math.isfinite(s) and s >= 0
                                      for s in self.sigmas):
            raise ValueError(f"schedule {self.name!r}: sigmas must be a non-empty sequence of finite numbers "
                             f">= 0; got {self.sigmas!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, numbers.Integral) or self.every < 1:
            raise ValueError(f"schedule {self.name!r}: every must be an int >= 1 (epochs); "
                             f"got {self.every!r}")
        self.transform()

    def sigma_for_epoch(self, epoch: int) -> float:
        """Sigma used during ``epoch`` (0-based)."""
        _check_epoch(epoch)
        return float(self.sigmas[min(int(epoch) // self.every, len(self.sigmas) - 1)])

    def transform(self, epoch: int = 0, **overrides: Any) -> ScheduledGaussianBlur:
        """A :class:`ScheduledGaussianBlur` following this schedule, starting at ``epoch``."""
        kw: dict[str, Any] = {"p": self.p, "truncate": self.truncate, "border": self.border}
        kw.update(overrides)
        return ScheduledGaussianBlur(self, epoch=epoch, **kw)


def _check_epoch(epoch: object) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0; got {epoch!r}")
    return int(epoch)


class ScheduledGaussianBlur(RandomGaussianBlur):
    """Gaussian blur whose sigma follows a :class:`BlurSchedule` keyed on the epoch.

    Call :meth:`set_epoch` at the start of every epoch (like ``DistributedSampler.set_epoch``).
    Used on the batch in the training loop this is all there is to it; inside ``DataLoader``
    workers, use non-persistent workers (each epoch's workers copy the transform when the epoch's
    iterator is created, after ``set_epoch``).

    Args:
        schedule: the schedule (e.g. ``presets.get("multi-steps")``).
        epoch: starting epoch (0-based).
        **kwargs: other :class:`RandomGaussianBlur` arguments (``p``, ``truncate``, ``reference_size``,
            ``seed``, ...); ``sigma``/``sigmas`` are set by the schedule.

    Example:
        >>> aug = bk.presets.transform("multi-steps")
        >>> for epoch in range(50):
        ...     aug.set_epoch(epoch)        # sigma 4, 3, 2, 1, 0 for epochs 0-9, 10-19, ...
    """

    def __init__(self, schedule: BlurSchedule, epoch: int = 0, **kwargs: Any) -> None:
        if not isinstance(schedule, BlurSchedule):
            raise TypeError(f"schedule must be a BlurSchedule; got {type(schedule).__name__}")
        for bad in ("sigma", "sigmas", "weights"):
            if bad in kwargs:
                raise ValueError(f"{bad}= is set by the schedule {schedule.name!r}; not allowed here")
        self.schedule = schedule
        self.epoch = _check_epoch(epoch)
        super().__init__(sigma=schedule.sigma_for_epoch(self.epoch), **kwargs)

    def sigma_for_epoch(self, epoch: int) -> float:
        """Sigma the schedule prescribes for ``epoch``."""
        return self.schedule.sigma_for_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Switch to the sigma of ``epoch`` (0-based)."""
        from .augment import Distribution

        self.epoch = _check_epoch(epoch)
        self.sigma_dist = Distribution.parse(self.schedule.sigma_for_epoch(self.epoch), "sigma")

    def extra_repr(self) -> str:
        return f"schedule={self.schedule.name!r}, epoch={self.epoch}, " + super().extra_repr()


STANDARD = BlurRegime("standard", sigmas=(0.0,), weights=(1.0,),
                      description="no blur (Jang & Tong's baseline, and their validation transform)",
                      source=JANG_TONG)
WEAK = BlurRegime("weak", sigmas=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
                  weights=(0.6937, 0.2129, 0.0653, 0.0200, 0.0062, 0.0019),
                  description="p(sigma) ~ exp(-1.18 sigma): 30.6% of images blurred, mean sigma 0.44",
                  source=JANG_TONG)
STRONG = BlurRegime("strong", sigmas=(0.0, 1.0, 2.0, 4.0, 8.0), weights=(0.2, 0.2, 0.2, 0.2, 0.2),
                    description="sigma 0, 1, 2, 4, 8 equally likely: 80% of images blurred, mean sigma 3.0",
                    source=JANG_TONG)
MIX = BlurRegime("mix", sigmas=(4.0,), weights=(1.0,), p=0.5, exact_fraction=True, truncate=4.0,
                 description="'S+B': exactly half of each batch blurred with one fixed sigma (default 4; "
                             "the authors' grid was 1, 2, 3, 4, 5, 10: override with sigma=)",
                 source=YOSHIHARA)
RANDOM_MIX = BlurRegime("random-mix", sigma_range=(0.0, 5.0), p=0.5, exact_fraction=True, truncate=4.0,
                        description="exactly half of each batch blurred, sigma ~ U(0, 5) per image",
                        source=YOSHIHARA)
MULTI_STEPS = BlurSchedule("multi-steps", sigmas=(4.0, 3.0, 2.0, 1.0, 0.0), every=10, truncate=4.0,
                           description="all images blurred with sigma 4, 3, 2, 1, then 0, changing every "
                                       "10 epochs", source=YOSHIHARA)

_REGISTRY: dict[str, BlurRegime | BlurSchedule] = {
    r.name: r for r in (STANDARD, WEAK, STRONG, MIX, RANDOM_MIX, MULTI_STEPS)
}


def names() -> tuple[str, ...]:
    """Names of the registered regimes and schedules, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> BlurRegime | BlurSchedule:
    """The regime or schedule registered as ``name`` (a frozen dataclass)."""
    if isinstance(name, (BlurRegime, BlurSchedule)):
        return name
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown blur regime {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def register(preset: BlurRegime | BlurSchedule, *, overwrite: bool = False) -> None:
    """Add a regime or schedule to the registry (``overwrite=True`` to replace one)."""
    if not isinstance(preset, (BlurRegime, BlurSchedule)):
        raise TypeError(f"preset must be a BlurRegime or BlurSchedule; got {type(preset).__name__}")
    if preset.name in _REGISTRY and not overwrite:
        raise ValueError(f"a regime named {preset.name!r} is already registered; pass overwrite=True")
    _REGISTRY[preset.name] = preset


def transform(name: str | BlurRegime | BlurSchedule, **overrides: Any) -> RandomGaussianBlur:
    """The transform of a registered regime: ``presets.transform("strong", reference_size=224, seed=0)``.

    Args:
        name: a registered name (see :func:`names`) or a regime/schedule object.
        **overrides: :class:`~blurkit.augment.RandomGaussianBlur` arguments (and ``epoch=`` for
            schedules).

    Returns:
        A :class:`RandomGaussianBlur` (a :class:`ScheduledGaussianBlur` for schedules).
    """
    return get(name).transform(**overrides)


# ----------------------------------------------------------------------------- grayscale pipeline
LUMA_BT601 = (0.299, 0.587, 0.114)
_PIL_FIXED = (19595, 38470, 7471)  # round(2**16 * LUMA_BT601): Pillow's convert("L") fixed point
LUMA_MODES = ("bt601", "pil")


def to_grayscale(images: torch.Tensor, luma: str = "bt601") -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` / ``(3, H, W)`` to one grey channel in ``[0, 1]`` units.

    Args:
        images: float in ``[0, 1]`` or uint8 (``0..255``); one channel passes through (uint8 / 255).
        luma: ``"bt601"``: ``0.299 R + 0.587 G + 0.114 B`` in floating point (differentiable, no
            rounding); ``"pil"``: exactly what Jang & Tong's pipeline does (torchvision ``Grayscale``
            on a PIL image, i.e. Pillow ``convert("L")``, then ``ToTensor``): quantise to 8 bits,
            ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, divide by 255. The two differ by at most
            one grey level (plus the 8-bit quantisation of float input).

    Returns:
        Float tensor with one channel: ``(B, 1, H, W)`` or ``(1, H, W)`` (float32 for uint8 input).
    """
    if luma not in LUMA_MODES:
        raise ValueError(f"luma must be one of {LUMA_MODES}; got {luma!r}")
    x4, squeezed = check_images(images)
    C = x4.shape[1]
    if C not in (1, 3):
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels; got shape {tuple(images.shape)}")
    fdt = x4.dtype if x4.is_floating_point() else torch.float32
    if luma == "pil" and C == 3:
        q = x4.to(torch.int32) if x4.dtype == torch.uint8 else \
            torch.round(x4.float().clamp(0.0, 1.0) * 255.0).to(torch.int32)
        w = torch.tensor(_PIL_FIXED, dtype=torch.int32, device=x4.device)
        g = ((q * w[None, :, None, None]).sum(dim=1, keepdim=True) + 32768) >> 16
        out = g.to(fdt) / 255.0
    else:
        xf = x4.to(fdt) / 255.0 if x4.dtype == torch.uint8 else x4
        if C == 1:
            out = xf
        else:
            w = torch.tensor(LUMA_BT601, dtype=fdt, device=x4.device)
            out = (xf * w[None, :, None, None]).sum(dim=1, keepdim=True)
    return restore_batch(out, squeezed)


class GrayscaleBlurPipeline(nn.Module):
    """Jang & Tong's input pipeline after augmentation, as one module: grey -> blur -> normalise -> 3 ch.

    1. to grey (``luma="bt601"`` float weights, or ``"pil"``: bit-exact Pillow ``convert("L")``,
       what the paper's torchvision ``Grayscale`` + ``ToTensor`` computed);
    2. blur the ``[0, 1]`` grey image with the regime's per-image sigma (``truncate=2``: kernel
       size ``2*ceil(2 sigma)+1``, reflect border, as their ``add_blur_with`` with kornia);
    3. ``Normalize(mean=0.449, std=0.226)``;
    4. repeat the channel to 3 (for ImageNet architectures).

    The geometric steps before it (RandomRotation(10), Resize(224), RandomHorizontalFlip) belong to
    your data pipeline. Validation in the paper uses no blur: ``GrayscaleBlurPipeline("standard")``.

    Args:
        regime: a preset name (``"standard"``, ``"weak"``, ``"strong"``, ...), a :class:`BlurRegime`
            or :class:`BlurSchedule`, any blur module taking ``(B, 1, H, W)``, or ``None`` (no blur).
        luma: ``"bt601"`` (default) or ``"pil"`` (see :func:`to_grayscale`).
        mean, std: normalisation (the paper's grey ImageNet statistics 0.449, 0.226).
        channels: output channels (3 as in the paper, or 1).
        return_params: forward returns ``(images, params)`` (the blur's ``last_params``).
        **blur_options: passed to the regime's transform: ``seed=``, ``generator=``,
            ``reference_size=``, ``border=``, ...

    Input ``(B, C, H, W)`` or ``(C, H, W)``, C = 1 or 3, float in ``[0, 1]`` or uint8. Output float
    ``(B, channels, H, W)`` (float32 for uint8 input).

    Example:
        >>> pipe = GrayscaleBlurPipeline("strong", seed=0)
        >>> y = pipe(torch.rand(64, 3, 224, 224))          # (64, 3, 224, 224), normalised grey
        >>> pipe.blur.last_params["sigma"][:4]                # the first four images' sigmas
        tensor([8., 4., 2., 8.])
    """

    def __init__(self, regime: str | BlurRegime | BlurSchedule | nn.Module | None = "strong", *,
                 luma: str = "bt601", mean: float = 0.449, std: float = 0.226, channels: int = 3,
                 return_params: bool = False, **blur_options: Any) -> None:
        super().__init__()
        if luma not in LUMA_MODES:
            raise ValueError(f"luma must be one of {LUMA_MODES}; got {luma!r}")
        for nm, v in (("mean", mean), ("std", std)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{nm} must be a finite number; got {v!r}")
        if std <= 0:
            raise ValueError(f"std must be > 0; got {std!r}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"channels must be 1 or 3; got {channels!r}")
        if not isinstance(return_params, bool):
            raise TypeError(f"return_params must be True or False; got {return_params!r}")
        if isinstance(regime, nn.Module):
            if blur_options:
                raise ValueError(f"blur options {sorted(blur_options)} only apply to a named regime; "
                                 f"configure the module you passed instead")
            blur: nn.Module = regime
            sched = getattr(regime, "schedule", None)
            self.regime_name = sched.name if isinstance(sched, BlurSchedule) else type(regime).__name__
        elif regime is None:
            if blur_options:
                raise ValueError(f"blur options {sorted(blur_options)} given but regime=None (no blur)")
            blur = nn.Identity()
            self.regime_name = "none"
        elif isinstance(regime, (str, BlurRegime, BlurSchedule)):
            preset = get(regime)
            blur = preset.transform(**blur_options)
            self.regime_name = preset.name
        else:
            raise TypeError(f"regime must be a preset name, a BlurRegime/BlurSchedule, an nn.Module or None; "
                            f"got {describe(regime)}")
        self.blur = blur
        self.luma, self.mean, self.std, self.channels = luma, float(mean), float(std), int(channels)
        self.return_params = return_params

    @property
    def last_params(self) -> dict[str, torch.Tensor] | None:
        """Parameters the blur drew in the last call (``None`` without a random blur)."""
        return getattr(self.blur, "last_params", None)

    def set_epoch(self, epoch: int) -> None:
        """Forward ``set_epoch`` to an epoch-scheduled blur (no-op otherwise)."""
        if hasattr(self.blur, "set_epoch"):
            self.blur.set_epoch(epoch)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Grey, blur, normalise and repeat a batch ``(B, C, H, W)`` or one image ``(C, H, W)``."""
        x4, squeezed = check_images(images)
        g = to_grayscale(x4, self.luma)
        if isinstance(self.blur, _RandomBlurBase) and self.blur.return_params:
            g, _ = self.blur(g)
        else:
            g = self.blur(g)
        g = (g - self.mean) / self.std
        if self.channels == 3:
            g = g.repeat(1, 3, 1, 1)
        out = restore_batch(g, squeezed)
        if self.return_params:
            return out, (self.last_params or {})
        return out

    def extra_repr(self) -> str:
        return (f"regime={self.regime_name!r}, luma={self.luma!r}, mean={self.mean:g}, std={self.std:g}, "
                f"channels={self.channels}")

