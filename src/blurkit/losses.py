"""Blur-aware losses: BlurSim (spectrum + edge similarity) and blur-consistency terms.

BlurSim
-------
The loss described by the BlurSim project (github amirhossein-razlighi/BlurSim) for models whose
inputs and outputs are blurred images, implemented as described (its shipped code keeps the complex
spectrum, so its "general" term reduces to pixel RMSE by Parseval; here the magnitude spectrum is used):

.. math::

    \\mathrm{BlurSim}(x, y) = (1 - \\alpha)\\,\\mathrm{General}(x, y) + \\alpha\\,\\mathrm{Specific}(x, y)

with, for every image and channel,

.. math::

    \\mathrm{rel}(A, B) = \\frac{\\mathrm{rms}(A - B)}{\\mathrm{rms}(A) + \\mathrm{rms}(B) + \\varepsilon},
    \\qquad \\mathrm{rms}(A) = \\sqrt{\\tfrac{1}{N}\\textstyle\\sum_i A_i^2}

    \\mathrm{General}(x, y) = \\mathrm{rel}(|\\mathcal{F}x|, |\\mathcal{F}y|), \\qquad
    \\mathrm{Specific}(x, y) = \\mathrm{rel}(\\|\\nabla_{S} x\\|, \\|\\nabla_{S} y\\|)

where :math:`|\\mathcal{F}x|` is the magnitude of the orthonormal 2-D DFT over all ``H x W``
frequencies (computed with ``torch.fft.rfft2(norm="ortho")``; the half spectrum is weighted so the
sums equal full-spectrum sums; by Parseval ``rms(|F x|) == rms(x)``, so ``eps`` is in intensity
units) and :math:`\\|\\nabla_S x\\| = \\sqrt{(S_x * x)^2 + (S_y * x)^2}` the Sobel gradient magnitude
with OpenCV's Sobel kernels (``cv2.Sobel``, ``ksize`` 1-31, border ``"reflect"`` = BORDER_REFLECT_101
by default). ``rel`` lies in ``[0, 1]`` (triangle inequality), is 0 iff ``A == B`` and is

* invariant to the intensity scale: ``rel(cA, cB) == rel(A, B)`` for ``c > 0`` up to ``eps`` (the
  relative error is at most ``eps / (rms(A) + rms(B))``), so 0-1 and 0-255 images give the same loss;
* independent of the number of pixels (a per-pixel RMS): tiling an image periodically (``k x l``
  copies, ``border="circular"``) leaves both terms unchanged exactly; for photographs the value
  depends on the blur per pixel, not on the image size (the same photograph at 64, 128 and 256 px
  blurred by the same sigma in pixels, or a crop of it, give values within about 25%; a blur that
  grows with the image size gives growing values).

With ``log_magnitude=True`` the spectra are compressed before comparison,
:math:`G(x) = \\log(1 + |\\mathcal{F}_o x| / s)` with the orthonormal DFT :math:`\\mathcal{F}_o` and
:math:`s = \\sqrt{(\\mathrm{ms}(x) + \\mathrm{ms}(y))/2} + \\varepsilon` the joint pixel RMS of the pair
(by Parseval also the RMS of :math:`|\\mathcal{F}_o x|`); this keeps scale invariance but is not
exactly size invariant. Colour images are compared channel by channel and the channel values averaged
(``color="per_channel"``), or through their BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
(``color="luminance"``). All square roots are "safe" (zero gradient at exactly 0), so gradients are
finite everywhere, including where ``x == y`` or where an image is flat.

Blur consistency
----------------
:func:`blur_consistency` measures how much a model's predictions (or features) move when its input is
blurred: the Jensen-Shannon divergence of AugMix (Hendrycks et al., ICLR 2020) or one minus the cosine
similarity of features. :class:`BlurConsistencyLoss` wraps a classifier, a blur transform and a task
loss into one training objective.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import FLOAT_DTYPES, check_border, describe, per_sample
from .filtering import sepfilter2d

__all__ = [
    "blursim",
    "general_term",
    "specific_term",
    "sobel_kernels",
    "sobel_magnitude",
    "BlurSim",
    "AlphaSchedule",
    "blur_consistency",
    "BlurConsistencyLoss",
]

REDUCTIONS = ("mean", "sum", "none")
COLORS = ("per_channel", "luminance")
SCHEDULE_KINDS = ("linear", "cosine", "exponential")
CONSISTENCY_KINDS = ("js", "cosine")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2.cvtColor(RGB2GRAY) and PIL "L"


# ------------------------------------------------------------------------------------ helpers
def _choice(value: object, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0 (it keeps 0 / 0 out of flat images); got {eps!r}")
    return float(eps)


def _check_pair(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate two float image tensors of the same shape; return them as (B, C, H, W)."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W) or (C, H, W); "
                            f"got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating-point tensor (float16, bfloat16, float32 or "
                            f"float64); got dtype {t.dtype} (convert integer images with .float())")
        if t.dim() not in (3, 4):
            raise ValueError(f"{name} must have shape (B, C, H, W) or (C, H, W); got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{name} must not be empty; got shape {tuple(t.shape)}")
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device; got x on {x.device} and y on {y.device}")
    squeezed = x.dim() == 3
    if squeezed:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    wdt = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    return x.to(wdt), y.to(wdt), squeezed


def _safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """``sqrt(s)`` for ``s >= 0``: exactly 0 at 0, with gradient 0 (not inf/NaN) there.

    The clamp keeps ``1 / sqrt`` finite; the mask zeroes both the value and the gradient at 0.
    """
    tiny = torch.finfo(s.dtype).tiny
    return torch.sqrt(s.clamp_min(tiny)) * (s > 0)


def _rel(a: torch.Tensor, b: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Relative RMS difference over the last two dims: rms(a-b) / (rms(a) + rms(b) + eps) -> (B, C)."""
    n = float(a.shape[-2] * a.shape[-1]) if weight is None else float(weight.sum()) * a.shape[-2]

    def ms(t: torch.Tensor) -> torch.Tensor:
        t2 = t * t if weight is None else t * t * weight
        return t2.sum(dim=(-2, -1)) / n

    return _safe_sqrt(ms(a - b)) / (_safe_sqrt(ms(a)) + _safe_sqrt(ms(b)) + eps)


def _to_color(x: torch.Tensor, color: str) -> torch.Tensor:
    if color == "per_channel" or x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"color='luminance' needs 1 or 3 channels (RGB); got {x.shape[1]} channels. "
                         "Use color='per_channel' for other channel counts")
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
    return (x * w[None, :, None, None]).sum(dim=1, keepdim=True)


def _reduce(per_image: torch.Tensor, reduction: str, squeezed: bool, dtype: torch.dtype) -> torch.Tensor:
    if reduction == "mean":
        out = per_image.mean()
    elif reduction == "sum":
        out = per_image.sum()
    else:
        out = per_image[0] if squeezed else per_image
    return out.to(dtype)


def _rfft_weight(W: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Weights of the rfft2 columns so that weighted sums equal sums over the full spectrum."""
    w = torch.full((W // 2 + 1,), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    if W % 2 == 0:
        w[-1] = 1.0
    return w


def _check_sobel_size(sobel_size: object) -> int:
    if isinstance(sobel_size, bool) or not isinstance(sobel_size, numbers.Integral) or sobel_size < 1 \
            or sobel_size > 31 or sobel_size % 2 == 0:
        raise ValueError(f"sobel_size must be an odd integer between 1 and 31 (as cv2.Sobel ksize); "
                         f"got {sobel_size!r}")
    return int(sobel_size)


# ----------------------------------------------------------------------------------- Sobel
def sobel_kernels(size: int = 5, *, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's separable Sobel kernels for the first derivative (``cv2.getDerivKernels(1, 0, size)``).

    The derivative kernel is the central difference ``[-1, 0, 1]`` convolved with the binomial
    smoothing of order ``size - 3``; the smoothing kernel is the binomial of order ``size - 1``
    (``size=1``: no smoothing, ``[1]``). Unnormalised, as ``cv2.Sobel`` with ``scale=1``.

    Args:
        size: odd kernel size 1-31 (``ksize`` of ``cv2.Sobel``).
        dtype, device: of the returned kernels.

    Returns:
        ``(derivative, smoothing)``: 1-D tensors of length ``max(size, 3)`` and ``size``
        (``size=1``: ``[-1, 0, 1]`` and ``[1]``).

    Example:
        >>> d, s = sobel_kernels(5)
        >>> d.tolist(), s.tolist()
        ([-1.0, -2.0, 0.0, 2.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0])
    """
    size = _check_sobel_size(size)
    if size == 1:
        return (torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device),
                torch.ones(1, dtype=dtype, device=device))
    smooth = [math.comb(size - 1, i) for i in range(size)]
    base = [math.comb(size - 3, i) for i in range(size - 2)]
    deriv = [0.0] * size
    for i, b in enumerate(base):  # base (*) [-1, 0, 1]
        deriv[i] -= b
        deriv[i + 2] += b
    return (torch.tensor(deriv, dtype=dtype, device=device), torch.tensor(smooth, dtype=dtype, device=device))


def sobel_magnitude(images: torch.Tensor, size: int = 5, *, border: str = "reflect") -> torch.Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` per channel, as ``cv2.Sobel`` with ``ksize=size``.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` floating tensor.
        size: odd Sobel size 1-31.
        border: engine border name (``"reflect"`` is OpenCV's default BORDER_REFLECT_101).

    Returns:
        Tensor like ``images`` (computed in float32, or float64 for float64 input, then cast back).
        Differentiable; the gradient is finite where the magnitude is 0.

    Example:
        >>> m = sobel_magnitude(torch.rand(2, 1, 32, 32), 3)
    """
    size = _check_sobel_size(size)
    check_border(border)
    if not isinstance(images, torch.Tensor) or images.dtype not in FLOAT_DTYPES:
        raise TypeError(f"images must be a floating-point tensor; got "
                        f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}")
    wdt = torch.float64 if images.dtype == torch.float64 else torch.float32
    return _sobel_mag(images.to(wdt), size, border).to(images.dtype)


def _sobel_mag(x: torch.Tensor, size: int, border: str) -> torch.Tensor:
    d, s = sobel_kernels(size, dtype=x.dtype, device=x.device)
    if d.shape[0] != s.shape[0]:  # size 1: smoothing [1] -> centre it in a zero frame of length 3
        s = F.pad(s, (1, 1))
    B = x.shape[0]
    # One engine call for both directions: images [x; x] with per-image kernels
    # (d/dx: derivative along the width, smoothing along the height; d/dy the other way round).
    kx = torch.stack([d, s]).repeat_interleave(B, dim=0)
    ky = torch.stack([s, d]).repeat_interleave(B, dim=0)
    g = sepfilter2d(torch.cat([x, x], dim=0), kx, ky, border=border)
    gx, gy = g[:B], g[B:]
    mag = _safe_sqrt(gx * gx + gy * gy)
    # Rounding floor: on a flat image the two passes cancel only up to a few ulps of |d|_1 |s|_1 max|x|
    # (float32: ~1e-5 of the image's scale). Magnitudes below 8 such ulps are that noise, not edges, and
    # are set to 0 (else two flat images of different levels compare as "all edges differ").
    # (two reductions instead of a batch-sized |x|; the gain stays a tensor: no device sync per call)
    xd = x.detach()
    peak = torch.maximum(xd.amax(dim=(1, 2, 3), keepdim=True), -xd.amin(dim=(1, 2, 3), keepdim=True))
    floor = (8 * torch.finfo(x.dtype).eps) * (d.abs().sum() * s.abs().sum()) * peak
    return mag.masked_fill(mag <= floor, 0.0)


# ---------------------------------------------------------------------------------- BlurSim
def _spectra(x: torch.Tensor, y: torch.Tensor, log_magnitude: bool, eps: float) -> tuple[torch.Tensor, ...]:
    both = torch.cat([x, y], dim=0)
    mag = torch.fft.rfft2(both, norm="ortho").abs()  # complex abs: gradient 0 (finite) at 0
    mx, my = mag[: x.shape[0]], mag[x.shape[0]:]
    if log_magnitude:
        ms = (x * x).mean(dim=(-2, -1)) + (y * y).mean(dim=(-2, -1))
        s = (_safe_sqrt(ms / 2) + eps)[..., None, None]
        mx, my = torch.log1p(mx / s), torch.log1p(my / s)
    return mx, my


def general_term(x: torch.Tensor, y: torch.Tensor, *, log_magnitude: bool = False,
                 color: str = "per_channel", eps: float = 1e-8) -> torch.Tensor:
    """BlurSim's General term per image: relative difference of DFT magnitude spectra.

    ``rms(|Fx| - |Fy|) / (rms(|Fx|) + rms(|Fy|) + eps)`` over all ``H x W`` frequencies, per channel,
    averaged over channels (see the module docstring).

    Args:
        x, y: ``(B, C, H, W)`` or ``(C, H, W)`` floating tensors of the same shape.
        log_magnitude: compare ``log(1 + |F_o x| / s)`` instead of ``|F x|``.
        color: ``"per_channel"`` or ``"luminance"``.
        eps: denominator guard (intensity units).

    Returns:
        ``(B,)`` values in ``[0, 1]`` (a 0-d tensor for 3-D input), in the working dtype
        (float64 for float64 input, else float32).
    """
    x4, y4, squeezed = _check_pair(x, y)
    color = _choice(color, "color", COLORS)
    eps = _check_eps(eps)
    x4, y4 = _to_color(x4, color), _to_color(y4, color)
    gx, gy = _spectra(x4, y4, bool(log_magnitude), eps)
    w = _rfft_weight(x4.shape[-1], x4.device, x4.dtype)
    out = _rel(gx, gy, eps, w).mean(dim=1)
    return out[0] if squeezed else out


def specific_term(x: torch.Tensor, y: torch.Tensor, *, sobel_size: int = 5, color: str = "per_channel",
                  border: str = "reflect", eps: float = 1e-8) -> torch.Tensor:
    """BlurSim's Specific term per image: relative difference of Sobel gradient magnitudes.

    ``rms(|grad x| - |grad y|) / (rms(|grad x|) + rms(|grad y|) + eps)`` per channel, averaged over
    channels, with OpenCV's Sobel kernels of size ``sobel_size``.

    Args:
        x, y: ``(B, C, H, W)`` or ``(C, H, W)`` floating tensors of the same shape.
        sobel_size: odd Sobel size 1-31 (3, 5 and 7 are usual).
        color: ``"per_channel"`` or ``"luminance"``.
        border: border handling of the Sobel filter (engine names; default as OpenCV).
        eps: denominator guard.

    Returns:
        ``(B,)`` values in ``[0, 1]`` (0-d for 3-D input) in the working dtype.
    """
    x4, y4, squeezed = _check_pair(x, y)
    size = _check_sobel_size(sobel_size)
    color = _choice(color, "color", COLORS)
    check_border(border)
    eps = _check_eps(eps)
    x4, y4 = _to_color(x4, color), _to_color(y4, color)
    m = _sobel_mag(torch.cat([x4, y4], dim=0), size, border)
    out = _rel(m[: x4.shape[0]], m[x4.shape[0]:], eps).mean(dim=1)
    return out[0] if squeezed else out


def blursim(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float | torch.Tensor = 0.8,
    *,
    sobel_size: int = 5,
    log_magnitude: bool = False,
    color: str = "per_channel",
    reduction: str = "mean",
    border: str = "reflect",
    eps: float = 1e-8,
) -> torch.Tensor:
    """BlurSim loss ``(1 - alpha) * General + alpha * Specific`` (see the module docstring).

    Args:
        x, y: prediction and target, ``(B, C, H, W)`` or ``(C, H, W)``, same shape, floating
            (float16/bfloat16 are computed in float32). Any intensity range; any channel count.
        alpha: weight of the Specific (edge) term in ``[0, 1]``: a number, a 0-d tensor or ``(B,)``
            (one per image). The BlurSim recipe decays it from about 0.9 to 0.1
            (:class:`AlphaSchedule`).
        sobel_size: odd Sobel kernel size 1-31 (default 5, as BlurSim).
        log_magnitude: compare log-compressed spectra (scale invariant, not size invariant).
        color: ``"per_channel"`` (each channel, then the channel mean) or ``"luminance"`` (BT.601 grey
            of RGB input; 1-channel input is used as is).
        reduction: ``"mean"`` or ``"sum"`` over the batch, or ``"none"`` for the ``(B,)`` values.
        border: border of the Sobel filter (default ``"reflect"``, OpenCV's BORDER_REFLECT_101).
        eps: guard added to denominators, in the units of the compared representations.

    Returns:
        A 0-d tensor (``"mean"``/``"sum"``) or ``(B,)`` (``"none"``; 0-d for 3-D input), in ``x``'s
        dtype. Each image's value lies in ``[0, 1]``; 0 iff the magnitude spectra and edge maps agree.

    Example:
        >>> x = torch.rand(4, 3, 64, 64, requires_grad=True)
        >>> y = bk.gaussian_blur(x.detach(), 1.5)
        >>> loss = blursim(x, y, alpha=0.9)
        >>> loss.backward()
    """
    x4, y4, squeezed = _check_pair(x, y)
    size = _check_sobel_size(sobel_size)
    color = _choice(color, "color", COLORS)
    reduction = _choice(reduction, "reduction", REDUCTIONS)
    check_border(border)
    eps = _check_eps(eps)
    a = per_sample(alpha, "alpha", x4.shape[0], device=x4.device, dtype=x4.dtype, minimum=0.0, maximum=1.0)
    x4, y4 = _to_color(x4, color), _to_color(y4, color)
    B = x4.shape[0]
    gx, gy = _spectra(x4, y4, bool(log_magnitude), eps)
    general = _rel(gx, gy, eps, _rfft_weight(x4.shape[-1], x4.device, x4.dtype)).mean(dim=1)
    m = _sobel_mag(torch.cat([x4, y4], dim=0), size, border)
    specific = _rel(m[:B], m[B:], eps).mean(dim=1)
    per_image = (1 - a) * general + a * specific
    return _reduce(per_image, reduction, squeezed, x.dtype)


class AlphaSchedule:
    """Decay of BlurSim's ``alpha`` over training, stepped by the training loop.

    ``value`` at step ``t`` (clamped to ``[0, steps]``), with ``u = t / steps``:

    * ``"linear"``: ``start + (end - start) * u``
    * ``"cosine"``: ``end + (start - end) * (1 + cos(pi * u)) / 2``
    * ``"exponential"``: ``start * (end / start) ** u`` (needs ``start, end > 0``)

    After ``steps`` calls of :meth:`step` the value stays at ``end``.

    Args:
        start: value at step 0, in ``[0, 1]`` (BlurSim recipe: about 0.9).
        end: value from step ``steps`` on, in ``[0, 1]`` (about 0.1).
        steps: number of steps of the decay (e.g. epochs or iterations), integer >= 1.
        kind: ``"linear"``, ``"cosine"`` or ``"exponential"``.

    Example:
        >>> sched = AlphaSchedule(0.9, 0.1, steps=100, kind="cosine")
        >>> loss_fn = BlurSim(alpha=sched)
        >>> for epoch in range(100):
        ...     ...  # train with loss_fn
        ...     sched.step()
        >>> float(sched)
        0.1
    """

    def __init__(self, start: float = 0.9, end: float = 0.1, steps: int = 100, kind: str = "linear") -> None:
        for name, v in (("start", start), ("end", end)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1]; got {v!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        kind = _choice(kind, "kind", SCHEDULE_KINDS)
        if kind == "exponential" and (start <= 0 or end <= 0):
            raise ValueError(f"kind='exponential' needs start > 0 and end > 0; "
                             f"got start={start!r}, end={end!r}")
        self.start, self.end, self.steps, self.kind = float(start), float(end), int(steps), kind
        self.last_step = 0

    def value_at(self, t: float) -> float:
        """The schedule's value at step ``t`` (clamped to ``[0, steps]``)."""
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
            raise ValueError(f"t must be a finite number; got {t!r}")
        u = min(max(float(t) / self.steps, 0.0), 1.0)
        if self.kind == "linear":
            v = self.start + (self.end - self.start) * u
        elif self.kind == "cosine":
            v = self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * u)) / 2.0
        else:
            v = self.start * (self.end / self.start) ** u
        if u >= 1.0:
            v = self.end
        return min(max(v, 0.0), 1.0)

    @property
    def value(self) -> float:
        """Current value (at :attr:`last_step`)."""
        return self.value_at(self.last_step)

    def __float__(self) -> float:
        return self.value

    def step(self) -> float:
        """Advance one step and return the new value."""
        self.last_step += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Configuration and position, for checkpoints."""
        return {"start": self.start, "end": self.end, "steps": self.steps, "kind": self.kind,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (validated)."""
        if not isinstance(state, dict) or "last_step" not in state:
            raise ValueError(f"state must be a dict from AlphaSchedule.state_dict(); got {describe(state)}")
        fresh = AlphaSchedule(state.get("start", self.start), state.get("end", self.end),
                              state.get("steps", self.steps), state.get("kind", self.kind))
        t = state["last_step"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"state['last_step'] must be an integer >= 0; got {t!r}")
        self.start, self.end, self.steps, self.kind = fresh.start, fresh.end, fresh.steps, fresh.kind
        self.last_step = int(t)

    def __repr__(self) -> str:
        return (f"AlphaSchedule(start={self.start}, end={self.end}, steps={self.steps}, kind={self.kind!r}; "
                f"step {self.last_step}, value {self.value:.4g})")


class BlurSim(nn.Module):
    """BlurSim loss as a module: ``(1 - alpha) * General + alpha * Specific`` (see :func:`blursim`).

    Args:
        alpha: a number in ``[0, 1]`` or an :class:`AlphaSchedule`, read at every call (the training
            loop steps the schedule). The schedule's position is saved in the module's ``state_dict``.
        sobel_size, log_magnitude, color, reduction, border, eps: as in :func:`blursim`.

    Example:
        >>> sched = bk.AlphaSchedule(0.9, 0.1, steps=10)
        >>> crit = bk.BlurSim(alpha=sched)
        >>> pred = torch.rand(8, 1, 28, 28, requires_grad=True)
        >>> crit(pred, torch.rand(8, 1, 28, 28)).backward()
        >>> round(sched.step(), 6)  # once per epoch
        0.82
    """

    def __init__(self, alpha: float | AlphaSchedule = 0.8, *, sobel_size: int = 5,
                 log_magnitude: bool = False, color: str = "per_channel", reduction: str = "mean",
                 border: str = "reflect", eps: float = 1e-8) -> None:
        super().__init__()
        if not isinstance(alpha, AlphaSchedule):
            per_sample(alpha, "alpha", None, minimum=0.0, maximum=1.0)
            if isinstance(alpha, torch.Tensor) and alpha.numel() != 1:
                raise ValueError(f"alpha of BlurSim must be one number or an AlphaSchedule; "
                                 f"got {describe(alpha)}")
            alpha = float(alpha)
        self.schedule_or_alpha: float | AlphaSchedule = alpha
        self.sobel_size = _check_sobel_size(sobel_size)
        self.log_magnitude = bool(log_magnitude)
        self.color = _choice(color, "color", COLORS)
        self.reduction = _choice(reduction, "reduction", REDUCTIONS)
        self.border = check_border(border)
        self.eps = _check_eps(eps)

    @property
    def alpha(self) -> float:
        """The alpha used by the next call."""
        return float(self.schedule_or_alpha)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return blursim(x, y, self.alpha, sobel_size=self.sobel_size, log_magnitude=self.log_magnitude,
                       color=self.color, reduction=self.reduction, border=self.border, eps=self.eps)

    def get_extra_state(self) -> dict[str, Any]:
        if isinstance(self.schedule_or_alpha, AlphaSchedule):
            return {"schedule": self.schedule_or_alpha.state_dict()}
        return {"alpha": self.schedule_or_alpha}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if "schedule" in state:
            if isinstance(self.schedule_or_alpha, AlphaSchedule):
                self.schedule_or_alpha.load_state_dict(state["schedule"])
            else:
                sched = AlphaSchedule(0.9, 0.1, 1)
                sched.load_state_dict(state["schedule"])
                self.schedule_or_alpha = sched
        elif "alpha" in state and not isinstance(self.schedule_or_alpha, AlphaSchedule):
            self.schedule_or_alpha = float(state["alpha"])

    def extra_repr(self) -> str:
        a = self.schedule_or_alpha
        return (f"alpha={a!r}, sobel_size={self.sobel_size}, log_magnitude={self.log_magnitude}, "
                f"color={self.color!r}, reduction={self.reduction!r}")


# -------------------------------------------------------------------------- blur consistency
def _views(clean: torch.Tensor, blurred: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    if isinstance(blurred, torch.Tensor):
        if blurred.dim() == clean.dim():
            views = blurred.unsqueeze(0)
        elif blurred.dim() == clean.dim() + 1:
            views = blurred
        else:
            raise ValueError(f"blurred must have the shape of clean {tuple(clean.shape)} or (V, "
                             f"*{tuple(clean.shape)}); got shape {tuple(blurred.shape)}")
    elif isinstance(blurred, Sequence) and not isinstance(blurred, str):
        if len(blurred) == 0:
            raise ValueError("blurred must hold at least one view; got an empty sequence")
        for i, b in enumerate(blurred):
            if not isinstance(b, torch.Tensor):
                raise TypeError(f"blurred[{i}] must be a torch.Tensor; got {type(b).__name__}")
        views = torch.stack(list(blurred), dim=0) if all(b.shape == clean.shape for b in blurred) else None
        if views is None:
            bad = [tuple(b.shape) for b in blurred]
            raise ValueError(f"every blurred view must have the shape of clean {tuple(clean.shape)}; "
                             f"got {bad}")
    else:
        raise TypeError(f"blurred must be a tensor or a sequence of tensors; got {type(blurred).__name__}")
    if views.shape[1:] != clean.shape:
        raise ValueError(f"blurred views must have the shape of clean {tuple(clean.shape)}; "
                         f"got {tuple(views.shape[1:])}")
    if not views.is_floating_point():
        raise TypeError(f"blurred must be floating point; got dtype {views.dtype}")
    return views


def blur_consistency(
    clean: torch.Tensor,
    blurred: torch.Tensor | Sequence[torch.Tensor],
    kind: str = "js",
    *,
    reduction: str = "mean",
    detach_clean: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Divergence between a model's outputs on clean images and on blurred copies of them.

    * ``kind="js"``: generalised Jensen-Shannon divergence of the softmax distributions, as in AugMix
      (Hendrycks et al., ICLR 2020): with ``p_0`` the clean and ``p_1..p_V`` the blurred predictions
      and ``M = mean_i p_i``, ``JS = mean_{i=0..V} KL(p_i || M)`` in nats; ``log M`` is taken of
      ``M`` clamped to ``[eps, 1]`` (AugMix's ``1e-7``). For one view this is the usual
      ``JS(p, q) = (KL(p||M) + KL(q||M)) / 2``, i.e. ``scipy.spatial.distance.jensenshannon(p, q)**2``
      (natural log). AugMix weights this term by 12.
    * ``kind="cosine"``: ``mean_{i=1..V} (1 - cos(f_0, f_i))`` on features flattened per image.

    Args:
        clean: ``(B, K)`` logits (``"js"``; class dimension 1, extra dimensions such as ``(B, K, H, W)``
            are averaged over) or ``(B, ...)`` features (``"cosine"``). Floating.
        blurred: one view shaped like ``clean``, a ``(V, *clean.shape)`` tensor, or a sequence of V views.
        kind: ``"js"`` or ``"cosine"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``).
        detach_clean: stop the gradient through the clean branch (use the clean output as a target).
        eps: clamp of the mixture for ``"js"``.

    Returns:
        0-d tensor, or ``(B,)`` for ``reduction="none"``.

    Example:
        >>> logits = model(x); logits_b = model(bk.gaussian_blur(x, 2.0))
        >>> loss = F.cross_entropy(logits, y) + 12 * blur_consistency(logits, logits_b)
    """
    if not isinstance(clean, torch.Tensor) or not clean.is_floating_point():
        raise TypeError(f"clean must be a floating-point tensor of logits or features; got "
                        f"{clean.dtype if isinstance(clean, torch.Tensor) else type(clean).__name__}")
    if clean.dim() < 2:
        raise ValueError(f"clean must have shape (B, K) or (B, ...); got shape {tuple(clean.shape)}")
    kind = _choice(kind, "kind", CONSISTENCY_KINDS)
    reduction = _choice(reduction, "reduction", REDUCTIONS)
    eps = _check_eps(eps)
    views = _views(clean, blurred).to(clean.dtype)
    c = clean.detach() if detach_clean else clean
    if kind == "js":
        allv = torch.cat([c.unsqueeze(0), views], dim=0)  # (V+1, B, K, ...)
        logp = F.log_softmax(allv, dim=2)
        p = logp.exp()
        log_m = p.mean(dim=0).clamp(eps, 1.0).log()
        kl = (p * (logp - log_m.unsqueeze(0))).sum(dim=2)  # (V+1, B, ...)
        per = kl.mean(dim=0)
        per = per.reshape(per.shape[0], -1).mean(dim=1)
    else:
        f0 = c.reshape(c.shape[0], -1)
        fv = views.reshape(views.shape[0], views.shape[1], -1)
        per = (1 - F.cosine_similarity(f0.unsqueeze(0), fv, dim=2, eps=1e-8)).mean(dim=0)
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


class BlurConsistencyLoss(nn.Module):
    """Task loss on clean and blurred views plus a blur-consistency term (AugMix-style JSD or cosine).

    One call runs ``model`` once on the concatenation of the clean batch and ``views`` blurred copies
    (``blur(images)`` called ``views`` times; a random blur draws new parameters each time), then returns

    ``task + weight * blur_consistency(out_clean, out_blurred, kind)``

    with ``task`` the mean of ``task_loss(logits_view, targets)`` over the clean and blurred views
    (``task_on="all"``) or on the clean view only (``task_on="clean"``, as AugMix). The model may
    return logits, or a tuple ``(logits, features)``: ``kind="cosine"`` then compares the features
    (otherwise the outputs themselves). The parts of the last call are kept, detached, in
    :attr:`last_terms` for logging.

    Args:
        blur: any callable ``images -> images`` of the same shape (e.g. ``bk.RandomGaussianBlur(...)``
            or ``lambda x: bk.gaussian_blur(x, 2.0)``).
        kind: ``"js"`` or ``"cosine"``.
        weight: weight of the consistency term (AugMix: 12).
        views: number of blurred copies per image (AugMix: 2).
        task_loss: ``(logits, targets) -> scalar``; default cross-entropy.
        task_on: ``"all"`` or ``"clean"``.
        detach_clean: see :func:`blur_consistency`.

    Example:
        >>> crit = BlurConsistencyLoss(lambda x: bk.gaussian_blur(x, 1.5), kind="js", weight=12.0)
        >>> loss = crit(model, images, labels)
        >>> loss.backward()
    """

    def __init__(self, blur: Callable[[torch.Tensor], torch.Tensor], *, kind: str = "js",
                 weight: float = 12.0, views: int = 2,
                 task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 task_on: str = "all", detach_clean: bool = False) -> None:
        super().__init__()
        if not callable(blur):
            raise TypeError(f"blur must be a callable images -> images; got {type(blur).__name__}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) \
                or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0; got {weight!r}")
        if isinstance(views, bool) or not isinstance(views, numbers.Integral) or views < 1:
            raise ValueError(f"views must be an integer >= 1; got {views!r}")
        if task_loss is not None and not callable(task_loss):
            raise TypeError(f"task_loss must be a callable (logits, targets) -> loss; "
                            f"got {type(task_loss).__name__}")
        self.blur = blur
        self.kind = _choice(kind, "kind", CONSISTENCY_KINDS)
        self.weight = float(weight)
        self.views = int(views)
        self.task_loss = task_loss if task_loss is not None else F.cross_entropy
        self.task_on = _choice(task_on, "task_on", ("all", "clean"))
        self.detach_clean = bool(detach_clean)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, model: Callable[[torch.Tensor], Any], images: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        if not callable(model):
            raise TypeError(f"model must be callable; got {type(model).__name__}")
        if not isinstance(images, torch.Tensor) or images.dim() < 2:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"images must be a batched tensor (B, ...); got {got}")
        B = images.shape[0]
        blurred = []
        for i in range(self.views):
            b = self.blur(images)
            if not isinstance(b, torch.Tensor) or b.shape != images.shape:
                got = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
                raise ValueError(f"blur must return a tensor shaped like images {tuple(images.shape)}; "
                                 f"view {i} got {got}")
            blurred.append(b.to(images.dtype))
        out = model(torch.cat([images, *blurred], dim=0))
        if isinstance(out, (tuple, list)):
            logits, feats = out[0], (out[1] if len(out) > 1 else out[0])
        else:
            logits = feats = out
        if not isinstance(logits, torch.Tensor) or logits.shape[0] != B * (self.views + 1):
            raise ValueError(f"model must return a tensor with batch size {B * (self.views + 1)} "
                             f"(clean + {self.views} blurred views)")
        parts = logits.split(B, dim=0)
        if self.task_on == "all":
            task = torch.stack([self.task_loss(p, targets) for p in parts]).mean()
        else:
            task = self.task_loss(parts[0], targets)
        src = logits if self.kind == "js" else feats
        chunks = src.split(B, dim=0)
        cons = blur_consistency(chunks[0], list(chunks[1:]), self.kind, detach_clean=self.detach_clean)
        total = task + self.weight * cons
        self.last_terms = {"task": task.detach(), "consistency": cons.detach(), "total": total.detach()}
        return total

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, weight={self.weight}, views={self.views}, task_on={self.task_on!r}, "
                f"blur={self.blur!r}")
