"""Random blur augmentations: ``nn.Module`` transforms that draw per-image parameters.

Each transform only *samples* parameters (vectorised, on the images' device, from a
``torch.Generator`` or seed you control) and makes **one** call to the functional engine
(:func:`blurkit.gaussian_blur`, :func:`blurkit.motion_blur`, :func:`blurkit.defocus_blur`,
:func:`blurkit.box_blur`) for the whole batch. Every image gets its own kernel of its own size: a
batch drawn from the Jang & Tong "strong" regime (sigma 0, 1, 2, 4, 8 with truncate 2) pays 5 taps
for a sigma-1 image and 33 for a sigma-8 image, never 33 for all.

Transforms
----------
=====================  ==========================================================================
RandomGaussianBlur     sigma from a weighted discrete set, uniform, log-uniform, or a callable;
                       anisotropic (``sigma_y``) and rotated (``angle``) options
RandomMotionBlur       straight-line motion blur, sub-pixel length and any angle
RandomDefocusBlur      anti-aliased disk (lens defocus), sub-pixel radius
RandomBoxBlur          odd box (moving average) window
RandomBlur             one family per image, mixed with given weights (AugMix-style "blur" op)
=====================  ==========================================================================

Common options
--------------
* ``p``: probability that an image is blurred (the others are returned unchanged, bit for bit).
  ``exact_fraction=True`` blurs exactly ``p * B`` images of each batch (stochastically rounded),
  as Yoshihara et al. (2023) did with "half of each batch".
* ``reference_size``: parameters are given in pixels of an image whose shorter side is
  ``reference_size`` and are scaled by ``min(H, W) / reference_size`` (the Jang & Tong sigmas are
  pixels at 224 px: a 28-px image gets ``sigma * 28 / 224``, the same blur in visual angle).
* Input ``(B, C, H, W)`` (a GPU batch in the training loop) or ``(C, H, W)`` (one image inside a
  ``Dataset``/``DataLoader`` worker); any float dtype or uint8; output keeps shape, dtype, device.
* Randomness: ``generator=`` (a ``torch.Generator``, used as is in the main process) or ``seed=``
  (a private generator per device). Without either, torch's global RNG of the images' device is
  used. Inside a ``DataLoader`` worker a seeded transform derives its stream from the worker's
  seed (``torch.utils.data.get_worker_info().seed``, itself drawn from the main process RNG or the
  loader's ``generator``): two runs with the same seeds give identical batches, workers differ.
* ``return_params=True`` makes ``forward`` return ``(images, params)``; ``last_params`` always
  holds the parameters of the last call: a dict of ``(B,)`` tensors (``"applied"`` and each
  family's parameters, in pixels of the actual image), e.g. for a sigma histogram.

Example:
    >>> import torch, blurkit as bk
    >>> aug = bk.RandomGaussianBlur(sigmas=[0, 1, 2, 4, 8], weights=[1, 1, 1, 1, 1], truncate=2.0, seed=0)
    >>> y = aug(torch.rand(16, 3, 224, 224))
    >>> aug.last_params["sigma"].shape
    torch.Size([16])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import filtering as _f
from ._validation import check_border, check_images, check_truncate, describe, restore_batch

__all__ = [
    "RandomGaussianBlur",
    "RandomMotionBlur",
    "RandomDefocusBlur",
    "RandomBoxBlur",
    "RandomBlur",
    "Distribution",
]

Sampler = Callable[[int, "torch.Generator | None"], torch.Tensor]
Params = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------------ distributions
def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


class Distribution:
    """A distribution of one non-negative scalar parameter, sampled ``n`` at a time.

    Build one with :meth:`parse` (a number, a ``(low, high)`` range or a callable) or
    :meth:`discrete` (a weighted set). All sampling is vectorised and uses the given generator.

    Kinds:
        ``"constant"`` (one value), ``"uniform"`` / ``"log-uniform"`` (on ``[low, high]``),
        ``"discrete"`` (values with weights, not necessarily normalised), ``"callable"``
        (``fn(n, generator) -> tensor (n,)``).
    """

    KINDS = ("constant", "uniform", "log-uniform", "discrete", "callable")

    def __init__(self, kind: str, *, low: float = 0.0, high: float = 0.0,
                 values: Sequence[float] = (), weights: Sequence[float] = (),
                 fn: Sampler | None = None, name: str = "value", minimum: float | None = 0.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}; got {kind!r}")
        self.kind, self.low, self.high = kind, float(low), float(high)
        self.values = tuple(float(v) for v in values)
        self.weights = tuple(float(w) for w in weights)
        self.fn, self.name, self.minimum = fn, name, minimum
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: object, name: str, *, distribution: str = "uniform",
              minimum: float | None = 0.0) -> Distribution:
        """Build from a number, a ``(low, high)`` pair, or a callable ``fn(n, generator)``.

        Raises:
            ValueError / TypeError naming ``name`` for negative, non-finite or reversed values.
        """
        if distribution not in ("uniform", "log-uniform"):
            raise ValueError(f"distribution must be 'uniform' or 'log-uniform'; got {distribution!r}")
        if callable(value) and not isinstance(value, torch.Tensor):
            return cls("callable", fn=value, name=name, minimum=minimum)
        if _is_number(value):
            v = float(value)
            cls._check_value(v, name, minimum)
            return cls("constant", low=v, high=v, name=name, minimum=minimum)
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
            lo, hi = float(value[0]), float(value[1])
            for v in (lo, hi):
                cls._check_value(v, name, minimum, whole=value)
            if lo > hi:
                raise ValueError(f"{name} range must have low <= high; got {value!r}")
            if distribution == "log-uniform" and lo <= 0:
                raise ValueError(f"{name}: a log-uniform range needs low > 0; got {value!r} "
                                 f"(use distribution='uniform' for a range starting at 0)")
            return cls(distribution, low=lo, high=hi, name=name, minimum=minimum)
        raise TypeError(f"{name} must be a number, a (low, high) pair of numbers, or a callable "
                        f"fn(n, generator) -> tensor of shape (n,); got {describe(value)}")

    @classmethod
    def discrete(cls, values: object, weights: object, name: str, *,
                 minimum: float | None = 0.0) -> Distribution:
        """Weighted discrete set; ``weights=None`` means equal weights (need not sum to 1)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().flatten().tolist()
        if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0 \
                or not all(_is_number(v) for v in values):
            raise TypeError(f"{name} must be a non-empty sequence of numbers; got {describe(values)}")
        vals = [float(v) for v in values]
        for v in vals:
            cls._check_value(v, name, minimum, whole=values)
        if weights is None:
            w = [1.0] * len(vals)
        else:
            if isinstance(weights, torch.Tensor):
                weights = weights.detach().cpu().flatten().tolist()
            if not isinstance(weights, Sequence) or isinstance(weights, str) \
                    or not all(_is_number(v) for v in weights):
                raise TypeError(f"weights must be a sequence of numbers (one per {name} value); "
                                f"got {describe(weights)}")
            w = [float(v) for v in weights]
            if len(w) != len(vals):
                raise ValueError(f"weights must have one entry per {name} value: {len(vals)} values "
                                 f"{vals} but {len(w)} weights {w}")
            if not all(math.isfinite(v) for v in w) or any(v < 0 for v in w):
                raise ValueError(f"weights must be finite and >= 0; got {w}")
            if sum(w) <= 0:
                raise ValueError(f"weights must not all be zero; got {w}")
        return cls("discrete", values=vals, weights=w, name=name, minimum=minimum)

    @staticmethod
    def _check_value(v: float, name: str, minimum: float | None, whole: object = None) -> None:
        shown = describe(whole) if whole is not None else repr(v)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite; got {shown}")
        if minimum is not None and v < minimum:
            raise ValueError(f"{name} must be >= {minimum:g}; got {shown}")

    # -- sampling -----------------------------------------------------------------------------------
    @property
    def probabilities(self) -> tuple[float, ...]:
        """Normalised weights of a discrete distribution."""
        s = sum(self.weights)
        return tuple(w / s for w in self.weights)

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self._cache.get(device)
        if hit is None:
            hit = (torch.tensor(self.values, dtype=torch.float32, device=device),
                   torch.tensor(self.weights, dtype=torch.float32, device=device))
            self._cache[device] = hit
        return hit

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Draw ``n`` values as a float32 tensor ``(n,)`` on ``device`` (the generator's device if given)."""
        if self.kind == "constant":
            return torch.full((n,), self.low, dtype=torch.float32, device=device)
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * _rand(n, generator, device)
        if self.kind == "log-uniform":
            lo, hi = math.log(self.low), math.log(self.high)
            return torch.exp(lo + (hi - lo) * _rand(n, generator, device))
        if self.kind == "discrete":
            vals, w = self._tables(device)
            if len(self.values) == 1:
                return vals.expand(n).clone()
            idx = torch.multinomial(w, n, replacement=True, generator=generator)
            return vals.index_select(0, idx)
        out = self.fn(n, generator)  # callable
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=torch.float32)
        if out.shape != (n,):
            raise ValueError(f"the {self.name} sampler must return a tensor of shape ({n},); "
                             f"got shape {tuple(out.shape)}")
        out = out.to(device=device, dtype=torch.float32)
        below = self.minimum is not None and bool((out < self.minimum).any())
        if not bool(torch.isfinite(out).all()) or below:
            raise ValueError(f"the {self.name} sampler returned values outside the allowed range "
                             f"(finite, >= {self.minimum}); got {describe(out)}")
        return out

    def __repr__(self) -> str:
        if self.kind == "constant":
            return _fmt(self.low)
        if self.kind == "uniform":
            return f"U({_fmt(self.low)}, {_fmt(self.high)})"
        if self.kind == "log-uniform":
            return f"LogU({_fmt(self.low)}, {_fmt(self.high)})"
        if self.kind == "discrete":
            pairs = ", ".join(f"{_fmt(v)}: {p:.4g}" for v, p in zip(self.values, self.probabilities))
            return "{" + pairs + "}"
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state


# --------------------------------------------------------------------------------- seeding helpers
def _mix_seed(base: int, worker_seed: int) -> int:
    """A 63-bit seed derived from a base seed and a DataLoader worker seed (independent streams)."""
    ss = np.random.SeedSequence([int(base) % (1 << 64), int(worker_seed) % (1 << 64)])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


def _check_probability(p: object, name: str = "p") -> float:
    if not _is_number(p) or not (0.0 <= float(p) <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1]; got {p!r}")
    return float(p)


def _check_reference_size(reference_size: object) -> float | None:
    if reference_size is None:
        return None
    if not _is_number(reference_size) or not math.isfinite(float(reference_size)) or reference_size <= 0:
        raise ValueError(f"reference_size must be None or a number > 0 (pixels of the shorter image side "
                         f"the parameters refer to, e.g. 224); got {reference_size!r}")
    return float(reference_size)


# ------------------------------------------------------------------------------------ base class
class _RandomBlurBase(nn.Module):
    """Shared machinery: probability, scaling, generators, parameter record, forward."""

    family = "blur"

    def __init__(self, *, p: float, exact_fraction: bool, border: str, reference_size: float | None,
                 generator: torch.Generator | None, seed: int | None, return_params: bool) -> None:
        super().__init__()
        self.p = _check_probability(p)
        if not isinstance(exact_fraction, bool):
            raise TypeError(f"exact_fraction must be True or False; got {exact_fraction!r}")
        self.exact_fraction = exact_fraction
        self.border = check_border(border)
        self.reference_size = _check_reference_size(reference_size)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        if seed is not None and generator is not None:
            raise ValueError("give either generator= or seed=, not both")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None; got {seed!r}")
        if not isinstance(return_params, bool):
            raise TypeError(f"return_params must be True or False; got {return_params!r}")
        self.generator = generator
        self.seed = None if seed is None else int(seed)
        self.return_params = return_params
        self.last_params: Params | None = None
        self._gens: dict[tuple, torch.Generator] = {}

    # -- randomness ---------------------------------------------------------------------------------
    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """The generator to draw from for images on ``device`` (None: torch's global RNG)."""
        info = torch.utils.data.get_worker_info()
        if self.generator is None and self.seed is None:
            return None  # global RNG; DataLoader seeds it differently in every worker
        if info is None and self.generator is not None:
            return self.generator
        if self.generator is not None:
            base, dev = self.generator.initial_seed(), self.generator.device
        else:
            base, dev = self.seed, torch.device(device)
        key = (None if info is None else (info.id, info.seed), str(dev))
        g = self._gens.get(key)
        if g is None:
            g = torch.Generator(device=dev)
            g.manual_seed(base if info is None else _mix_seed(base, info.seed))
            self._gens[key] = g
        return g

    def reseed(self, seed: int) -> None:
        """Restart the transform's private random stream from ``seed`` (replaces ``generator``)."""
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int; got {seed!r}")
        self.generator, self.seed, self._gens = None, int(seed), {}

    # -- parameters ---------------------------------------------------------------------------------
    def scale_for(self, height: int, width: int) -> float:
        """Factor applied to pixel parameters: ``min(H, W) / reference_size`` (1 without reference)."""
        return 1.0 if self.reference_size is None else min(height, width) / self.reference_size

    def _draw_applied(self, n: int, gen: torch.Generator | None, dev: torch.device) -> torch.Tensor:
        if self.p >= 1.0:
            return torch.ones(n, dtype=torch.bool, device=dev)
        if self.p <= 0.0:
            return torch.zeros(n, dtype=torch.bool, device=dev)
        u = _rand(n, gen, dev)
        if not self.exact_fraction:
            return u < self.p
        # exactly floor(p n) images plus one more with probability frac(p n), chosen at random
        k_float = self.p * n
        k = int(math.floor(k_float))
        extra = _rand(1, gen, dev)
        k_t = k + (extra < (k_float - k)).long()
        rank = torch.argsort(torch.argsort(u))
        return rank < k_t

    def _sample(self, n: int, scale: float, gen: torch.Generator | None, dev: torch.device,
                applied: torch.Tensor) -> Params:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, n: int, height: int, width: int, device: torch.device,
              gen: torch.Generator | None) -> Params:
        sdev = gen.device if gen is not None else torch.device(device)
        applied = self._draw_applied(n, gen, sdev)
        params = self._sample(n, self.scale_for(height, width), gen, sdev, applied)
        params["applied"] = applied
        return {k: v.to(device) for k, v in params.items()}

    def sample_params(self, batch_size: int, height: int, width: int,
                      device: torch.device | str = "cpu") -> Params:
        """Draw the parameters for a batch of ``batch_size`` images of ``height x width`` pixels.

        Returns:
            Dict of ``(B,)`` tensors on ``device``: ``"applied"`` (bool) and the family's
            parameters in pixels of the actual image (identity values where not applied).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
        dev = torch.device(device)
        return self._draw(int(batch_size), int(height), int(width), dev, self._generator_for(dev))

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Blur ``images`` with given parameters (as returned by :meth:`sample_params`); no randomness."""
        x4, squeezed = check_images(images)
        if "applied" in params and not bool(params["applied"].any()):
            return images.clone()
        return restore_batch(self._apply4(x4, params), squeezed)

    def _apply4(self, x4: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, Params]:
        """Blur a batch ``(B, C, H, W)`` or one image ``(C, H, W)`` with freshly drawn parameters.

        Returns:
            The blurred tensor (shape, dtype and device of ``images``), or ``(images, params)`` when
            the transform was built with ``return_params=True``. ``last_params`` is set either way.
        """
        x4, squeezed = check_images(images)
        B, _, H, W = x4.shape
        params = self._draw(B, H, W, x4.device, self._generator_for(x4.device))
        self.last_params = params
        out = self.apply(images, params)
        return (out, params) if self.return_params else out

    # -- representation / pickling -------------------------------------------------------------------
    def _common_repr(self, border: bool = True) -> str:
        parts = [f"p={_fmt(self.p)}"]
        if self.exact_fraction:
            parts.append("exact_fraction=True")
        if border:
            parts.append(f"border={self.border!r}")
        if self.reference_size is not None:
            parts.append(f"reference_size={_fmt(self.reference_size)}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        elif self.generator is not None:
            parts.append("generator=<torch.Generator>")
        if self.return_params:
            parts.append("return_params=True")
        return ", ".join(parts)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_gens"] = {}
        return state


def _where_applied(values: torch.Tensor, applied: torch.Tensor, identity: float) -> torch.Tensor:
    return torch.where(applied, values, torch.full_like(values, identity))


# ---------------------------------------------------------------------------------------- Gaussian
class RandomGaussianBlur(_RandomBlurBase):
    """Gaussian blur with a sigma drawn per image; each image's kernel size follows its own sigma.

    Args:
        sigma: how to draw sigma (pixels, ``>= 0``): a number, a ``(low, high)`` range (see
            ``distribution``) or a callable ``fn(n, generator) -> tensor (n,)``. Default ``(0.1, 2.0)``.
            Not together with ``sigmas``.
        sigmas: a discrete set of sigmas (e.g. ``[0, 1, 2, 4, 8]``), drawn with ``weights``.
        weights: one non-negative weight per entry of ``sigmas`` (need not sum to 1; default equal),
            as ``add_blur_with(images, sigmas, weights)`` of Jang & Tong (2024).
        distribution: ``"uniform"`` or ``"log-uniform"`` for ranges.
        sigma_y: anisotropic blur: sigma along y drawn like ``sigma`` (a number, range or callable);
            ``None`` (default) is isotropic. Where sigma is drawn as 0 (no blur), sigma_y is 0 too.
        angle: rotation of the anisotropic Gaussian in degrees (counter-clockwise): a number or a
            ``(low, high)`` range drawn uniformly; needs ``sigma_y``.
        p: probability that an image is blurred. ``exact_fraction``: blur exactly ``p * B`` images.
        truncate: kernel radius ``ceil(truncate * sigma)`` per image (``2.0``: Jang & Tong).
        border: ``"reflect"``, ``"symmetric"``, ``"replicate"``, ``"circular"`` or ``"constant"``.
        reference_size: sigmas are pixels at this shorter image side; scaled by
            ``min(H, W) / reference_size``.
        generator, seed: randomness (see the module docs). return_params: return ``(images, params)``.
        method: engine method (``"auto"``, ``"separable"``, ``"direct"``, ``"fft"``, ``"torch"``).

    Recorded parameters (``last_params``): ``"sigma"`` (pixels of the actual image, 0 where not
    blurred), ``"sigma_y"`` and ``"angle"`` (when configured), ``"applied"``.

    Example:
        >>> aug = RandomGaussianBlur(sigmas=[0, 1, 2, 4, 8], truncate=2.0, reference_size=224, seed=0)
        >>> y = aug(torch.rand(8, 1, 28, 28))        # sigma x 28/224
        >>> aug.last_params["sigma"].max() <= 1.0
        tensor(True)
    """

    family = "gaussian"

    def __init__(
        self,
        sigma: float | tuple[float, float] | Sampler | None = None,
        *,
        sigmas: Sequence[float] | torch.Tensor | None = None,
        weights: Sequence[float] | torch.Tensor | None = None,
        distribution: str = "uniform",
        sigma_y: float | tuple[float, float] | Sampler | None = None,
        angle: float | tuple[float, float] | None = None,
        p: float = 1.0,
        exact_fraction: bool = False,
        truncate: float = 3.0,
        border: str = "reflect",
        reference_size: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_params: bool = False,
        method: str = "auto",
    ) -> None:
        super().__init__(p=p, exact_fraction=exact_fraction, border=border, reference_size=reference_size,
                         generator=generator, seed=seed, return_params=return_params)
        if sigmas is not None:
            if sigma is not None:
                raise ValueError("give either sigma= (number, range or callable) or sigmas= (a discrete "
                                 "set with weights=), not both")
            self.sigma_dist = Distribution.discrete(sigmas, weights, "sigmas")
        else:
            if weights is not None:
                raise ValueError("weights= needs sigmas= (the discrete set they weight)")
            self.sigma_dist = Distribution.parse((0.1, 2.0) if sigma is None else sigma, "sigma",
                                                 distribution=distribution)
        self.sigma_y_dist = None if sigma_y is None else Distribution.parse(sigma_y, "sigma_y",
                                                                            distribution=distribution)
        if angle is not None:
            if sigma_y is None:
                raise ValueError("angle= rotates an anisotropic Gaussian and needs sigma_y= (an isotropic "
                                 "Gaussian is rotation invariant)")
            self.angle_dist: Distribution | None = Distribution.parse(angle, "angle", minimum=None)
        else:
            self.angle_dist = None
        self.truncate = check_truncate(truncate)
        self.method = _f._check_method(method)
        if self.angle_dist is not None and self.method == "separable":
            raise ValueError("method='separable' cannot apply rotated Gaussians, and angle= rotates them; "
                             "use method='auto', 'direct' or 'fft' with angle=")

    def _sample(self, n: int, scale: float, gen: torch.Generator | None, dev: torch.device,
                applied: torch.Tensor) -> Params:
        sigma = self.sigma_dist.sample(n, gen, dev)
        out: Params = {}
        blurred = applied & (sigma > 0)
        out["sigma"] = _where_applied(sigma * scale, applied, 0.0)
        if self.sigma_y_dist is not None:
            sy = self.sigma_y_dist.sample(n, gen, dev)
            out["sigma_y"] = _where_applied(sy * scale, blurred, 0.0)
        if self.angle_dist is not None:
            out["angle"] = _where_applied(self.angle_dist.sample(n, gen, dev), blurred, 0.0)
        return out

    def _apply4(self, x4: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _f.gaussian_blur(x4, params["sigma"], sigma_y=params.get("sigma_y"),
                                angle=params.get("angle", 0.0), truncate=self.truncate, border=self.border,
                                method=self.method)

    def extra_repr(self) -> str:
        parts = [f"sigma={self.sigma_dist!r}"]
        if self.sigma_y_dist is not None:
            parts.append(f"sigma_y={self.sigma_y_dist!r}")
        if self.angle_dist is not None:
            parts.append(f"angle={self.angle_dist!r}")
        parts.append(f"truncate={_fmt(self.truncate)}")
        if self.method != "auto":
            parts.append(f"method={self.method!r}")
        return ", ".join(parts) + ", " + self._common_repr()


# ------------------------------------------------------------------------------------------ motion
class RandomMotionBlur(_RandomBlurBase):
    """Straight-line motion blur with a sub-pixel length and an angle drawn per image.

    Args:
        length: streak length in pixels (``>= 0``): a number, ``(low, high)`` range or callable.
        angle: direction in degrees (counter-clockwise as displayed): a number, ``(low, high)`` range
            or callable. The blur is centred, so ``angle`` and ``angle + 180`` are the same blur.
        p, exact_fraction, border, reference_size (scales ``length``), generator, seed, return_params:
            as :class:`RandomGaussianBlur`.

    Recorded parameters: ``"length"`` (pixels, 0 where not blurred), ``"angle"``, ``"applied"``.

    Example:
        >>> y = RandomMotionBlur(length=(3, 15), angle=(0, 180), seed=0)(torch.rand(4, 3, 64, 64))
    """

    family = "motion"

    def __init__(self, length: float | tuple[float, float] | Sampler = (3.0, 15.0),
                 angle: float | tuple[float, float] | Sampler = (0.0, 180.0), *, p: float = 1.0,
                 exact_fraction: bool = False, border: str = "reflect", reference_size: float | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 return_params: bool = False) -> None:
        super().__init__(p=p, exact_fraction=exact_fraction, border=border, reference_size=reference_size,
                         generator=generator, seed=seed, return_params=return_params)
        self.length_dist = Distribution.parse(length, "length")
        self.angle_dist = Distribution.parse(angle, "angle", minimum=None)

    def _sample(self, n, scale, gen, dev, applied):
        length = self.length_dist.sample(n, gen, dev)
        angle = self.angle_dist.sample(n, gen, dev)
        return {"length": _where_applied(length * scale, applied, 0.0), "angle": angle}

    def _apply4(self, x4, params):
        return _f.motion_blur(x4, params["length"], params["angle"], border=self.border)

    def extra_repr(self) -> str:
        return f"length={self.length_dist!r}, angle={self.angle_dist!r}, " + self._common_repr()


# ----------------------------------------------------------------------------------------- defocus
class RandomDefocusBlur(_RandomBlurBase):
    """Defocus (lens) blur: an anti-aliased disk of sub-pixel radius drawn per image.

    Args:
        radius: disk radius in pixels (``>= 0``): a number, ``(low, high)`` range or callable.
        p, exact_fraction, border, reference_size (scales ``radius``), generator, seed, return_params:
            as :class:`RandomGaussianBlur`.

    Recorded parameters: ``"radius"`` (pixels, 0 where not blurred), ``"applied"``.

    Example:
        >>> y = RandomDefocusBlur(radius=(1, 4), seed=0)(torch.rand(4, 3, 64, 64))
    """

    family = "defocus"

    def __init__(self, radius: float | tuple[float, float] | Sampler = (1.0, 4.0), *, p: float = 1.0,
                 exact_fraction: bool = False, border: str = "reflect", reference_size: float | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 return_params: bool = False) -> None:
        super().__init__(p=p, exact_fraction=exact_fraction, border=border, reference_size=reference_size,
                         generator=generator, seed=seed, return_params=return_params)
        self.radius_dist = Distribution.parse(radius, "radius")

    def _sample(self, n, scale, gen, dev, applied):
        radius = self.radius_dist.sample(n, gen, dev)
        return {"radius": _where_applied(radius * scale, applied, 0.0)}

    def _apply4(self, x4, params):
        return _f.defocus_blur(x4, params["radius"], border=self.border)

    def extra_repr(self) -> str:
        return f"radius={self.radius_dist!r}, " + self._common_repr()


# --------------------------------------------------------------------------------------------- box
def _check_odd(v: object, name: str) -> int:
    if not _is_number(v) or float(v) != int(v) or int(v) < 1 or int(v) % 2 != 1:
        raise ValueError(f"{name} must be a positive odd integer (1, 3, 5, ...); got {v!r}")
    return int(v)


class RandomBoxBlur(_RandomBlurBase):
    """Box (moving-average) blur with an odd window size drawn per image.

    Args:
        size: an odd int, or an ``(low, high)`` pair of odd ints: the size is drawn uniformly from the
            odd integers ``low, low + 2, ..., high``.
        sizes, weights: alternatively a weighted discrete set of odd sizes.
        p, exact_fraction, border, generator, seed, return_params: as :class:`RandomGaussianBlur`.
        reference_size: sizes are at this shorter side; the scaled size is rounded to the nearest odd
            integer (at least 1).

    Recorded parameters: ``"size"`` (float tensor of odd integers, 1 where not blurred), ``"applied"``.

    Example:
        >>> y = RandomBoxBlur(size=(3, 9), seed=0)(torch.rand(4, 3, 64, 64))
    """

    family = "box"

    def __init__(self, size: int | tuple[int, int] = (3, 9), *, sizes: Sequence[int] | None = None,
                 weights: Sequence[float] | None = None, p: float = 1.0, exact_fraction: bool = False,
                 border: str = "reflect", reference_size: float | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 return_params: bool = False) -> None:
        super().__init__(p=p, exact_fraction=exact_fraction, border=border, reference_size=reference_size,
                         generator=generator, seed=seed, return_params=return_params)
        if sizes is not None:
            vals = list(sizes.tolist() if isinstance(sizes, torch.Tensor) else sizes) \
                if isinstance(sizes, (Sequence, torch.Tensor)) and not isinstance(sizes, str) else sizes
            if not isinstance(vals, list) or not vals:
                raise TypeError(f"sizes must be a non-empty sequence of odd ints; got {describe(sizes)}")
            self.size_dist = Distribution.discrete([_check_odd(v, "sizes") for v in vals], weights, "sizes",
                                                   minimum=1.0)
        else:
            if weights is not None:
                raise ValueError("weights= needs sizes= (the discrete set they weight)")
            if _is_number(size):
                odd = [_check_odd(size, "size")]
            elif isinstance(size, (tuple, list)) and len(size) == 2:
                lo, hi = (_check_odd(v, "size") for v in size)
                if lo > hi:
                    raise ValueError(f"size range must have low <= high; got {size!r}")
                odd = list(range(lo, hi + 1, 2))
            else:
                raise TypeError(f"size must be an odd int or a (low, high) pair of odd ints; "
                                f"got {describe(size)}")
            self.size_dist = Distribution.discrete(odd, None, "size", minimum=1.0)

    def _sample(self, n, scale, gen, dev, applied):
        size = self.size_dist.sample(n, gen, dev)
        if scale != 1.0:
            size = (2.0 * torch.round((size * scale - 1.0) / 2.0) + 1.0).clamp_min(1.0)
        return {"size": _where_applied(size, applied, 1.0)}

    def _apply4(self, x4, params):
        return _f.box_blur(x4, params["size"], border=self.border)

    def extra_repr(self) -> str:
        return f"size={self.size_dist!r}, " + self._common_repr()


# ------------------------------------------------------------------------------------------- mixed
class RandomBlur(_RandomBlurBase):
    """One blur family per image, chosen with given weights (the "blur" op of an AugMix-style pipeline).

    Args:
        transforms: the families: a dict ``name -> transform`` or a sequence of transforms (named by
            their family), each a :class:`RandomGaussianBlur`, :class:`RandomMotionBlur`,
            :class:`RandomDefocusBlur` or :class:`RandomBoxBlur`. Default: one of each with its defaults.
        weights: relative probability of each family (default equal; need not sum to 1).
        p: probability that an image is blurred at all (then its family is drawn, then the family's
            own ``p`` and parameters). The families' own generators and seeds are not used: this
            transform's generator/seed drives everything, so one seed reproduces the whole mix.
        exact_fraction, generator, seed, return_params: as :class:`RandomGaussianBlur`.

    Recorded parameters: ``"applied"`` (bool), ``"family"`` (long index into :attr:`names`, -1 where
    not blurred) and ``"<family>.<param>"`` for every family parameter (NaN for images of another
    family), e.g. ``"gaussian.sigma"``. One engine call per family present in the batch.

    Example:
        >>> aug = RandomBlur({"gaussian": RandomGaussianBlur((0.5, 3)), "motion": RandomMotionBlur((3, 11))},
        ...                  weights=[2, 1], p=0.5, seed=0)
        >>> y = aug(torch.rand(8, 3, 64, 64))
    """

    family = "mixed"

    def __init__(self, transforms: Mapping[str, _RandomBlurBase] | Sequence[_RandomBlurBase] | None = None,
                 weights: Sequence[float] | None = None, *, p: float = 1.0, exact_fraction: bool = False,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 return_params: bool = False) -> None:
        super().__init__(p=p, exact_fraction=exact_fraction, border="reflect", reference_size=None,
                         generator=generator, seed=seed, return_params=return_params)
        if transforms is None:
            transforms = [RandomGaussianBlur(), RandomMotionBlur(), RandomDefocusBlur(), RandomBoxBlur()]
        if isinstance(transforms, Mapping):
            items = list(transforms.items())
        elif isinstance(transforms, Sequence) and not isinstance(transforms, str):
            items = [(getattr(t, "family", type(t).__name__), t) for t in transforms]
        else:
            raise TypeError(f"transforms must be a dict name -> transform or a sequence of transforms; "
                            f"got {type(transforms).__name__}")
        if not items:
            raise ValueError("transforms must contain at least one blur transform")
        names = [str(n) for n, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"transform names must be unique; got {names} (pass a dict to name them)")
        for n, t in items:
            if not isinstance(t, _RandomBlurBase) or isinstance(t, RandomBlur):
                raise TypeError(f"transform {n!r} must be a RandomGaussianBlur, RandomMotionBlur, "
                                f"RandomDefocusBlur or RandomBoxBlur; got {type(t).__name__}")
            if "." in n:
                raise ValueError(f"transform names must not contain '.'; got {n!r}")
        self.names = tuple(names)
        self.transforms = nn.ModuleDict(dict(items))
        self.family_dist = Distribution.discrete(list(range(len(names))), weights, "transforms")

    def _sample(self, n, scale, gen, dev, applied):
        fam = self.family_dist.sample(n, gen, dev).long() if len(self.names) > 1 else \
            torch.zeros(n, dtype=torch.long, device=dev)
        out: Params = {"family": torch.where(applied, fam, torch.full_like(fam, -1))}
        return out

    def _draw(self, n, height, width, device, gen):
        params = super()._draw(n, height, width, device, gen)
        family = params["family"]
        for k, name in enumerate(self.names):
            t = self.transforms[name]
            sub = t._draw(n, height, width, device, gen)  # drawn for all: fixed stream use, vectorised
            mine = family == k
            params["applied"] = torch.where(mine, params["applied"] & sub["applied"], params["applied"])
            for key, val in sub.items():
                if key == "applied":
                    continue
                v = val.float()
                params[f"{name}.{key}"] = torch.where(mine, v, torch.full_like(v, float("nan")))
        params["family"] = torch.where(params["applied"], family, torch.full_like(family, -1))
        return params

    def _apply4(self, x4, params):
        family = params["family"]
        out = x4.clone()
        for k, name in enumerate(self.names):
            idx = torch.nonzero(family == k).flatten()
            if idx.numel() == 0:
                continue
            t = self.transforms[name]
            sub = {key.split(".", 1)[1]: v.index_select(0, idx) for key, v in params.items()
                   if key.startswith(name + ".")}
            out.index_copy_(0, idx, t._apply4(x4.index_select(0, idx), sub))
        return out

    def extra_repr(self) -> str:
        probs = ", ".join(f"{n}: {p:.3g}" for n, p in zip(self.names, self.family_dist.probabilities))
        return "weights={" + probs + "}, " + self._common_repr(border=False)
