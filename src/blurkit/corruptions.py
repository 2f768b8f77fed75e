"""ImageNet-C and CIFAR-10-C blur and noise corruptions as batched torch operations.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019 (``make_imagenet_c.py`` and ``make_cifar_c.py`` in hendrycks/robustness).
Every corruption takes a batch ``(B, C, H, W)`` (or one image ``(C, H, W)``) with values in
``[0, 1]``, runs on the batch's device through the blurkit engine, and returns the corrupted batch
**clipped to [0, 1]** like the reference (which clips and then stores uint8). ``uint8`` input
(0..255) is accepted and returns uint8 truncated like the reference's ``np.uint8(...)`` cast.

======================  ========================================================================
corruption              reference algorithm reproduced
======================  ========================================================================
``gaussian_blur``       ``skimage.filters.gaussian`` (mode ``nearest``, truncate 4, scipy radius
                        ``int(4 sigma + 0.5)``) -> ``bk.gaussian_blur(border="replicate")``
``defocus_blur``        the reference ``disk()``: a binary disk on a 17x17 grid (``2r+1`` for
                        ``r > 8``), aliasing-blurred by ``cv2.GaussianBlur`` 3x3 (5x5), then
                        ``cv2.filter2D`` (BORDER_REFLECT_101) -> ``bk.filter2d(border="reflect")``
``motion_blur``         the numpy re-implementation of ImageMagick's motion blur in the
                        ``imagecorruptions`` package: a one-sided half-Gaussian line of ``2r+1``
                        taps at a random angle ``U(-45, 45)``, replicate border
``zoom_blur``           mean of the image and centre-crop zooms (``scipy.ndimage.zoom`` order 1,
                        i.e. exact linear interpolation with the same grid), ``np.arange`` factors
``glass_blur``          blur, quantise to uint8, the reference's *sequential* local pixel
                        "swaps" (reproduced exactly, vectorised over the batch: the reference's
                        ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an ``(H, W, 3)`` array copies
                        pixel ``(h', w')`` onto ``(h, w)`` and leaves ``(h', w')`` as it was, because
                        both right-hand sides are views), blur again
``gaussian_noise``      ``x + N(0, c)``
``shot_noise``          ``Poisson(c x) / c``
``impulse_noise``       ``skimage.util.random_noise(mode="s&p", amount=c)``
======================  ========================================================================

Random parts (motion angle, glass swap offsets, noise) come from a ``torch.Generator`` the caller
passes; the same seed reproduces a result on the same device. On CPU the noise is drawn by compiled
kernels with counter-based random numbers (:mod:`blurkit._noise`: a value's noise depends only on
the seed drawn from the generator and its index, so any thread count gives the same result).

uint8 batches stay uint8 end to end on CPU (blur, clip and the reference's truncating ``np.uint8``
cast fused into one pass), which is how ImageNet-C images are made and stored.

Example:
    >>> import torch, blurkit as bk
    >>> x = torch.rand(8, 3, 224, 224)
    >>> g = torch.Generator().manual_seed(0)
    >>> y = bk.corruptions.corrupt(x, "motion_blur", severity=3, generator=g)
    >>> z = bk.corruptions.zoom_blur(torch.rand(8, 3, 32, 32), 2, dataset="cifar")
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from . import _disk, _noise
from . import filtering as _f
from ._validation import check_images, describe, from_unit, restore_batch, to_unit

__all__ = [
    "BLUR_CORRUPTIONS",
    "NOISE_CORRUPTIONS",
    "CORRUPTIONS",
    "DATASETS",
    "PARAMS",
    "corrupt",
    "gaussian_blur",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "glass_blur",
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_kernel",
    "motion_kernel",
    "zoom_factors",
    "glass_offsets",
]

BLUR_CORRUPTIONS = ("gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur", "glass_blur")
NOISE_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise")
CORRUPTIONS = BLUR_CORRUPTIONS + NOISE_CORRUPTIONS
DATASETS = ("imagenet", "cifar")

# Severity 1..5 parameters, copied from make_imagenet_c.py / make_cifar_c.py (hendrycks/robustness).
PARAMS: dict[str, dict[str, tuple]] = {
    "imagenet": {
        "gaussian_blur": (1, 2, 3, 4, 6),  # sigma
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # (radius, alias_blur)
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # (radius, sigma)
        "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                      (1, 1.31, 0.03)),  # np.arange(start, stop, step)
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),  # (sigma, delta, it)
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # std
        "shot_noise": (60, 25, 12, 5, 3),  # photons per unit intensity
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # s&p amount
    },
    "cifar": {
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01),
                      (1, 1.26, 0.01)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    },
}


# ------------------------------------------------------------------------------------ helpers
def _param(name: str, severity: int, dataset: str):
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {dataset!r}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be an integer from 1 to 5; got {severity!r}")
    return PARAMS[dataset][name][int(severity) - 1]


def _check_range(x: torch.Tensor) -> None:
    """Float images must hold values in [0, 1] (one pass over the batch)."""
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError("images must hold values in [0, 1] (ImageNet-C corruptions are defined on "
                         f"[0, 1] images; un-normalise first); got values in [{lo:.4g}, {hi:.4g}]")


def _prepare(images: object) -> tuple[torch.Tensor, bool]:
    """Validate ``images``; return a float working batch in [0, 1] and the squeezed flag."""
    x4, squeezed = _prepare_raw(images)
    return to_unit(x4), squeezed


def _finish(y: torch.Tensor, images: torch.Tensor, squeezed: bool) -> torch.Tensor:
    """Clip the float result and return it like ``images`` (uint8: the reference's truncating cast)."""
    return restore_batch(from_unit(y, images), squeezed)


def _prepare_raw(images: object) -> tuple[torch.Tensor, bool]:
    """Validate ``images`` without converting them: ``(B, C, H, W)`` batch (uint8 or float in [0, 1])."""
    x4, squeezed = check_images(images)
    if x4.dtype != torch.uint8:
        _check_range(x4)
    return x4, squeezed


def _blur_fused(x4: torch.Tensor, squeezed: bool, kernels: tuple[torch.Tensor, ...], border: str,
                scale: float = 1.0, to_u8: bool | None = None,
                out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Blur, clip and convert in one engine call: the corruption's result in ``x4``'s dtype.

    ``x4`` is float in [0, 1], or uint8 read as ``v / 255``. ``kernels`` is ``(kx, ky)`` (separable)
    or ``(k,)`` (2-D, per image). ``scale`` multiplies the blurred value (``v / 255`` for uint8
    input) before the clip; the result is clipped to [0, 1], or with ``to_u8`` (default: uint8
    input) returned as uint8 ``floor(255 clip(v, 0, 1))`` like the reference's ``np.uint8`` cast (with
    a 2^-10-level margin for float32 rounding, so that a flat region keeps its value).
    A float result has ``out_dtype`` (default: ``x4``'s float dtype, float32 for uint8 input).
    On the compiled CPU path this is a single pass over the batch.
    """
    u8_in = x4.dtype == torch.uint8
    to_u8 = u8_in if to_u8 is None else to_u8
    # the kernels absorb the input's 1/255 (uint8) and the output's 255 (uint8 result)
    f = scale * (1.0 / 255.0 if u8_in else 1.0) * (255.0 if to_u8 else 1.0)
    kind, hi = (_f.OUT_U8_FLOOR, 255.0) if to_u8 else (_f.OUT_CLIP, 1.0)
    B = x4.shape[0]
    # the working precision follows the images (float64 only for float64 images), not the kernels
    wdt = torch.float64 if torch.float64 in (x4.dtype, out_dtype) else torch.float32
    kernels = tuple(k.to(wdt) for k in kernels)
    if len(kernels) == 2:
        kx, ky = (k.expand(B, -1) for k in kernels)
        y = _f._run_sep(x4, kx * f if f != 1.0 else kx, ky, border, "auto", 0.0, out_kind=kind, lo=0.0, hi=hi)
    else:
        k = kernels[0].expand(B, -1, -1)
        y = _f._run_2d(x4, k * f if f != 1.0 else k, border, "auto", 0.0, out_kind=kind, lo=0.0, hi=hi)
    if not to_u8:
        want = out_dtype or (torch.float32 if u8_in else x4.dtype)
        y = y if y.dtype == want else y.to(want)
    return restore_batch(y, squeezed)


def _scipy_gaussian1d(sigma: float, device: torch.device) -> torch.Tensor:
    """scipy.ndimage's Gaussian taps (radius ``int(4 sigma + 0.5)``, normalised) as ``(1, 2r + 1)`` float64.

    The engine's cached kernel with a truncate factor that gives exactly scipy's radius (the
    engine's radius is ``ceil(truncate sigma)``; ``r - 1/2`` keeps it safe from rounding).
    """
    sigma = float(sigma)
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:
        return torch.ones(1, 1, dtype=torch.float64, device=device)
    return _f._scalar_gauss1d(sigma, (radius - 0.5) / sigma, torch.float64, device)  # cached


def _check_generator(generator: object, x: torch.Tensor) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but images are on {x.device}; "
                         "create the generator on the images' device")
    return generator


# ------------------------------------------------------------------------------------ kernels
def defocus_kernel(radius: float, alias_blur: float, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The reference ``disk(radius, alias_blur)`` kernel of ``make_imagenet_c.py``.

    A binary disk ``x^2 + y^2 <= radius^2`` on the grid ``arange(-8, 9)`` (``arange(-r, r + 1)`` for
    ``radius > 8``), normalised to sum 1, then blurred by a 3x3 (5x5 for ``radius > 8``) sampled
    Gaussian of std ``alias_blur`` with OpenCV's default border (reflect-101), as
    ``cv2.GaussianBlur`` does.

    Returns:
        Tensor ``(K, K)`` with ``K = 17`` (or ``2 radius + 1``); sums to ~1.
    """
    if radius <= 8:
        grid, half = np.arange(-8, 9), 1
    else:
        grid, half = np.arange(-radius, radius + 1), 2
    X, Y = np.meshgrid(grid, grid)
    d = torch.tensor((X ** 2 + Y ** 2) <= radius ** 2, dtype=torch.float64, device=device)
    d = d / d.sum()
    t = torch.arange(-half, half + 1, dtype=torch.float64, device=device)
    g = torch.exp(-t ** 2 / (2.0 * float(alias_blur) ** 2))
    g = g / g.sum()
    k = _f.sepfilter2d(d[None, None], g, g, border="reflect", method="torch")[0, 0]
    return k.to(dtype)


def motion_kernel(radius: int, sigma: float, angle: float | torch.Tensor, *, height: int | None = None,
                  width: int | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """One-sided half-Gaussian line kernels of the ``imagecorruptions`` motion blur, one per angle.

    Tap ``i = 0 .. 2 radius`` has weight ``exp(-i^2 / (2 sigma^2))`` (normalised over the taps) and
    samples the pixel at offset ``(ceil(i sin a - 0.5), ceil(i cos a - 0.5))`` (rows, columns) from
    the output pixel, for the angle ``a`` in degrees. As in the reference, taps whose offset reaches
    the image size (``height``/``width``) and all later ones are dropped (not renormalised).

    Returns:
        Correlation kernels ``(B, K, K)``, ``K = 4 radius + 1`` (the line starts at the centre).
    """
    a = torch.as_tensor(angle, dtype=torch.float64, device=device).reshape(-1)
    n = 2 * int(radius) + 1
    i = torch.arange(n, dtype=torch.float64, device=a.device)
    w = torch.exp(-i ** 2 / (2.0 * float(sigma) ** 2))
    w = w / w.sum()
    # offsets with the reference's exact float64 operations (ceil is sensitive to the last ulp,
    # e.g. at -30 degrees): (i * width * sin a) / hypot(width sin a, width cos a)
    ii = np.arange(n, dtype=np.float64)
    oys, oxs = [], []
    for ang in a.detach().cpu().tolist():
        rad = np.deg2rad(ang)
        p0, p1 = n * np.sin(rad), n * np.cos(rad)
        hyp = math.hypot(p0, p1)
        oys.append(np.ceil((ii * p0) / hyp - 0.5))
        oxs.append(np.ceil((ii * p1) / hyp - 0.5))
    oy = torch.as_tensor(np.array(oys), device=a.device).long()
    ox = torch.as_tensor(np.array(oxs), device=a.device).long()
    ok = torch.ones_like(oy, dtype=torch.bool)
    if height is not None:
        ok &= oy.abs() < height
    if width is not None:
        ok &= ox.abs() < width
    ok = torch.cumprod(ok.long(), dim=1).bool()  # the reference stops at the first tap outside
    R = n - 1
    K = 2 * R + 1
    idx = (oy + R) * K + (ox + R)
    k = torch.zeros(a.shape[0], K * K, dtype=torch.float64, device=a.device)
    k.scatter_add_(1, idx, torch.where(ok, w[None, :].expand_as(oy), torch.zeros((), dtype=torch.float64,
                                                                                    device=a.device)))
    return k.view(-1, K, K).to(dtype)


def zoom_factors(severity: int, dataset: str = "imagenet") -> np.ndarray:
    """The zoom factors of ``zoom_blur`` (``np.arange(start, stop, step)`` as in the reference)."""
    start, stop, step = _param("zoom_blur", severity, dataset)
    return np.arange(start, stop, step)


_ZOOM_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _zoom_axis(n: int, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (two taps) and weight of the second tap along one axis of ``clipped_zoom``."""
    ch = int(np.ceil(n / z))
    top = (n - ch) // 2
    out = int(round(ch * z))
    trim = (out - n) // 2
    o = np.arange(trim, trim + n, dtype=np.float64)
    src = o * ((ch - 1) / (out - 1)) if out > 1 else np.zeros_like(o)
    i0 = np.clip(np.floor(src), 0, ch - 1).astype(np.int64)
    i1 = np.clip(i0 + 1, 0, ch - 1)
    return i0 + top, i1 + top, src - i0


def _zoom_matrix(H: int, W: int, factors: tuple[float, ...], device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """Sparse CSR ``(H W, H W)``: the mean of the image and its ``clipped_zoom`` for each factor."""
    key = (H, W, factors, str(device), dtype)
    hit = _ZOOM_CACHE.get(key)
    if hit is not None:
        _ZOOM_CACHE.move_to_end(key)
        return hit
    N = H * W
    out_idx = np.arange(N, dtype=np.int64).reshape(H, W)
    rows, cols, vals = [out_idx.ravel()], [out_idx.ravel()], [np.ones(N)]
    for z in factors:
        y0, y1, wy = _zoom_axis(H, z)
        x0, x1, wx = _zoom_axis(W, z)
        for ys, wys in ((y0, 1.0 - wy), (y1, wy)):
            for xs, wxs in ((x0, 1.0 - wx), (x1, wx)):
                rows.append(out_idx.ravel())
                cols.append((ys[:, None] * W + xs[None, :]).ravel())
                vals.append((wys[:, None] * wxs[None, :]).ravel())
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals) / (len(factors) + 1)
    keep = v != 0
    # sum duplicate (row, col) pairs in numpy, then build CSR directly
    lin = r[keep] * N + c[keep]
    uniq, inv = np.unique(lin, return_inverse=True)
    val = np.bincount(inv, weights=v[keep])
    ur, uc = uniq // N, uniq % N
    crow = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(np.bincount(ur, minlength=N), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        M = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(uc), torch.from_numpy(val),
                                    (N, N), dtype=dtype, check_invariants=False).to(device)
    _ZOOM_CACHE[key] = M
    if len(_ZOOM_CACHE) > 8:
        _ZOOM_CACHE.popitem(last=False)
    return M


def glass_offsets(batch: int, height: int, width: int, severity: int, dataset: str = "imagenet", *,
                  generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Random swap offsets of ``glass_blur``: ``(iterations, rows, cols, B, 2)`` as ``(dx, dy)``.

    Rows/cols are the reference loop's positions ``range(H - delta, delta, -1)`` (and likewise for
    the width); each offset is uniform on ``[-delta, delta - 1]`` like ``np.random.randint(-d, d)``.
    """
    _, delta, iterations = _param("glass_blur", severity, dataset)
    rows = max(0, height - 2 * delta)
    cols = max(0, width - 2 * delta)
    return torch.randint(-delta, delta, (iterations, rows, cols, batch, 2), generator=generator,
                         device=device)


def _glass_permutation(offsets: torch.Tensor, height: int, width: int, delta: int) -> np.ndarray:
    """Replay the reference's sequential loop on pixel indices, vectorised over the batch.

    The reference's "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` runs on an ``(H, W, 3)``
    array, so both right-hand sides are views: ``x[h, w]`` receives pixel ``(h', w')``, and
    ``x[h', w']`` then receives the new ``x[h, w]``, i.e. its own value. Each step is therefore a
    copy of ``(h', w')`` onto ``(h, w)`` (imagecorruptions' numba loop has the same semantics), and
    that is what ImageNet-C and CIFAR-10-C were made with.

    Returns ``src (B, H*W)``: output pixel ``p`` of image ``b`` holds input pixel ``src[b, p]``
    (a map, not a permutation: a pixel can appear twice).
    """
    off = offsets.cpu().numpy()
    iters, rows, cols, B, _ = off.shape
    # flat layout: entry p * B + b is image b's source index at pixel p, so that each step reads
    # one contiguous run of B entries and one gather of B entries
    perm = np.repeat(np.arange(height * width, dtype=np.int64), B)
    bidx = np.arange(B)
    ws = np.arange(width - delta, delta, -1)
    for it in range(iters):
        for hi, h in enumerate(range(height - delta, delta, -1)):
            o = off[it, hi]
            # flat entries each step of this row copies from: (cols, B)
            tgt = ((h + o[:, :, 1]) * width + (ws[:, None] + o[:, :, 0])) * B + bidx
            p = (h * width + width - delta) * B
            for q in tgt:
                perm[p:p + B] = perm[q]  # x[h, w] = x[h', w']; x[h', w'] keeps its value
                p -= B
    return perm.reshape(height * width, B).T.copy()


# -------------------------------------------------------------------------------- corruptions
def gaussian_blur(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet") -> torch.Tensor:
    """ImageNet-C Gaussian blur: ``skimage.filters.gaussian`` (nearest border, truncate 4), clipped.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` (float) or uint8.
        severity: 1..5 (sigma 1, 2, 3, 4, 6 px for ``"imagenet"``; .4, .6, .7, .8, 1 for ``"cifar"``).
        dataset: ``"imagenet"`` (224 px parameters) or ``"cifar"`` (32 px parameters).

    Returns:
        Tensor like ``images``, clipped to ``[0, 1]``.
    """
    sigma = _param("gaussian_blur", severity, dataset)
    x4, sq = _prepare_raw(images)
    k = _scipy_gaussian1d(sigma, x4.device)
    return _blur_fused(x4, sq, (k, k), "replicate")


def defocus_blur(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet") -> torch.Tensor:
    """ImageNet-C defocus blur: the reference aliased disk kernel, reflect-101 border, clipped.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5 (radius 3, 4, 6, 8, 10 px with alias blur .1, .5, .5, .5, .5 for ImageNet-C).
        dataset: ``"imagenet"`` or ``"cifar"``.

    Returns:
        Tensor like ``images``.
    """
    radius, alias = _param("defocus_blur", severity, dataset)
    x4, sq = _prepare_raw(images)
    fast = _disk.defocus_corruption(x4, radius, alias)  # exact O(radius) compiled path on CPU
    if fast is not None:
        return restore_batch(fast, sq)
    return _blur_fused(x4, sq, (defocus_kernel(radius, alias, dtype=torch.float64, device=x4.device),), "reflect")


def motion_blur(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet",
                generator: torch.Generator | None = None,
                angle: float | torch.Tensor | None = None) -> torch.Tensor:
    """ImageNet-C motion blur (the ``imagecorruptions`` numpy version of ImageMagick's), clipped.

    One angle per image, uniform on ``[-45, 45)`` degrees unless ``angle`` is given.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5 (``(radius, sigma)`` (10, 3) (15, 5) (15, 8) (15, 12) (20, 15) for ImageNet-C).
        dataset: ``"imagenet"`` or ``"cifar"``.
        generator: ``torch.Generator`` for the angles.
        angle: degrees, a number or ``(B,)``, to fix the angles instead of drawing them.

    Returns:
        Tensor like ``images``.
    """
    radius, sigma = _param("motion_blur", severity, dataset)
    x, sq = _prepare_raw(images)
    B, _, H, W = x.shape
    if angle is None:
        g = _check_generator(generator, x)
        a = torch.rand(B, generator=g, device=x.device, dtype=torch.float64) * 90.0 - 45.0
    else:
        a = torch.as_tensor(angle, dtype=torch.float64, device=x.device).reshape(-1)
        if a.numel() not in (1, B) or not bool(torch.isfinite(a).all()):
            raise ValueError(f"angle must be a finite number or have one value per image ({B}); "
                             f"got {describe(angle)}")
        a = a.expand(B)
    k = motion_kernel(radius, sigma, a, height=H, width=W, dtype=torch.float64, device=x.device)
    return _blur_fused(x, sq, (k,), "replicate")


def zoom_blur(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet") -> torch.Tensor:
    """ImageNet-C zoom blur: mean of the image and its centre-crop zooms, clipped.

    Each zoom reproduces the reference ``clipped_zoom``: centre crop ``ceil(n / z)``,
    ``scipy.ndimage.zoom(order=1)`` to ``round(ch z)`` samples, central ``n`` kept. scipy's order-1
    zoom is exactly bilinear interpolation on its grid (output ``o`` reads input
    ``o (ch - 1) / (out - 1)``; no approximation), so the whole corruption is one fixed linear map of
    the pixels with at most ``4 (zooms) + 1`` taps per output pixel. It is built once per image
    size and severity (cached, float64 weights computed in numpy) and applied to the whole batch as
    one sparse-dense matrix product.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5 (factors ``np.arange(1, 1.11, .01)`` ... ``np.arange(1, 1.31, .03)``).
        dataset: ``"imagenet"`` or ``"cifar"``.

    Returns:
        Tensor like ``images``.
    """
    factors = zoom_factors(severity, dataset)
    raw, sq = _prepare_raw(images)
    u8 = raw.dtype == torch.uint8
    # uint8: the map runs on the 0..255 values themselves and the result is floored with the 2^-10
    # margin of the other corruptions (a flat region keeps its value; on v / 255 in float32 the
    # weights' rounding dropped most flat levels by one)
    x = raw.float() if u8 else to_unit(raw)
    B, C, H, W = x.shape
    M = _zoom_matrix(H, W, tuple(float(z) for z in factors), x.device, x.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        y = (M @ x.reshape(B * C, H * W).T).T.reshape(B, C, H, W)
    if u8:
        return restore_batch(y.add_(2.0 ** -10).floor_().clamp_(0, 255).to(torch.uint8), sq)
    return _finish(y, images, sq)


def glass_blur(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet",
               generator: torch.Generator | None = None,
               offsets: torch.Tensor | None = None) -> torch.Tensor:
    """ImageNet-C glass blur: Gaussian blur, uint8 quantisation, local pixel shuffle, blur, clip.

    The shuffle replays the reference's sequential loop exactly (a pixel moved early can move
    again), with the reference's semantics: each step copies pixel ``(h + dy, w + dx)`` onto
    ``(h, w)`` (the reference's tuple "swap" of two array views; see :func:`_glass_permutation`). It
    runs as one source map per image computed on pixel indices for the whole batch at once, then
    applied to all channels by a gather.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5 (``(sigma, max shift, iterations)`` (.7, 1, 2) (.9, 2, 1) (1, 2, 3) (1.1, 3, 2)
            (1.5, 4, 2) for ImageNet-C).
        dataset: ``"imagenet"`` or ``"cifar"``.
        generator: ``torch.Generator`` for the swap offsets.
        offsets: the swap offsets themselves (as returned by :func:`glass_offsets`), instead.

    Returns:
        Tensor like ``images``.
    """
    sigma, delta, _ = _param("glass_blur", severity, dataset)
    x, sq = _prepare_raw(images)
    B, C, H, W = x.shape
    if offsets is None:
        g = _check_generator(generator, x)
        offsets = glass_offsets(B, H, W, severity, dataset, generator=g, device=x.device)
    else:
        want = glass_offsets(1, H, W, severity, dataset).shape[:3] + (B, 2)
        if not isinstance(offsets, torch.Tensor) or tuple(offsets.shape) != tuple(want):
            raise ValueError(f"offsets must have shape {tuple(want)}; got {describe(offsets)}")
        if offsets.is_floating_point() or offsets.is_complex() or offsets.dtype == torch.bool:
            raise ValueError(f"offsets must be integers in [-{delta}, {delta - 1}]; got dtype {offsets.dtype}")
        if offsets.numel() and not bool(((offsets >= -delta) & (offsets < delta)).all()):
            raise ValueError(f"offsets must be integers in [-{delta}, {delta - 1}] (severity {severity}); got "
                             f"values from {int(offsets.min())} to {int(offsets.max())}")
    k = _scipy_gaussian1d(sigma, x.device)
    q = _blur_fused(x, False, (k, k), "replicate", to_u8=True)  # np.uint8(gaussian(x) * 255)
    perm = torch.as_tensor(_glass_permutation(offsets, H, W, delta), device=x.device)
    q = q.reshape(B, C, H * W).gather(2, perm[:, None, :].expand(B, C, H * W)).reshape(B, C, H, W)
    # the swapped uint8 image, read as q / 255, blurred again; the result in the input's dtype
    u8 = x.dtype == torch.uint8
    return _blur_fused(q, sq, (k, k), "replicate", to_u8=u8, out_dtype=None if u8 else x.dtype)


def gaussian_noise(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """ImageNet-C Gaussian noise ``clip(x + N(0, c^2))``, ``c`` = .08 .. .38 (ImageNet-C).

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5. dataset: ``"imagenet"`` or ``"cifar"``. generator: for the noise.
    """
    c = _param("gaussian_noise", severity, dataset)
    x, sq = _prepare_raw(images)
    return restore_batch(_noise.gaussian_noise(x, c, _check_generator(generator, x)), sq)


def shot_noise(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """ImageNet-C shot noise ``clip(Poisson(c x) / c)``, ``c`` = 60 .. 3 (ImageNet-C).

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5. dataset: ``"imagenet"`` or ``"cifar"``. generator: for the noise.
    """
    c = float(_param("shot_noise", severity, dataset))
    x, sq = _prepare_raw(images)
    return restore_batch(_noise.shot_noise(x, c, _check_generator(generator, x)), sq)


def impulse_noise(images: torch.Tensor, severity: int = 1, *, dataset: str = "imagenet",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ImageNet-C impulse (salt-and-pepper) noise as ``skimage.util.random_noise(mode="s&p")``.

    Each value (per channel) is replaced with probability ``c`` (.03 .. .27 for ImageNet-C), by 1 or 0
    with equal probability.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` or uint8.
        severity: 1..5. dataset: ``"imagenet"`` or ``"cifar"``. generator: for the noise.
    """
    c = _param("impulse_noise", severity, dataset)
    x, sq = _prepare_raw(images)
    return restore_batch(_noise.impulse_noise(x, c, _check_generator(generator, x)), sq)


_FUNCS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "glass_blur": glass_blur,
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
}
_RANDOM = ("motion_blur", "glass_blur", "gaussian_noise", "shot_noise", "impulse_noise")


def corrupt(images: torch.Tensor, corruption: str, severity: int = 1, *, dataset: str = "imagenet",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one named corruption at one severity.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]`` (float) or uint8.
        corruption: one of :data:`CORRUPTIONS`.
        severity: 1..5.
        dataset: ``"imagenet"`` (224 px parameters) or ``"cifar"`` (32 px parameters).
        generator: ``torch.Generator`` for the random parts (ignored by deterministic corruptions).

    Returns:
        Tensor like ``images``, clipped to ``[0, 1]``.

    Example:
        >>> y = bk.corruptions.corrupt(torch.rand(4, 3, 224, 224), "defocus_blur", 2)
    """
    if not isinstance(corruption, str) or corruption not in _FUNCS:
        raise ValueError(f"corruption must be one of {', '.join(map(repr, CORRUPTIONS))}; got {corruption!r}")
    fn = _FUNCS[corruption]
    if corruption in _RANDOM:
        return fn(images, severity, dataset=dataset, generator=generator)
    return fn(images, severity, dataset=dataset)
