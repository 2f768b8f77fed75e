"""Fast exact ImageNet-C defocus blur on the CPU (compiled ``bk_disk_defocus`` in ``csrc/disk.c``).

The reference kernel of ``make_imagenet_c.py`` (``disk(radius, alias_blur)``: a binary disk on the
grid ``arange(-8, 9)`` -- ``arange(-r, r + 1)`` for ``r > 8`` -- normalised, then blurred by
``cv2.GaussianBlur`` 3x3 (5x5) with reflect-101 at the grid border) is, exactly,

``K = s G*D + g_h * F + g_v * F^T``

with ``D`` the binary disk (``s = 1 / count``), ``G = g (x) g`` the 3- (5-) tap Gaussian and ``F`` a
small correction whose rows are sums of centred boxes (it accounts for the grid's reflection and
truncation; :func:`plan` derives it with integer bookkeeping and checks the identity against the
composed kernel). The compiled code filters a reflect-101 padded plane with running column sums
of the disk's columns, the separable Gaussian and the box terms of ``F``: ``O(radius)`` work per
pixel instead of ``O(K^2)``, one read of the input and one write of the output per plane.

Example:
    >>> import torch
    >>> from blurkit._disk import defocus_corruption
    >>> x = torch.rand(2, 3, 64, 64)
    >>> y = defocus_corruption(x, 6, 0.5)  # None when the compiled path cannot run
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import filtering as _f

__all__ = ["DiskPlan", "plan", "defocus_corruption"]

_KIND = {torch.uint8: 0, torch.float32: 1, torch.float64: 2}
_FN: object = None  # the configured ctypes function, False when unavailable


@dataclass(frozen=True, eq=False)
class DiskPlan:
    """The exact decomposition of one reference defocus kernel.

    Attributes:
        r: half-extent of the disk (largest ``|dx|`` with a one), px.
        h: half-width of the Gaussian (1 for 3 taps, 2 for 5).
        pad: reflect-101 padding of the plane the compiled code works on, px.
        hh: ``(2r + 1,)`` half-height of the disk's column ``dx = -r .. r`` (= half-width of row ``dx``).
        g: ``(2h + 1,)`` normalised Gaussian taps.
        s: ``1 / count`` (count = number of ones in the disk).
        count: number of ones in the disk.
        ti, tb, tc: correction terms of ``F``: row offset, box half-width and coefficient (``s`` included).
        kernel: ``(N + 2h, N + 2h)`` float64 kernel the decomposition composes to (grid grown by ``h``).
    """

    r: int
    h: int
    pad: int
    hh: np.ndarray
    g: np.ndarray
    s: float
    count: int
    ti: np.ndarray
    tb: np.ndarray
    tc: np.ndarray
    kernel: np.ndarray


def _reflect101(i: int, n: int) -> int:
    if n == 1:
        return 0
    period = 2 * n - 2
    m = i % period
    return m if m < n else period - m


@functools.lru_cache(maxsize=64)
def plan(radius: float, alias_blur: float) -> DiskPlan | None:
    """Decompose the reference ``disk(radius, alias_blur)`` kernel; ``None`` where it does not apply.

    Args:
        radius: disk radius in px (> 0; an integer when > 8, as the reference's grid needs).
        alias_blur: standard deviation of the anti-aliasing Gaussian in px (> 0).

    Returns:
        A :class:`DiskPlan` whose ``kernel`` equals the reference kernel (zero-extended by ``h``) to
        float64 rounding, or ``None`` for parameters outside the method (non-integer radius > 8, a
        disk and correction that overlap, non-finite values).

    Example:
        >>> p = plan(10, 0.5)
        >>> p.r, p.h, len(p.ti)
        (10, 2, 12)
    """
    radius, alias_blur = float(radius), float(alias_blur)
    if not (math.isfinite(radius) and math.isfinite(alias_blur)) or radius <= 0 or alias_blur <= 0:
        return None
    if radius <= 8:
        half, h = 8, 1
    elif radius == int(radius) and radius <= 512:
        half, h = int(radius), 2
    else:
        return None
    N = 2 * half + 1
    t = np.arange(-half, half + 1)
    D = ((t[None, :] ** 2 + t[:, None] ** 2) <= radius ** 2).astype(np.float64)
    count = int(D.sum())
    widths = D.sum(1).astype(np.int64)
    r = int(np.max(np.abs(t[widths > 0])))
    hh = np.zeros(2 * r + 1, dtype=np.int64)
    for k in range(-r, r + 1):
        b = (int(widths[k + half]) - 1) // 2
        if not np.array_equal(D[k + half], (np.abs(t) <= b).astype(np.float64)):
            return None  # not a centred run (cannot happen for a disk; kept as a guard)
        hh[k + r] = b
    a = np.arange(-h, h + 1)
    g = np.exp(-a.astype(np.float64) ** 2 / (2.0 * alias_blur ** 2))
    g = g / g.sum()
    if g[0] < 2.0 ** -60 * g[h]:
        # side taps below 1e-18 of the centre (alias_blur 0.1: 2e-22) change no float64 result
        # beyond rounding: drop the Gaussian (and with it the grid-border correction)
        h, a, g = 0, np.zeros(1, dtype=np.int64), np.ones(1)
    # A: reflect-101 smoothing on the grid; B: plain correlation on the grid grown by h;
    # Delta = (A embedded) - B from integer indicator differences (exact zeros where they cancel).
    Ne = N + 2 * h
    Delta = np.zeros((Ne, N))
    B = np.zeros((Ne, N))
    for ai, av in enumerate(a):
        ind = np.zeros((Ne, N), dtype=np.int64)
        for e in range(Ne):
            i = e - h
            if 0 <= i < N:
                ind[e, _reflect101(i + av, N)] += 1
            if 0 <= i + av < N:
                ind[e, i + av] -= 1
                B[e, i + av] += g[ai]
        Delta += g[ai] * ind
    s = 1.0 / count
    F = Delta @ D
    if np.any(Delta @ D @ Delta.T != 0):
        return None
    kernel = s * (B @ D @ B.T) + s * (F @ B.T + B @ F.T)
    terms: dict[tuple[int, int], float] = {}
    for e, k in zip(*np.nonzero(Delta)):
        if widths[k] > 0:
            key = (int(e) - half - h, int(hh[k - half + r]))
            terms[key] = terms.get(key, 0.0) + s * float(Delta[e, k])
    items = sorted((key, c) for key, c in terms.items() if c != 0.0)
    pad = max([r + h] + [abs(i) for (i, _), _ in items])
    return DiskPlan(r=r, h=h, pad=pad, hh=hh, g=g, s=s, count=count,
                    ti=np.array([i for (i, _), _ in items], dtype=np.int64),
                    tb=np.array([b for (_, b), _ in items], dtype=np.int64),
                    tc=np.array([c for _, c in items], dtype=np.float64), kernel=kernel)


@functools.lru_cache(maxsize=64)
def _plan_tensors(p: DiskPlan) -> tuple[torch.Tensor, ...]:
    """The plan's arrays as contiguous CPU tensors (kept alive by the cache while C reads them)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (p.hh, p.g, p.ti, p.tb, p.tc))


def _fn():
    """The configured ``bk_disk_defocus`` of the compiled extension, or ``None``."""
    global _FN
    if _FN is None:
        lib = _f._load_lib()
        fn = getattr(lib, "bk_disk_defocus", None) if lib is not None else None
        if fn is not None:
            vp, i64 = ctypes.c_void_p, ctypes.c_int64
            fn.argtypes = [ctypes.c_int, vp, vp, i64, i64, i64, i64, i64, i64, vp, vp, ctypes.c_double, i64,
                           vp, vp, vp, vp, vp, ctypes.c_int]
            fn.restype = ctypes.c_int
        _FN = fn if fn is not None else False
    return _FN or None


def defocus_corruption(x: torch.Tensor, radius: float, alias_blur: float) -> torch.Tensor | None:
    """ImageNet-C defocus blur of a batch on the compiled CPU path, clipped; ``None`` if it cannot run.

    Correlates every plane with the reference ``disk(radius, alias_blur)`` kernel (reflect-101
    border, like ``cv2.filter2D``) and clips: float input (values in [0, 1]) gives
    ``clip(y, 0, 1)`` in the input's dtype; uint8 input (0..255, read as ``v / 255``) gives uint8
    ``floor(255 clip(y, 0, 1))``, the reference's ``np.uint8`` cast.

    Args:
        x: ``(B, C, H, W)`` CPU tensor, uint8, float32 or float64 (already validated by the caller).
        radius: disk radius, px.
        alias_blur: anti-aliasing Gaussian standard deviation, px.

    Returns:
        ``(B, C, H, W)`` tensor of ``x``'s dtype, or ``None`` (not built, GPU, other dtype, autograd,
        empty batch, parameters outside :func:`plan`) so that the caller falls back.

    Example:
        >>> y = defocus_corruption(torch.rand(1, 3, 32, 32), 3, 0.1)
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.device.type != "cpu" or x.dtype not in _KIND:
        return None
    if x.numel() == 0 or (x.requires_grad and torch.is_grad_enabled()):
        return None
    p = plan(radius, alias_blur)
    fn = _fn()
    if p is None or fn is None:
        return None
    if x.dtype == torch.uint8 and 255 * p.count >= 2 ** 24:
        return None  # the uint8 sums would no longer be exact in float32
    B, C, H, W = x.shape
    x = x.detach().contiguous()
    out = _f._fresh_like(x)
    rowmap = _f.border_index(H, p.pad, p.pad, "reflect")
    colmap = _f.border_index(W, p.pad, p.pad, "reflect")
    hh, g, ti, tb, tc = _plan_tensors(p)
    st = fn(_KIND[x.dtype], x.data_ptr(), out.data_ptr(), B * C, H, W, p.r, p.h, p.pad, hh.data_ptr(),
            g.data_ptr(), p.s, len(p.ti), ti.data_ptr(), tb.data_ptr(), tc.data_ptr(), rowmap.data_ptr(),
            colmap.data_ptr(), torch.get_num_threads())
    if st == 1:
        raise MemoryError("blurkit: the compiled defocus blur could not allocate its scratch buffers")
    if st != 0:
        raise RuntimeError(f"blurkit: the compiled defocus blur rejected its arguments (status {st})")
    return out
