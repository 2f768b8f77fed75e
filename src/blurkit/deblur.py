"""Undo blur: Wiener and Richardson-Lucy deconvolution, blind deblurring, and a deblurring model front.

Every function works on batches ``(B, C, H, W)`` (or one image ``(C, H, W)``) on CPU or GPU, with
one blur kernel per image, and is differentiable with respect to the images (and, for
:func:`wiener`, the kernels and the balance).

Kernels are *correlation* kernels, exactly as :func:`blurkit.filter2d` uses them: the blur model
is ``blurred = bk.filter2d(sharp, kernels)``. For the point-symmetric kernels of
:mod:`blurkit.kernels` (Gaussian, box, disk, motion) correlation and convolution agree; for other
kernels, pass the kernel that :func:`~blurkit.filter2d` would use (scikit-image and scipy take the
*convolution* kernel, which is the correlation kernel flipped: ``k.flip(-2, -1)``).

Functions
---------
wiener            Wiener-Hunt deconvolution in the Fourier domain (Laplacian or identity regulariser).
richardson_lucy   Richardson-Lucy iterations (Poisson maximum likelihood), batched.
blind             Estimate a Gaussian or motion kernel per image, then deconvolve.
DeblurFront       ``nn.Module``: deblur, then classify (optionally learnable).

Borders
-------
The Fourier transform treats an image as periodic, so a plain FFT deconvolution (scikit-image's
``restoration.wiener``) sees a jump where the right edge wraps onto the left one and rings in a
frame around the result. :func:`wiener` instead pads each image by a margin of ``4 r`` pixels
(``r`` the kernel radius) with the chosen border rule (default ``"reflect"``, the engine's default
blur border), then fades the outer half of that margin to the image mean with a raised-cosine
taper, so the padded image is continuous across the wrap. The picture itself is never modified;
the margin is cropped off at the end. ``border="circular"`` turns this off (scikit-image's model).
:func:`richardson_lucy` convolves with :func:`blurkit.filter2d` and its ``border`` rule directly.

References
----------
* F. Orieux, J.-F. Giovannelli, T. Rodet, "Bayesian estimation of regularization and point spread
  function parameters for Wiener-Hunt deconvolution", J. Opt. Soc. Am. A 27 (2010) 1593-1607.
* W. H. Richardson, "Bayesian-based iterative method of image restoration", JOSA 62 (1972) 55-59;
  L. B. Lucy, "An iterative technique for the rectification of observed distributions",
  Astron. J. 79 (1974) 745-754.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels as _kern
from ._validation import all_finite, check_border, check_images, describe, per_sample, restore_batch
from .filtering import _hinted_empty, _shared, filter2d, pad, sepfilter2d

__all__ = ["wiener", "richardson_lucy", "blind", "BlurEstimate", "DeblurFront", "REGULARISERS"]

REGULARISERS = ("laplacian", "identity")
METHODS = ("wiener", "richardson_lucy")


# ------------------------------------------------------------------------------------------ helpers
def _work_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_finite(x4: torch.Tensor) -> None:
    """Deconvolution spreads one NaN or inf over the whole image: refuse it up front."""
    if not all_finite(x4):
        bad = int((~torch.isfinite(x4.detach())).sum())
        raise ValueError(f"images must be finite; got {bad} NaN or infinite value(s) (deblurring would spread "
                         "them over the whole image)")


def _to_output(y: torch.Tensor, images: torch.Tensor, clip: bool) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return y.round().clamp(0, 255).to(torch.uint8)
    if clip:
        y = y.clamp(0.0, 1.0)
    return y.to(images.dtype)


def _check_blur_kernels(kernels: object, batch: int, name: str = "kernels") -> torch.Tensor:
    """Validate blur kernels: ``(kh, kw)`` or ``(B, kh, kw)``, odd sizes, finite, >= 0, each summing to 1."""
    k = _kern._check_kernel_tensor(kernels, name)
    if k.shape[0] not in (1, batch):
        raise ValueError(f"{name} has {k.shape[0]} kernels but images has {batch} images; give one kernel "
                         f"of shape (kh, kw) or one per image, shape ({batch}, kh, kw)")
    kd = k.detach()
    tol = 1e-2 if kd.dtype in (torch.float16, torch.bfloat16) else 1e-3
    scale = kd.abs().amax(dim=(1, 2)).clamp_min(1e-30)
    mins = kd.amin(dim=(1, 2))
    bad = mins < -1e-6 * scale
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} must be non-negative blur kernels; kernel {i} has a weight of "
                         f"{float(mins[i]):.3g} (a blur kernel is a distribution of light: weights >= 0)")
    sums = kd.sum(dim=(1, 2))
    bad = (sums - 1.0).abs() > tol
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} must be normalised (each kernel sums to 1); kernel {i} sums to "
                         f"{float(sums[i]):.6g}. Normalise with k / k.sum(dim=(-2, -1), keepdim=True)")
    return k


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def _support_radius(k: torch.Tensor) -> tuple[int, int]:
    """Half-height and half-width of the non-zero support of a batch of centred kernels.

    Kernels that require grad (learnable) keep their whole shape: a tap that is 0 now still gets its
    gradient, and the padding margin (which follows the support) does not jump when a tap leaves 0;
    their results are the same in and out of ``torch.no_grad``.
    """
    kh, kw = k.shape[-2:]
    if k.requires_grad:
        return kh // 2, kw // 2
    nz = k.detach().abs().amax(dim=0) > 0
    rows = nz.any(dim=1).nonzero()
    cols = nz.any(dim=0).nonzero()
    if rows.numel() == 0:
        return 0, 0
    ry = int(max(kh // 2 - rows.min(), rows.max() - kh // 2))
    rx = int(max(kw // 2 - cols.min(), cols.max() - kw // 2))
    return ry, rx


def _fast_size(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _dft_matrix(n: int, k: int, half: bool, device: torch.device, cdt: torch.dtype) -> torch.Tensor:
    """``E[u, p] = exp(+2 pi i u (p - k // 2) / n)`` for ``u < n`` (or ``u <= n // 2`` if ``half``)."""
    p = torch.arange(k, device=device, dtype=torch.float64) - k // 2
    u = torch.arange(n // 2 + 1 if half else n, device=device, dtype=torch.float64)
    phase = 2 * math.pi * torch.outer(u, p).remainder(n) / n
    return torch.polar(torch.ones_like(phase), phase).to(cdt)


def _dft_1d(h: torch.Tensor, n: int, half: bool) -> torch.Tensor:
    """``sum_p h[:, p] exp(+2 pi i u (p - k // 2) / n)``: ``(B, k)`` real -> ``(B, n or n // 2 + 1)`` complex.

    Two real matrix products (real BLAS) with the cached tables of :func:`_cos_sin`, then combined.
    """
    c, s = _cos_sin(n, h.shape[1], half, h.dtype, h.device)
    return torch.complex(h @ c, h @ s)


def _transfer(k: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """Half-spectrum transfer function ``(B, hp, wp // 2 + 1)`` of correlation kernels ``(B, kh, kw)``.

    For ``y = filter2d(x, k)`` (circular border), ``rfft2(y) = H * rfft2(x)`` with
    ``H[u, v] = sum_{p, q} k[p, q] exp(+2 pi i (u p / hp + v q / wp))`` (offsets ``p, q`` from the
    kernel centre). Computed as small matrix products (cheaper than zero-padded FFTs), as an outer
    product of two 1-D transforms when every kernel is separable.
    """
    kh, kw = k.shape[-2:]
    sep = _rank1(k)
    if sep is not None:
        kx, ky = sep
        hy, hx = _flush(_dft_1d(ky, hp, False)), _flush(_dft_1d(kx, wp, True))
        return _flush(hy[:, :, None] * hx[:, None, :])
    cdt = torch.complex128 if k.dtype == torch.float64 else torch.complex64
    ey = _dft_matrix(hp, kh, False, k.device, cdt)               # (hp, kh)
    ex = _dft_matrix(wp, kw, True, k.device, cdt).transpose(0, 1)  # (kw, wr)
    return _flush(ey @ k.to(cdt) @ ex)


def _flush(h: torch.Tensor) -> torch.Tensor:
    """Set negligible transfer-function values to exactly 0.

    A Gaussian's transfer function falls to ~1e-35 at high frequencies; products and squares of such
    values are subnormal floats, which x86 CPUs process up to ~100x slower. Values below 1e-18
    (float32; 1e-150 for float64) are far below anything a Wiener filter can use, so they are zeroed
    (their squares then stay normal or exactly 0).
    """
    tiny = 1e-150 if h.dtype == torch.complex128 else 1e-18
    hr = torch.view_as_real(h)
    return torch.view_as_complex(torch.where(hr.abs() < tiny, torch.zeros((), dtype=hr.dtype, device=hr.device), hr))


def _regulariser_power(reg: object, hp: int, wp: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``|R|^2`` on the half spectrum ``(hp, wp // 2 + 1)`` (the Laplacian's is cached: do not modify it)."""
    if isinstance(reg, str):
        if reg == "laplacian":
            return _laplacian_power(hp, wp, dtype, device)
        if reg == "identity":
            return torch.ones(hp, wp // 2 + 1, device=device, dtype=dtype)
        raise ValueError(f"reg must be one of {', '.join(map(repr, REGULARISERS))} or a 2-D tensor "
                         f"(the regulariser's impulse response); got {reg!r}")
    if isinstance(reg, torch.Tensor):
        if reg.dim() != 2 or reg.shape[0] % 2 == 0 or reg.shape[1] % 2 == 0 or not reg.is_floating_point():
            raise ValueError(f"reg as a tensor must be a floating 2-D impulse response with odd sizes; "
                             f"got {describe(reg)}")
        if reg.shape[0] > hp or reg.shape[1] > wp:
            raise ValueError(f"reg ({reg.shape[0]}x{reg.shape[1]}) is larger than the padded image "
                             f"({hp}x{wp})")
        r = _transfer(reg.to(device=device, dtype=dtype)[None], hp, wp)[0]
        return (r.real ** 2 + r.imag ** 2).to(dtype)
    raise TypeError(f"reg must be one of {', '.join(map(repr, REGULARISERS))} or a 2-D tensor; "
                    f"got {type(reg).__name__}")


def _pad(x: torch.Tensor, padding: tuple[int, int, int, int], border: str) -> torch.Tensor:
    """:func:`blurkit.pad`, through ``F.pad`` where torch supports the mode and size (faster on CPU)."""
    left, right, top, bottom = padding
    H, W = x.shape[-2:]
    if border == "constant" or (border in ("replicate", "circular") and max(left, right) <= W
                                and max(top, bottom) <= H) or (border == "reflect" and max(left, right) < W
                                                               and max(top, bottom) < H):
        return F.pad(x, padding, mode=border)
    return pad(x, padding, border)


def _taper_weights(n_pad: int, t: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Raised-cosine weights along one padded axis: 0 at the wrap-around seam, 1 from ``t`` px inwards
    (all 1 for ``t <= 0``: no taper, as :func:`_taper_strips` does)."""
    if t <= 0:
        return torch.ones(n_pad, device=device, dtype=dtype)
    i = torch.arange(n_pad, device=device, dtype=torch.float64)
    d = torch.minimum(i, n_pad - 1 - i)
    w = 0.5 - 0.5 * torch.cos(math.pi * torch.clamp((d + 0.5) / max(t, 1), 0.0, 1.0))
    return w.to(dtype)


def _taper_strips(yp: torch.Tensor, mean: torch.Tensor, ty: int, tx: int) -> None:
    """Fade the outer ``ty`` rows and ``tx`` columns of padded images to ``mean``, in place.

    Same weights as ``lerp(mean, yp, wy[:, None] * wx[None, :])`` with the raised-cosine
    :func:`_taper_weights`, but only the strips where a weight is below 1 are touched.
    """
    hp, wp = yp.shape[-2:]
    wy = _taper_weights(hp, ty, yp.device, yp.dtype)
    wx = _taper_weights(wp, tx, yp.device, yp.dtype)
    if ty > 0:
        for rows in (slice(0, ty), slice(hp - ty, hp)):
            yp[..., rows, :].sub_(mean).mul_(wy[rows, None] * wx[None, :]).add_(mean)
    if tx > 0:
        mid = slice(ty, hp - ty)
        for cols in (slice(0, tx), slice(wp - tx, wp)):
            yp[..., mid, cols].sub_(mean).mul_(wx[cols]).add_(mean)


@functools.lru_cache(maxsize=32)
def _cos_sin(n: int, k: int, half: bool, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``cos`` and ``sin`` of ``2 pi u p / n``, shape ``(k, n)`` (or ``(k, n // 2 + 1)`` if ``half``),
    ``p`` the tap offset from the kernel centre. Cached: callers must not modify them."""
    p = torch.arange(k, device=device, dtype=torch.float64) - k // 2
    u = torch.arange(n // 2 + 1 if half else n, device=device, dtype=torch.float64)
    phase = 2 * math.pi * torch.outer(p, u).remainder(n) / n
    return torch.cos(phase).to(dtype), torch.sin(phase).to(dtype)


@functools.lru_cache(maxsize=16)
def _laplacian_power(hp: int, wp: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``|R|^2`` of the 5-point Laplacian on the half spectrum ``(hp, wp // 2 + 1)`` (cached, read-only)."""
    u = torch.arange(hp, device=device, dtype=torch.float64)[:, None]
    v = torch.arange(wp // 2 + 1, device=device, dtype=torch.float64)[None, :]
    lap = 4.0 - 2.0 * torch.cos(2 * math.pi * u / hp) - 2.0 * torch.cos(2 * math.pi * v / wp)
    return (lap ** 2).to(dtype)


def _point_symmetric(k: torch.Tensor) -> bool:
    """True if every kernel equals itself rotated by 180 degrees (then its transfer function is real)."""
    kd = k.detach()
    tol = (1e-12 if kd.dtype == torch.float64 else 1e-6) * float(kd.abs().amax())
    return float((kd - kd.flip(-2, -1)).abs().amax()) <= tol


def _real_transfer(k: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """Real half-spectrum transfer function ``(n, hp, wp // 2 + 1)`` of point-symmetric kernels ``(n, kh, kw)``.

    ``H[u, v] = sum_{p, q} k[p, q] cos(2 pi (u p / hp + v q / wp))`` = ``Cy k Cx^T - Sy k Sx^T``: two
    small real matrix products per kernel, or an outer product of two 1-D cosine transforms when
    every kernel is separable (then negligible factors are flushed to 0, see :func:`_flush`).
    """
    kh, kw = k.shape[-2:]
    cy, sy = _cos_sin(hp, kh, False, k.dtype, k.device)      # (kh, hp)
    cx, sx = _cos_sin(wp, kw, True, k.dtype, k.device)       # (kw, wr)
    sep = _rank1(k)
    if sep is not None:
        kx, ky = sep
        # Flushing each factor below sqrt(1e-18) keeps every product >= 1e-18 or exactly 0: no subnormal
        # floats in the filter, the spectrum or the inverse FFT (they made it several times slower).
        tiny = 1e-75 if k.dtype == torch.float64 else 1e-9
        hy, hx = ky @ cy, kx @ cx
        hy, hx = hy.masked_fill_(hy.abs() < tiny, 0.0), hx.masked_fill_(hx.abs() < tiny, 0.0)
        return hy[:, :, None] * hx[:, None, :]
    a = torch.cat((k @ cx, k @ sx), dim=1)                   # (n, 2 kh, wr)
    return torch.cat((cy, -sy), dim=0).transpose(0, 1) @ a   # (hp, 2 kh) @ (n, 2 kh, wr)


def _wiener_real(yp: torch.Tensor, k: torch.Tensor, bal: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Wiener filtering of padded images ``(B, C, hp, wp)`` with point-symmetric kernels, no autograd.

    The filter ``H / (H^2 + balance |R|^2)`` is real, written ``1 / (H + balance |R|^2 / H)`` (no
    squares of tiny values, which would be slow subnormal floats; ``H = 0`` gives 0), built once
    per distinct (kernel, balance), and applied to the spectrum in place.
    Returns the spectrum ``(B, C, hp, wp // 2 + 1)``.
    """
    hp, wp = yp.shape[-2:]
    if k.shape[0] > 1 and _shared(k):
        k = k[:1]
    if k.shape[0] == 1 and bal.shape[0] > 1 and bool((bal == bal[:1]).all()):
        bal = bal[:1]
    Hr = _real_transfer(k.contiguous(), hp, wp)                 # (n, hp, wr)
    G = torch.div(R2 * bal[:, None, None], Hr)
    G = G.add_(Hr).reciprocal_()
    spec = torch.fft.rfft2(yp)
    return spec.mul_(G[:, None])  # complex *= real (broadcasting G over the real view's last axis is ~10x slower)


# ------------------------------------------------------------------------------------------- Wiener
_WIENER_CHUNK_BYTES = 24 << 20  # working set of one group of images in the CPU fast path


def wiener(
    images: torch.Tensor,
    kernels: torch.Tensor,
    balance: float | torch.Tensor = 0.01,
    *,
    reg: str | torch.Tensor = "laplacian",
    border: str = "reflect",
    margin: int | None = None,
    clip: bool = False,
) -> torch.Tensor:
    """Wiener-Hunt deconvolution of every image with its own blur kernel (Fourier domain).

    Solves ``argmin_x |filter2d(x, k) - y|^2 + balance * |reg * x|^2`` in closed form:
    ``X = conj(H) Y / (|H|^2 + balance |R|^2)``, the filter of ``skimage.restoration.wiener``
    (whose default regulariser is also the 5-point Laplacian). Linear in the image and the identity
    on constant images, so it works on normalised tensors (any mean/std) as well as on [0, 1] data.

    Args:
        images: blurred images ``(B, C, H, W)`` or ``(C, H, W)``; float (any range) or uint8.
        kernels: the blur, ``(B, kh, kw)`` (one per image) or ``(kh, kw)`` (shared): correlation
            kernels as used by :func:`blurkit.filter2d` (any :mod:`blurkit.kernels` family), odd sizes,
            non-negative, each summing to 1.
        balance: regularisation weight ``> 0`` (noise-to-signal trade-off), a number or ``(B,)``.
            Larger is smoother. With the Laplacian regulariser, [0, 1] images and noise of std ~0.01,
            0.003-0.03 suits Gaussian and defocus blur and ~0.1 long motion blur (docs/deblur.md).
        reg: ``"laplacian"`` (default, as scikit-image), ``"identity"`` (classic Wiener with a
            constant noise-to-signal ratio) or a 2-D tensor: the regulariser's impulse response.
        border: how the image is extended beyond its edges before the FFT (see the module docs):
            ``"reflect"`` (default), ``"symmetric"``, ``"replicate"``, ``"constant"`` (zeros) pad a margin
            and taper it; ``"circular"`` pads nothing (periodic images; scikit-image's behaviour).
        margin: padding per side in pixels (default ``max(4 r, 4)``, ``r`` the kernel radius; the
            padded size is then rounded up to a fast FFT length). Ignored for ``"circular"``.
        clip: clamp the result to ``[0, 1]`` (float images). uint8 results are always rounded and
            clamped to ``[0, 255]``.

    Returns:
        Deblurred images, with the shape, dtype and device of ``images``.

    Example:
        >>> x = torch.rand(4, 1, 64, 64)
        >>> k = bk.kernels.gaussian(torch.tensor([1.0, 1.5, 2.0, 3.0]))
        >>> sharp = bk.deblur.wiener(bk.filter2d(x, k), k, balance=0.002)
    """
    x4, squeezed = check_images(images)
    _check_finite(x4)
    check_border(border)
    _check_flag(clip, "clip")
    B, C, H, W = x4.shape
    k = _check_blur_kernels(kernels, B)
    # validated in float64 (a Python number is not rounded to float32 before a float64 deconvolution);
    # the working dtype follows the images, the kernels and a float64 balance *tensor*
    bal = per_sample(balance, "balance", B, device=x4.device, dtype=torch.float64, minimum=0.0, strict=True)
    wdt = _work_dtype(x4, k, balance if isinstance(balance, torch.Tensor) else None)
    y = x4.to(wdt)
    k = k.to(device=y.device, dtype=wdt)
    bal = bal.to(wdt)

    ry, rx = _support_radius(k)
    kh, kw = k.shape[-2:]
    k = k[:, kh // 2 - ry: kh // 2 + ry + 1, kw // 2 - rx: kw // 2 + rx + 1]
    if border == "circular":
        top = bottom = left = right = 0
        hp, wp = H, W
        if 2 * ry + 1 > H or 2 * rx + 1 > W:
            raise ValueError(f"kernels ({2 * ry + 1}x{2 * rx + 1} non-zero support) are larger than the "
                             f"images ({H}x{W}); use a border other than 'circular'")
    else:
        if margin is None:
            my, mx = max(4 * ry, 4), max(4 * rx, 4)
        else:
            if isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0:
                raise ValueError(f"margin must be an integer >= 0 (pixels per side) or None; got {margin!r}")
            my = mx = int(margin)
        hp, wp = _fast_size(H + 2 * my), _fast_size(W + 2 * mx)
        top, left = (hp - H) // 2, (wp - W) // 2
        bottom, right = hp - H - top, wp - W - left
    padded = border != "circular" and bool(top or left or bottom or right)
    grad = torch.is_grad_enabled() and (y.requires_grad or k.requires_grad or bal.requires_grad)
    if not grad and _point_symmetric(k):
        # Fast path (every kernel family of blurkit.kernels): real filter, taper on the margin strips only,
        # for padded images an inverse transform of the kept rows only, and on CPU a cache-sized group of
        # images at a time (smaller temporaries are reused by the allocator instead of being page-faulted
        # in afresh, and the FFT passes run in cache: about 2x faster than the whole batch at once).
        R2 = _regulariser_power(reg, hp, wp, y.device, wdt)
        out = torch.empty((B, C, H, W), dtype=wdt, device=y.device)
        chunk = B if y.device.type != "cpu" else max(1, min(B, _WIENER_CHUNK_BYTES // (
            6 * C * hp * wp * y.element_size())))
        for a in range(0, B, chunk):
            sl = slice(a, min(a + chunk, B))
            if padded:
                yp = _pad(y[sl], (left, right, top, bottom), border)
                _taper_strips(yp, y[sl].mean(dim=(-2, -1), keepdim=True), min(top, bottom) // 2,
                              min(left, right) // 2)
            else:
                yp = y[sl].contiguous()
            spec = _wiener_real(yp, k if k.shape[0] == 1 else k[sl], bal[sl], R2)
            if padded:
                rows = torch.fft.ifft(spec, dim=-2)[..., top: top + H, :]
                out[sl] = torch.fft.irfft(rows, n=wp, dim=-1)[..., left: left + W]
            else:
                torch.fft.irfft2(spec, s=(hp, wp), out=out[sl])
        return restore_batch(_to_output(out, x4, clip), squeezed)
    if border != "circular" and (top or left or bottom or right):
        yp = _pad(y, (left, right, top, bottom), border)
        ty, tx = min(top, bottom) // 2, min(left, right) // 2
        wgt = (_taper_weights(hp, ty, y.device, wdt)[:, None] * _taper_weights(wp, tx, y.device, wdt)[None, :])
        yp = torch.lerp(y.mean(dim=(-2, -1), keepdim=True), yp, wgt)
    else:
        yp = y

    # One transfer function per distinct kernel (a batch often shares a few kernels).
    if k.shape[0] > 1 and not (k.requires_grad and torch.is_grad_enabled()):
        uniq, inverse = torch.unique(k.reshape(k.shape[0], -1), dim=0, return_inverse=True)
        if uniq.shape[0] == k.shape[0]:  # all distinct: no gather
            Hf = _transfer(k, hp, wp)
        else:
            Hf = _transfer(uniq.reshape(-1, *k.shape[1:]), hp, wp)
            if uniq.shape[0] > 1:  # gather on the real view: complex index_select is slow on CPU
                Hf = torch.view_as_complex(torch.view_as_real(Hf)[inverse.to(Hf.device)])
    else:
        Hf = _transfer(k, hp, wp)
    R2 = _regulariser_power(reg, hp, wp, y.device, wdt)
    re, im = Hf.real, Hf.imag                                    # (B, hp, wr) each
    denom = torch.addcmul(torch.addcmul(re * re, im, im), bal[:, None, None], R2)
    filt = torch.complex(re / denom, -im / denom)                # conj(H) / (|H|^2 + balance |R|^2)
    spec = torch.fft.rfft2(yp)
    spec = spec.mul_(filt[:, None]) if not spec.requires_grad else spec * filt[:, None]
    out = torch.fft.irfft2(spec, s=(hp, wp))
    out = out[..., top: top + H, left: left + W].contiguous()
    return restore_batch(_to_output(out, x4, clip), squeezed)


# --------------------------------------------------------------------------------- Richardson-Lucy
def _rank1(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(kx, ky)`` with ``k = ky[:, :, None] * kx[:, None, :]`` if every kernel is separable, else None.

    A rank-1 kernel is the outer product of its marginals divided by its total, so the test costs
    one pass over the (small) kernels: every entry must match that product to within 1e-6 (float32;
    1e-12 for float64) of the kernel's largest entry.
    """
    if k.requires_grad and torch.is_grad_enabled():
        return None
    kd = k.detach()
    ky = kd.sum(dim=2)                                   # (n, kh): row sums
    tot = ky.sum(dim=1, keepdim=True)
    if bool((tot == 0).any()):
        return None
    kx = kd.sum(dim=1) / tot                             # (n, kw): column sums / total
    err = (kd - ky[:, :, None] * kx[:, None, :]).abs().amax(dim=(1, 2))
    tol = (1e-12 if kd.dtype == torch.float64 else 1e-6) * kd.abs().amax(dim=(1, 2))
    if bool((err > tol).any()):
        return None
    return kx, ky


def _check_num_iter(num_iter: object, batch: int) -> torch.Tensor:
    if isinstance(num_iter, bool):
        raise TypeError(f"num_iter must be an integer >= 1 or a tensor of shape (B,); got {num_iter!r}")
    if isinstance(num_iter, numbers.Integral):
        n = torch.full((batch,), int(num_iter), dtype=torch.int64)
    elif isinstance(num_iter, torch.Tensor) and num_iter.dim() <= 1 and not num_iter.is_complex():
        n = num_iter.detach().cpu().reshape(-1)
        if n.is_floating_point() and bool((n != n.round()).any()):
            raise ValueError(f"num_iter must hold integers; got {describe(num_iter)}")
        n = n.long()
        if n.numel() == 1:
            n = n.expand(batch)
        elif n.numel() != batch:
            raise ValueError(f"num_iter has {n.numel()} values but images has {batch} images; give one "
                             f"value or one per image")
    else:
        raise TypeError(f"num_iter must be an integer >= 1 or a tensor of shape (B,); got {num_iter!r}")
    if bool((n < 1).any()):
        raise ValueError(f"num_iter must be >= 1 (number of Richardson-Lucy iterations); got {describe(num_iter)}")
    return n


def _compiled_blurs(y: torch.Tensor, k: torch.Tensor, sep: tuple[torch.Tensor, torch.Tensor] | None,
                    border: str) -> tuple[Callable, Callable] | None:
    """Forward and adjoint blurs ``f(src, dst, images)`` of the batch slice ``images`` into ``dst``, through
    the engine's compiled direct kernels; None where the engine would not use them (no compiled
    library, autograd, kernels large enough that the FFT is cheaper)."""
    from . import filtering as _f

    if not _f._use_compiled(y, k):
        return None
    H, W = y.shape[-2:]
    if sep is not None:
        kx, ky = (t.contiguous() for t in sep)
        rx, ry = _f._support_1d(kx), _f._support_1d(ky)
        taps = float((2 * rx + 1).float().mean() + (2 * ry + 1).float().mean())
        if _f._choose("auto", y, taps, (H + ky.shape[1]) * (W + kx.shape[1]), True) != "direct":
            return None
        kxf, kyf = kx.flip(-1).contiguous(), ky.flip(-1).contiguous()

        def fwd(src: torch.Tensor, dst: torch.Tensor, i: slice) -> torch.Tensor:
            return _f._c_sep(src, kx[i], ky[i], rx[i], ry[i], border, 0.0, out=dst)

        def adj(src: torch.Tensor, dst: torch.Tensor, i: slice) -> torch.Tensor:
            return _f._c_sep(src, kxf[i], kyf[i], rx[i], ry[i], border, 0.0, out=dst)
        return fwd, adj
    k = k.contiguous()
    ry, rx = _f._support_2d(k)
    taps = float((k != 0).sum(dim=(1, 2)).float().mean())
    if _f._choose("auto", y, taps, (H + k.shape[1]) * (W + k.shape[2]), True) != "direct":
        return None
    kf = k.flip(-2, -1).contiguous()

    def fwd2(src: torch.Tensor, dst: torch.Tensor, i: slice) -> torch.Tensor:
        return _f._c_2d(src, k[i], ry[i], rx[i], border, 0.0, out=dst)

    def adj2(src: torch.Tensor, dst: torch.Tensor, i: slice) -> torch.Tensor:
        return _f._c_2d(src, kf[i], ry[i], rx[i], border, 0.0, out=dst)
    return fwd2, adj2


_RL_CHUNK_BYTES = 12 << 20  # images per pass of the compiled loop: its four buffers stay in the CPU's cache


def richardson_lucy(
    images: torch.Tensor,
    kernels: torch.Tensor,
    num_iter: int | torch.Tensor = 30,
    *,
    clip: bool = False,
    filter_epsilon: float | None = None,
    border: str = "reflect",
    init: str | float = "image",
    eps: float = 1e-12,
) -> torch.Tensor:
    """Richardson-Lucy deconvolution, every image with its own kernel and iteration count.

    Iterates ``x <- x * filter2d(y / filter2d(x, k), flip(k))``, the maximum-likelihood (EM)
    update for Poisson noise. The estimate stays non-negative and, with a circular border, keeps the
    total flux of ``y``. Convolutions run through :func:`blurkit.filter2d` (or
    :func:`blurkit.sepfilter2d` when every kernel is separable, e.g. axis-aligned Gaussians and
    boxes), which picks direct or FFT evaluation by cost. On CPU without autograd, where the engine
    would filter directly, its compiled kernels are called into reused buffers, a cache-sized group
    of images at a time (same results).

    Args:
        images: blurred images ``(B, C, H, W)`` or ``(C, H, W)``: non-negative intensities (e.g.
            [0, 1]); negative values (noise) are treated as 0. Normalised (mean/std) tensors must be
            mapped back to intensities first.
        kernels: correlation kernels ``(B, kh, kw)`` or ``(kh, kw)``, non-negative, summing to 1.
        num_iter: iterations ``>= 1``: an int or a ``(B,)`` integer tensor (per image).
        clip: clamp the result to ``[0, 1]`` (float images).
        filter_epsilon: if given, ratios where the re-blurred estimate is below it are set to 0
            (as scikit-image), suppressing noise amplification in dark regions.
        border: border rule of the convolutions (any :func:`blurkit.filter2d` border; ``"constant"``
            with zeros is scikit-image's behaviour).
        init: ``"image"`` (start from the blurred image, as MATLAB ``deconvlucy``) or a number
            (a constant start, scikit-image uses 0.5).
        eps: added to the re-blurred estimate before dividing (scikit-image: 1e-12).

    Returns:
        Deblurred images like ``images`` (shape, dtype, device).

    Example:
        >>> x = torch.rand(2, 1, 64, 64)
        >>> k = bk.kernels.disk(torch.tensor([2.0, 3.0]))
        >>> sharp = bk.deblur.richardson_lucy(bk.filter2d(x, k), k, num_iter=20)
    """
    x4, squeezed = check_images(images)
    _check_finite(x4)
    check_border(border)
    _check_flag(clip, "clip")
    B = x4.shape[0]
    k = _check_blur_kernels(kernels, B)
    n = _check_num_iter(num_iter, B)
    if filter_epsilon is not None and (isinstance(filter_epsilon, bool) or not isinstance(
            filter_epsilon, numbers.Real) or not 0 <= filter_epsilon < math.inf):
        raise ValueError(f"filter_epsilon must be a finite number >= 0 or None; got {filter_epsilon!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (0 <= eps < math.inf):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    wdt = _work_dtype(x4, k)
    y = x4.to(wdt).clamp_min(0.0)
    k = k.to(device=y.device, dtype=wdt)
    ry, rx = _support_radius(k)
    kh, kw = k.shape[-2:]
    k = k[:, kh // 2 - ry: kh // 2 + ry + 1, kw // 2 - rx: kw // 2 + rx + 1]
    k = k.expand(B, *k.shape[1:]) if k.shape[0] == 1 else k

    sep = _rank1(k)
    if sep is not None:
        kx, ky = sep
        kxf, kyf = kx.flip(-1), ky.flip(-1)

        def forward(z: torch.Tensor) -> torch.Tensor:
            return sepfilter2d(z, kx, ky, border=border)

        def adjoint(z: torch.Tensor) -> torch.Tensor:
            return sepfilter2d(z, kxf, kyf, border=border)
    else:
        kf = k.flip(-2, -1)

        def forward(z: torch.Tensor) -> torch.Tensor:
            return filter2d(z, k, border=border)

        def adjoint(z: torch.Tensor) -> torch.Tensor:
            return filter2d(z, kf, border=border)

    if isinstance(init, str):
        if init != "image":
            raise ValueError(f"init must be 'image' or a number > 0; got {init!r}")
        est = y.clone()
    elif isinstance(init, numbers.Real) and not isinstance(init, bool) and 0 < init < math.inf:
        est = torch.full_like(y, float(init))
    else:
        raise ValueError(f"init must be 'image' or a number > 0; got {init!r}")

    n_max = int(n.max())
    per_image = bool((n != n_max).any())
    n_dev = n.to(y.device)
    blurs = None if (torch.is_grad_enabled() and y.requires_grad) else _compiled_blurs(y, k, sep, border)
    if blurs is not None:
        # Compiled direct blurs into two reused buffers, the ratio and the update in place, a few images at a
        # time so that the images, the estimates and the buffers stay in the CPU's cache for all iterations.
        fwd, adj = blurs
        y, est = y.contiguous(), est.contiguous()
        chunk = max(1, min(B, _RL_CHUNK_BYTES // (4 * y[0].numel() * y.element_size())))
        conv = _hinted_empty((chunk, *y.shape[1:]), y.dtype, y.device)
        corr = _hinted_empty((chunk, *y.shape[1:]), y.dtype, y.device)
        for a in range(0, B, chunk):
            sl = slice(a, min(a + chunk, B))
            ys, es, cv, cr, ns = y[sl], est[sl], conv[: sl.stop - a], corr[: sl.stop - a], n_dev[sl]
            n_chunk = int(ns.max())
            for i in range(n_chunk):
                fwd(es, cv, sl)
                if eps:
                    cv.add_(eps)
                if filter_epsilon:
                    small = cv < filter_epsilon
                    torch.div(ys, cv, out=cv).masked_fill_(small, 0.0)
                else:
                    torch.div(ys, cv, out=cv)
                adj(cv, cr, sl)
                if per_image:
                    cr.masked_fill_((ns <= i)[:, None, None, None], 1.0)
                es.mul_(cr)
        return restore_batch(_to_output(est, x4, clip), squeezed)
    inplace = not (torch.is_grad_enabled() and (y.requires_grad or k.requires_grad))
    for i in range(n_max):
        conv = forward(est)
        if inplace:  # no autograd graph: reuse buffers (fresh batch-sized allocations are costly)
            conv.add_(eps)
            if filter_epsilon:
                ratio = torch.where(conv < filter_epsilon, 0.0, y / conv)
            else:
                ratio = torch.div(y, conv, out=conv)
        else:
            conv = conv + eps
            ratio = y / conv
            if filter_epsilon:
                ratio = torch.where(conv < filter_epsilon, torch.zeros_like(ratio), ratio)
        corr = adjoint(ratio)
        if per_image:
            est = torch.where((n_dev > i)[:, None, None, None], est * corr, est)
        elif inplace:
            est = corr.mul_(est)
        else:
            est = est * corr
    return restore_batch(_to_output(est, x4, clip), squeezed)


# ------------------------------------------------------------------------------------------- blind
@dataclass(frozen=True)
class BlurEstimate:
    """The blur that :func:`blind` estimated and deconvolved, one entry per image.

    Attributes:
        family: ``"gaussian"`` or ``"motion"``.
        sigma: ``(B,)`` Gaussian standard deviations in pixels (``None`` for motion).
        length: ``(B,)`` motion streak lengths in pixels (``None`` for Gaussian).
        angle: ``(B,)`` motion directions in degrees, counter-clockwise as displayed (``None`` for Gaussian).
        kernels: ``(B, kh, kw)`` the correlation kernels used for the deconvolution.
    """

    family: str
    kernels: torch.Tensor
    sigma: torch.Tensor | None = None
    length: torch.Tensor | None = None
    angle: torch.Tensor | None = None


def _default_estimator(family: str) -> Callable[[torch.Tensor], object]:
    try:
        from . import measure
    except ImportError as exc:  # pragma: no cover - depends on the installed package
        raise ImportError(f"blind(family={family!r}) needs blurkit.measure, which could not be imported "
                          f"({exc}); pass estimator=... instead") from exc
    name = "estimate_sigma" if family == "gaussian" else "estimate_motion"
    fn = getattr(measure, name, None)
    if fn is None:  # pragma: no cover - depends on the installed package
        raise ImportError(f"blind(family={family!r}) needs blurkit.measure.{name}; pass estimator=... instead")
    return fn


def _check_family(family: object) -> str:
    if family not in ("gaussian", "motion"):
        raise ValueError(f"family must be 'gaussian' or 'motion'; got {family!r}")
    return family  # type: ignore[return-value]


def _check_method(method: object) -> str:
    if method in ("rl", "richardson-lucy"):
        method = "richardson_lucy"
    if method not in METHODS:
        raise ValueError(f"method must be 'wiener' or 'richardson_lucy'; got {method!r}")
    return method  # type: ignore[return-value]


def _estimate(images: torch.Tensor, family: str, estimator: Callable | None, truncate: float) -> BlurEstimate:
    B = images.shape[0]
    fn = estimator if estimator is not None else _default_estimator(family)
    with torch.no_grad():
        res = fn(images.detach())
    if family == "gaussian":
        sigma = per_sample(res, "estimated sigma", B, device=images.device, minimum=None)
        sigma = sigma.detach().float().clamp_min(0.0)
        k = _kern.gaussian(sigma, truncate=truncate)
        return BlurEstimate("gaussian", k, sigma=sigma)
    if not (isinstance(res, tuple | list) and len(res) == 2):
        raise TypeError("a motion estimator must return (lengths, angles); got "
                        f"{type(res).__name__}")
    length = per_sample(res[0], "estimated length", B, device=images.device, minimum=None)
    length = length.detach().float().clamp_min(0.0)
    angle = per_sample(res[1], "estimated angle", B, device=images.device, minimum=None).detach().float()
    k = _kern.motion(length, angle)
    return BlurEstimate("motion", k, length=length, angle=angle)


def blind(
    images: torch.Tensor,
    family: str = "gaussian",
    *,
    method: str = "wiener",
    balance: float | torch.Tensor = 0.01,
    num_iter: int | torch.Tensor = 30,
    truncate: float = 3.0,
    border: str = "reflect",
    clip: bool = False,
    estimator: Callable[[torch.Tensor], object] | None = None,
) -> tuple[torch.Tensor, BlurEstimate]:
    """Blind deblurring: estimate each image's blur, then deconvolve it.

    The blur is estimated with :func:`blurkit.measure.estimate_sigma` (``family="gaussian"``,
    returns sigma ``(B,)`` in pixels) or :func:`blurkit.measure.estimate_motion`
    (``family="motion"``, returns ``(lengths, angles)``), turned into kernels with
    :func:`blurkit.kernels.gaussian` / :func:`blurkit.kernels.motion`, and removed with
    :func:`wiener` or :func:`richardson_lucy`. The estimate carries no gradient; the deconvolution
    is differentiable with respect to the images.

    Args:
        images: blurred images ``(B, C, H, W)`` or ``(C, H, W)``.
        family: ``"gaussian"`` or ``"motion"``.
        method: ``"wiener"`` or ``"richardson_lucy"``.
        balance: Wiener regularisation weight ``> 0`` (number or ``(B,)``).
        num_iter: Richardson-Lucy iterations.
        truncate: Gaussian kernel support in standard deviations.
        border: border rule passed to the deconvolution.
        clip: clamp float results to ``[0, 1]``.
        estimator: optional callable replacing the default estimator (same call form and result).

    Returns:
        ``(deblurred, estimate)``: images like ``images`` and a :class:`BlurEstimate` with the
        per-image parameters and kernels.

    Example:
        >>> x = bk.gaussian_blur(torch.rand(2, 1, 128, 128), torch.tensor([1.5, 3.0]))
        >>> sharp, est = bk.deblur.blind(x, "gaussian")
        >>> est.sigma.shape
        torch.Size([2])
    """
    x4, squeezed = check_images(images)
    family = _check_family(family)
    method = _check_method(method)
    est = _estimate(x4, family, estimator, truncate)
    if method == "wiener":
        out = wiener(x4, est.kernels, balance, border=border, clip=clip)
    else:
        out = richardson_lucy(x4, est.kernels, num_iter, border=border, clip=clip)
    return restore_batch(out, squeezed), est


# ------------------------------------------------------------------------------------- DeblurFront
class _Refine(nn.Module):
    """A small residual CNN applied to every channel separately; starts as the identity."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                                  nn.Conv2d(width, 1, 3, padding=1, padding_mode="reflect"))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        z = x.reshape(B * C, 1, H, W)
        return (z + self.body(z)).reshape(B, C, H, W)


class DeblurFront(nn.Module):
    """Deblur, then classify: ``model(deblur(x))`` as one ``nn.Module``.

    For the robustness tools and the ``deblur-front`` training regime. Without a model
    (``model=None``) the module is the front end alone and returns the deblurred images, so it can
    be composed with a classifier elsewhere (the ``deblur-front`` training regime does this). The blur is either fixed
    (``sigma=`` for Gaussian, ``length=``/``angle=`` for motion) or estimated per image (blind,
    the default). Images that measure as sharp (estimated sigma or length 0) get an identity kernel,
    for which the Wiener filter is a mild Laplacian smoothing.

    Args:
        model: any classifier taking ``(B, C, H, W)``, or ``None`` (return the deblurred images).
        method: ``"wiener"`` or ``"richardson_lucy"``.
        family: ``"gaussian"`` or ``"motion"``.
        sigma: fixed Gaussian sigma in pixels (``None``: estimate per image).
        length, angle: fixed motion blur (``length=None``: estimate per image).
        balance: initial Wiener balance ``> 0``.
        num_iter: Richardson-Lucy iterations.
        learnable: if true, the Wiener balance becomes a parameter (trained in log space) and a small
            residual CNN (initialised to the identity) refines the deblurred image.
        mean, std: if the model's inputs are normalised (``(x - mean) / std``), give them so that
            Richardson-Lucy runs on intensities (Wiener does not need them: it commutes with
            affine intensity maps).
        truncate: Gaussian kernel support in standard deviations.
        border: border rule of the deconvolution.
        estimator: replaces the default blur estimator (see :func:`blind`).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
        >>> front = bk.DeblurFront(net, sigma=2.0)
        >>> logits = front(torch.rand(4, 1, 32, 32))
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        method: str = "wiener",
        family: str = "gaussian",
        sigma: float | None = None,
        *,
        length: float | None = None,
        angle: float = 0.0,
        balance: float = 0.01,
        num_iter: int = 10,
        learnable: bool = False,
        mean: float | None = None,
        std: float | None = None,
        truncate: float = 3.0,
        border: str = "reflect",
        estimator: Callable[[torch.Tensor], object] | None = None,
    ) -> None:
        super().__init__()
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None; got {type(model).__name__}")
        self.model = model
        self.method = _check_method(method)
        self.family = _check_family(family)
        if sigma is not None and family != "gaussian":
            raise ValueError("sigma is for family='gaussian'; use length=/angle= for motion")
        if length is not None and family != "motion":
            raise ValueError("length is for family='motion'; use sigma= for gaussian")
        if sigma is not None:
            per_sample(sigma, "sigma", 1)
        if length is not None:
            per_sample(length, "length", 1)
        per_sample(angle, "angle", 1, minimum=None)
        per_sample(balance, "balance", 1, minimum=0.0, strict=True)
        _check_num_iter(num_iter, 1)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the model's input normalisation) or neither")
        if std is not None and not float(std) > 0:
            raise ValueError(f"std must be > 0; got {std!r}")
        check_border(border)
        self.sigma, self.length, self.angle = sigma, length, float(angle)
        self.num_iter, self.truncate, self.border, self.estimator = num_iter, truncate, border, estimator
        self.mean, self.std = mean, std
        self.learnable = _check_flag(learnable, "learnable")
        if learnable:
            self.log_balance = nn.Parameter(torch.tensor(math.log(float(balance))))
            self.refine: nn.Module | None = _Refine()
        else:
            self.register_buffer("log_balance", torch.tensor(math.log(float(balance))), persistent=False)
            self.refine = None
        self.last_estimate: BlurEstimate | None = None

    @property
    def balance(self) -> torch.Tensor:
        """Current Wiener balance (a scalar tensor)."""
        return self.log_balance.exp()

    def _kernels(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "gaussian" and self.sigma is not None:
            k = _kern.gaussian(float(self.sigma), truncate=self.truncate, device=x.device)
            self.last_estimate = BlurEstimate("gaussian", k, sigma=torch.full((x.shape[0],), float(self.sigma)))
            return k
        if self.family == "motion" and self.length is not None:
            k = _kern.motion(float(self.length), self.angle, device=x.device)
            self.last_estimate = BlurEstimate("motion", k, length=torch.full((x.shape[0],), float(self.length)),
                                              angle=torch.full((x.shape[0],), self.angle))
            return k
        est = _estimate(x, self.family, self.estimator, self.truncate)
        self.last_estimate = est
        return est.kernels

    def deblur(self, x: torch.Tensor) -> torch.Tensor:
        """The deblurred images (before the model), ``(B, C, H, W)``."""
        x4, squeezed = check_images(x)
        if self.refine is not None and x4.dtype == torch.uint8:
            x4 = x4.float() / 255.0  # the learnable front works on float images in [0, 1] (a gradient needs floats)
        if self.mean is not None:
            x4 = x4 * float(self.std) + float(self.mean)
        k = self._kernels(x4)
        if self.method == "wiener":
            bal = self.balance.to(x4.device).reshape(1)
            out = wiener(x4, k, bal.expand(x4.shape[0]), border=self.border)
        else:
            out = richardson_lucy(x4, k, self.num_iter, border=self.border)
        if self.refine is not None:  # in the CNN's own dtype (float64 / bfloat16 images work too)
            pdt = next(self.refine.parameters()).dtype
            out = self.refine(out.to(pdt)).to(out.dtype)
        if self.mean is not None:
            out = (out - float(self.mean)) / float(self.std)
        return restore_batch(out, squeezed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(deblur(x))``, or ``deblur(x)`` when the module has no model."""
        y = self.deblur(x)
        return y if self.model is None else self.model(y)
