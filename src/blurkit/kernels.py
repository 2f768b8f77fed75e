"""Blur kernel families, built per image and normalised to sum 1.

Every builder takes per-image parameters (a Python number, or a tensor of shape ``(B,)``) and
returns one kernel per image. Kernels of different sizes share one zero-padded tensor: image ``i``
uses only its own support (the filtering engine trims the zero frame, so a small kernel never pays
for the batch's largest). Builders are differentiable with respect to their continuous
parameters (sigma, sigma_y, angle, radius, length); the discrete support (kernel size) is not.

Conventions
-----------
* Coordinates: ``x`` runs along image columns (width), ``y`` along rows (height, downwards).
* Angles are in degrees, counter-clockwise as the image is displayed (so ``angle=90`` is vertical).
* Gaussian radius is ``ceil(truncate * sigma)``; kernel size ``2 * radius + 1``
  (``truncate=2`` is the rule of Jang & Tong 2024).

Functions
---------
gaussian1d, gaussian, box1d, box, disk, motion
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict

import torch

from ._validation import check_truncate, describe, odd_size, per_sample, radius_from

__all__ = ["gaussian1d", "gaussian", "box1d", "box", "disk", "motion", "clear_cache"]

_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_CACHE_SIZE = 512
_CACHE_MAX_DISTINCT = 32  # parameter sets with more distinct values are built, not cached


def clear_cache() -> None:
    """Forget every cached kernel."""
    _CACHE.clear()


def _cached(key: tuple, build) -> torch.Tensor:
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    value = build()
    _CACHE[key] = value
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _float_dtype(dtype: torch.dtype | None, *params: object) -> torch.dtype:
    """The result dtype: ``dtype``, else float64 when a parameter was given as a float64 tensor."""
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype must be a floating dtype; got {dtype}")
        return dtype
    f64 = any(isinstance(p, torch.Tensor) and p.dtype == torch.float64 for p in params)
    return torch.float64 if f64 else torch.float32


_MAX_ELEMENTS = 2**31  # a kernel tensor larger than this (8 GiB of float32) is refused up front


def _check_elements(n: int, name: str, value: torch.Tensor, what: str) -> None:
    """A clear error, instead of an allocator failure, for parameters that give absurd kernels."""
    if n > _MAX_ELEMENTS:
        raise ValueError(f"{name}={float(value.detach().max()):g} gives {what} of {n:,} values (more than "
                         f"{_MAX_ELEMENTS:,}), a kernel far wider than any image: use a smaller {name}")


def _params(value: object, name: str, batch: int | None, device: torch.device | None,
            minimum: float | None = 0.0) -> torch.Tensor:
    """A kernel parameter as a float64 ``(B,)`` tensor (Python numbers are not rounded to float32:
    kernel sizes and float64 kernels follow the exact value)."""
    t = per_sample(value, name, batch, device=device, dtype=torch.float64, minimum=minimum)
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one value (one per image); got an empty tensor")
    return t


def _by_unique(params: tuple[torch.Tensor, ...], family: str, extra: tuple, build) -> torch.Tensor:
    """Build kernels for the distinct parameter tuples only, cache them, and gather per image.

    ``build(*unique_params)`` returns kernels for the unique rows. Used when no gradient flows.
    """
    stacked = torch.stack([p.detach().double() for p in params], dim=1)  # (B, P)
    uniq, inverse = torch.unique(stacked.cpu(), dim=0, return_inverse=True)
    if uniq.shape[0] > _CACHE_MAX_DISTINCT:  # continuous draws: nothing to share, do not cache
        return build(*params)
    key = (family, extra, tuple(map(tuple, uniq.tolist())), params[0].device)
    cols = [uniq[:, j].to(params[0].device) for j in range(uniq.shape[1])]
    kern = _cached(key, lambda: build(*cols))
    if uniq.shape[0] == stacked.shape[0] and bool((inverse == torch.arange(len(inverse))).all()):
        return kern.clone()  # never the cached tensor itself: a caller may change its result in place
    return kern.index_select(0, inverse.to(kern.device))


# ----------------------------------------------------------------------------------------- Gaussian
def _gauss1d(sigma: torch.Tensor, radii: torch.Tensor, R: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(-R, R + 1, device=sigma.device, dtype=dtype)  # (K,)
    s = sigma.to(dtype)
    zero = s <= 0
    safe = torch.where(zero, torch.ones_like(s), s)
    w = torch.exp(-0.5 * (x[None, :] / safe[:, None]) ** 2)
    inside = x.abs()[None, :] <= radii.to(device=sigma.device)[:, None].to(dtype)
    w = torch.where(inside, w, torch.zeros_like(w))
    w = w / w.sum(dim=1, keepdim=True)
    delta = (x == 0).to(dtype)[None, :].expand_as(w)
    return torch.where(zero[:, None], delta, w)


def gaussian1d(
    sigma: float | torch.Tensor,
    *,
    truncate: float = 3.0,
    radius: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sampled, window-normalised 1-D Gaussian kernels, one per image.

    Args:
        sigma: standard deviation in pixels, ``>= 0``; a number or a tensor of shape ``(B,)``.
            ``sigma == 0`` gives the identity (a unit impulse).
        truncate: each kernel's radius is ``ceil(truncate * sigma)``; taps beyond are zero.
        radius: half-width ``R`` of the returned tensor (default: the largest radius in the batch).
        dtype, device: of the result (default: float32, or float64 if ``sigma`` is float64).

    Returns:
        Tensor of shape ``(B, 2R + 1)``; row ``i`` sums to 1 over its own support.

    Example:
        >>> import blurkit as bk
        >>> k = bk.kernels.gaussian1d(torch.tensor([0.0, 1.0]), truncate=2.0)
        >>> k.shape
        torch.Size([2, 5])
    """
    truncate = check_truncate(truncate)
    dev = torch.device(device) if device is not None else None
    s = _params(sigma, "sigma", None, dev if dev is not None else
                (sigma.device if isinstance(sigma, torch.Tensor) else None))
    dt = _float_dtype(dtype, sigma)
    radii = radius_from(s, truncate)
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, numbers.Integral)):
        raise TypeError(f"radius must be an integer (the half-width of the returned tensor) or None; "
                        f"got {radius!r}")
    _check_elements(s.shape[0] * (2 * int(radii.max()) + 1), "sigma", s, "kernels")
    R = int(radii.max()) if radius is None else int(radius)
    if R < int(radii.max()):
        raise ValueError(f"radius must be >= the largest kernel radius ceil(truncate*sigma) = "
                         f"{int(radii.max())}; got {radius}")
    if _needs_grad(s):
        return _gauss1d(s, radii, R, dt)
    return _by_unique((s,), "gauss1d", (truncate, R, dt),
                      lambda u: _gauss1d(u, radius_from(u, truncate), R, dt))


def _cos_sin(angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``angle`` degrees in float64, exactly 0 / +-1 at multiples of 90 degrees (so a
    90-degree rotation swaps the axes exactly); the gradient is that of cos and sin everywhere."""
    th = torch.deg2rad(angle.double())
    c, s = torch.cos(th), torch.sin(th)
    on_axis = (angle.detach().double().remainder(90.0) == 0)
    if bool(on_axis.any()):
        c = c + (torch.where(on_axis, c.detach().round(), c.detach()) - c.detach())
        s = s + (torch.where(on_axis, s.detach().round(), s.detach()) - s.detach())
    return c, s


# Below this standard deviation (px) a Gaussian at an oblique angle falls between the pixel centres.
_OBLIQUE_MIN_SIGMA = 0.5


def _oblique_floor(sx: torch.Tensor, sy: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmas as sampled: at angles that are not multiples of 90 degrees, a point-sampled Gaussian
    narrower than half a pixel falls between the pixel centres (a line at 30 degrees with
    ``sigma_y = 0`` would keep only the centre pixel), so each sigma is raised to
    ``min(0.5, max(sigma, sigma_y))``: a thin line stays a continuous line, and ``sigma = sigma_y = 0``
    stays the identity. Axis-aligned kernels are sampled as given."""
    oblique = angle.detach().double().remainder(90.0) != 0
    if not bool(oblique.any()):
        return sx, sy
    floor = torch.minimum(torch.maximum(sx, sy).detach(), torch.full_like(sx, _OBLIQUE_MIN_SIGMA))
    floor = torch.where(oblique, floor, torch.zeros_like(floor))
    return torch.maximum(sx, floor), torch.maximum(sy, floor)


def _ellipse_radii(sx: torch.Tensor, sy: torch.Tensor, angle: torch.Tensor, truncate: float):
    c, s = _cos_sin(angle.detach())
    ex = torch.sqrt((sx.detach().double() * c) ** 2 + (sy.detach().double() * s) ** 2)
    ey = torch.sqrt((sx.detach().double() * s) ** 2 + (sy.detach().double() * c) ** 2)
    return radius_from(ex, truncate), radius_from(ey, truncate)


def _gauss2d(sx, sy, angle, truncate: float, Ry: int, Rx: int, dtype) -> torch.Tensor:
    dev = sx.device
    rx, ry = _ellipse_radii(sx, sy, angle, truncate)
    y = torch.arange(-Ry, Ry + 1, device=dev, dtype=dtype)
    x = torch.arange(-Rx, Rx + 1, device=dev, dtype=dtype)
    c, s = _cos_sin(angle)
    c, s = c.to(dtype)[:, None, None], s.to(dtype)[:, None, None]
    X, Y = x[None, None, :], y[None, :, None]
    # Rotate the display-space point into the kernel frame: image rows grow downwards, so the
    # display y coordinate is -Y.
    u = X * c - Y * s
    v = X * s + Y * c
    sxx = sx.to(dtype).clamp_min(1e-6)[:, None, None]
    syy = sy.to(dtype).clamp_min(1e-6)[:, None, None]
    w = torch.exp(-0.5 * ((u / sxx) ** 2 + (v / syy) ** 2))
    inside = (x.abs()[None, None, :] <= rx.to(dev)[:, None, None].to(dtype)) & \
             (y.abs()[None, :, None] <= ry.to(dev)[:, None, None].to(dtype))
    w = torch.where(inside, w, torch.zeros_like(w))
    return w / w.sum(dim=(1, 2), keepdim=True)


def gaussian(
    sigma: float | torch.Tensor,
    sigma_y: float | torch.Tensor | None = None,
    angle: float | torch.Tensor = 0.0,
    *,
    truncate: float = 3.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """2-D Gaussian kernels: isotropic, anisotropic and rotated, one per image.

    The kernel is ``exp(-u^2 / (2 sigma^2) - v^2 / (2 sigma_y^2))`` where ``(u, v)`` are pixel
    offsets rotated by ``angle`` (degrees, counter-clockwise as displayed), sampled on the integer
    grid inside the bounding box of the truncated ellipse (half-widths
    ``ceil(truncate * sqrt(sigma^2 cos^2 + sigma_y^2 sin^2))`` and the like), normalised to sum 1.
    At ``angle=0`` it is exactly the outer product of two :func:`gaussian1d` kernels, and at
    multiples of 90 degrees exactly the same with the axes swapped as the angle says. At other
    (oblique) angles a Gaussian narrower than half a pixel would fall between the pixel centres, so
    there each sigma is sampled as at least ``min(0.5, max(sigma, sigma_y))`` px: ``sigma_y=0`` gives
    a continuous thin line, not the identity, and ``sigma = sigma_y = 0`` stays the identity.

    Args:
        sigma: standard deviation along the (rotated) x axis, pixels, ``>= 0``; number or ``(B,)``.
        sigma_y: along the (rotated) y axis (default: ``sigma``).
        angle: rotation in degrees; number or ``(B,)``.
        truncate: support in standard deviations (radius ``ceil(truncate * sigma)``).
        dtype, device: of the result.

    Returns:
        Tensor ``(B, kh, kw)`` with odd ``kh, kw``, each kernel summing to 1.

    Example:
        >>> k = bk.kernels.gaussian(2.0, sigma_y=0.5, angle=30.0)
        >>> k.sum().item()  # doctest: +ELLIPSIS
        1.0...
    """
    truncate = check_truncate(truncate)
    dev = torch.device(device) if device is not None else None
    ref = next((p for p in (sigma, sigma_y, angle) if isinstance(p, torch.Tensor) and p.dim() == 1), None)
    B = ref.shape[0] if ref is not None else None
    if dev is None:
        dev = next((p.device for p in (sigma, sigma_y, angle) if isinstance(p, torch.Tensor)), None)
    sx = _params(sigma, "sigma", B, dev)
    B = sx.shape[0]
    sy = sx if sigma_y is None else _params(sigma_y, "sigma_y", B, dev)
    an = _params(angle, "angle", B, dev, minimum=None)
    dt = _float_dtype(dtype, sigma, sigma_y, angle)
    sx, sy = _oblique_floor(sx, sy, an)
    rx, ry = _ellipse_radii(sx, sy, an, truncate)
    _check_elements(sx.shape[0] * (2 * int(rx.max()) + 1) * (2 * int(ry.max()) + 1), "sigma",
                    torch.maximum(sx, sy), "2-D kernels")
    Rx, Ry = int(rx.max()), int(ry.max())
    if _needs_grad(sx, sy, an):
        return _gauss2d(sx, sy, an, truncate, Ry, Rx, dt)
    return _by_unique((sx, sy, an), "gauss2d", (truncate, Ry, Rx, dt),
                      lambda a, b, c: _gauss2d(a, b, c, truncate, Ry, Rx, dt))


# -------------------------------------------------------------------------------------------- box
def box1d(size: int | torch.Tensor, *, dtype: torch.dtype = torch.float32,
          device: torch.device | str | None = None) -> torch.Tensor:
    """1-D box (moving average) kernels of odd ``size``, one per image, zero-padded to the largest.

    Args:
        size: odd positive integer(s): a number or a tensor ``(B,)``.

    Returns:
        Tensor ``(B, K)``, ``K = max(size)``; row ``i`` has ``size_i`` centred taps of ``1/size_i``.
    """
    dev = torch.device(device) if device is not None else (size.device if isinstance(size, torch.Tensor)
                                                             else None)
    n = odd_size(size, "size", None).to(dev)
    K = int(n.max())
    x = torch.arange(-(K // 2), K // 2 + 1, device=dev)
    inside = x.abs()[None, :] <= (n[:, None] // 2)
    return inside.to(dtype) / n[:, None].to(dtype)


def box(size: int | torch.Tensor, *, dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None) -> torch.Tensor:
    """2-D square box kernels ``(B, K, K)`` of odd ``size`` (the outer product of :func:`box1d`)."""
    k = box1d(size, dtype=dtype, device=device)
    return k[:, :, None] * k[:, None, :]


# ------------------------------------------------------------------------------------------- disk
def _disk(radius: torch.Tensor, R: int, dtype) -> torch.Tensor:
    x = torch.arange(-R, R + 1, device=radius.device, dtype=dtype)
    d = torch.sqrt(x[None, :, None] ** 2 + x[None, None, :] ** 2)
    w = (radius.to(dtype)[:, None, None] + 0.5 - d).clamp(0.0, 1.0)
    return w / w.sum(dim=(1, 2), keepdim=True)


def disk(radius: float | torch.Tensor, *, dtype: torch.dtype | None = None,
         device: torch.device | str | None = None) -> torch.Tensor:
    """Anti-aliased disk (pillbox, defocus) kernels of sub-pixel radius, one per image.

    Each pixel's weight is its approximate coverage by the disk, ``clip(radius + 0.5 - d, 0, 1)``
    with ``d`` the pixel centre's distance from the kernel centre, so the kernel changes smoothly
    (and differentiably) with ``radius``; ``radius == 0`` is the identity.

    Args:
        radius: disk radius in pixels, ``>= 0``; a number or ``(B,)``.

    Returns:
        Tensor ``(B, K, K)`` with ``K = 2 * floor(max(radius) + 0.5) + 1``, each summing to 1.
    """
    dev = torch.device(device) if device is not None else (radius.device if isinstance(radius, torch.Tensor)
                                                             else None)
    r = _params(radius, "radius", None, dev)
    dt = _float_dtype(dtype, radius)
    R = int(math.floor(float(r.detach().max()) + 0.5))
    _check_elements(r.shape[0] * (2 * R + 1) ** 2, "radius", r, "2-D kernels")
    if _needs_grad(r):
        return _disk(r, R, dt)
    return _by_unique((r,), "disk", (R, dt), lambda u: _disk(u, R, dt))


# ----------------------------------------------------------------------------------------- motion
def _motion(length: torch.Tensor, angle: torch.Tensor, R: int, dtype) -> torch.Tensor:
    dev = length.device
    B = length.shape[0]
    # Each image's segment is sampled at its own density (~4 samples per pixel): row i depends on
    # (length_i, angle_i) only, never on the other images of the batch.
    m_i = (torch.ceil(4 * length.detach().double()).long() + 1).clamp_min(2)  # samples per image
    M = int(m_i.max())
    j = torch.arange(M, device=dev)
    valid = j[None, :] < m_i[:, None]
    step = 1.0 / (m_i - 1).to(dtype)  # (B,)
    t = torch.where(valid, -0.5 + j[None, :].to(dtype) * step[:, None], torch.zeros((), dtype=dtype, device=dev))
    ends = (j[None, :] == 0) | (j[None, :] == (m_i[:, None] - 1))
    tw = torch.where(valid, torch.where(ends, 0.5 * step[:, None], step[:, None]),
                     torch.zeros((), dtype=dtype, device=dev))  # trapezoid rule: uniform density
    c, s = _cos_sin(angle)
    L = length.to(dtype)
    px = (L[:, None] * t) * c.to(dtype)[:, None]
    py = -(L[:, None] * t) * s.to(dtype)[:, None]  # rows grow downwards
    K = 2 * R + 1
    x0, y0 = torch.floor(px.detach()), torch.floor(py.detach())
    fx, fy = px - x0, py - y0
    out = torch.zeros(B, K * K, device=dev, dtype=dtype)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = (x0 + dx).long() + R
            yi = (y0 + dy).long() + R
            w = wx * wy * tw
            ok = (xi >= 0) & (xi < K) & (yi >= 0) & (yi < K)
            idx = (yi.clamp(0, K - 1) * K + xi.clamp(0, K - 1))
            out = out.scatter_add(1, idx, torch.where(ok, w, torch.zeros_like(w)))
    out = out.view(B, K, K)
    return out / out.sum(dim=(1, 2), keepdim=True)


def motion(length: float | torch.Tensor, angle: float | torch.Tensor = 0.0, *,
           dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Straight-line motion-blur kernels, sub-pixel and anti-aliased, one per image.

    The kernel is a uniform line segment of ``length`` pixels through the kernel centre at
    ``angle`` degrees (counter-clockwise as displayed), integrated with bilinear (tent) weights, so
    a 7.3 px streak at 17 degrees is exactly that; its centroid is the centre pixel (the blur does
    not shift the image). It is differentiable with respect to ``length`` and ``angle``.

    Args:
        length: streak length in pixels, ``>= 0`` (0 is the identity); number or ``(B,)``.
        angle: direction in degrees; number or ``(B,)``.

    Returns:
        Tensor ``(B, K, K)``, ``K = 2 * ceil(max(length) / 2) + 1``, each summing to 1.
    """
    ref = next((p for p in (length, angle) if isinstance(p, torch.Tensor) and p.dim() == 1), None)
    B = ref.shape[0] if ref is not None else None
    dev = torch.device(device) if device is not None else next(
        (p.device for p in (length, angle) if isinstance(p, torch.Tensor)), None)
    L = _params(length, "length", B, dev)
    an = _params(angle, "angle", L.shape[0], dev, minimum=None)
    dt = _float_dtype(dtype, length, angle)
    R = int(math.ceil(float(L.detach().max()) / 2 - 1e-9))
    _check_elements(L.shape[0] * (2 * R + 1) ** 2, "length", L, "2-D kernels")
    if _needs_grad(L, an):
        return _motion(L, an, R, dt)
    return _by_unique((L, an), "motion", (R, dt), lambda a, b: _motion(a, b, R, dt))


def _check_kernel_tensor(kernels: object, name: str = "kernels") -> torch.Tensor:
    """Validate user kernels: float tensor ``(kh, kw)`` or ``(B, kh, kw)`` with odd sizes."""
    if not isinstance(kernels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, kh, kw) or (kh, kw); "
                        f"got {type(kernels).__name__}")
    if not kernels.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {kernels.dtype}")
    if kernels.dim() == 2:
        kernels = kernels.unsqueeze(0)
    if kernels.dim() != 3:
        raise ValueError(f"{name} must have shape (B, kh, kw) or (kh, kw); got shape {tuple(kernels.shape)}")
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0 or kh == 0 or kw == 0:
        raise ValueError(f"{name} must have odd sizes (kh, kw) so that the kernel has a centre; "
                         f"got {kh}x{kw}")
    if not bool(torch.isfinite(kernels.detach()).all()):
        raise ValueError(f"{name} must be finite; got {describe(kernels)}")
    return kernels
