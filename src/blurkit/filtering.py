"""The blur engine: per-image correlation of image batches with any kernels.

This module is the one place in blurkit that convolves. Each image of a batch has its own kernel
(of its own size: a batch with sigmas 0.5 and 8 does not pay a 49-tap kernel for the 0.5 image),
every border mode works for every kernel size (also kernels larger than the image), and the
method (separable passes, direct 2-D, FFT, compiled CPU kernels) is chosen by cost.

Filtering is *correlation* (as ``cv2.filter2D``, ``scipy.ndimage.correlate``, ``F.conv2d``):
``out[y, x] = sum_{u, v} k[u, v] * in[y + u - ry, x + v - rx]``. All blur kernels in blurkit are
point-symmetric, for which correlation and convolution agree.

Border names (those of ``torch.nn.functional.pad`` plus ``"symmetric"``):

=============  ==========================  ===================  ==================
blurkit        pattern (edge ``|``)        scipy.ndimage mode   OpenCV border
=============  ==========================  ===================  ==================
reflect        ``c b | a b c | b a``       mirror               BORDER_REFLECT_101
symmetric      ``b a | a b c | c b``       reflect              BORDER_REFLECT
replicate      ``a a | a b c | c c``       nearest              BORDER_REPLICATE
circular       ``b c | a b c | a b``       wrap                 BORDER_WRAP
constant       ``v v | a b c | v v``       constant (cval)      BORDER_CONSTANT
=============  ==========================  ===================  ==================
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import multiprocessing
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F

from . import kernels as _k
from ._validation import (
    check_border,
    check_images,
    check_truncate,
    check_value,
    describe,
    odd_size,
    per_sample,
    restore_batch,
)

__all__ = [
    "filter2d",
    "sepfilter2d",
    "gaussian_blur",
    "box_blur",
    "defocus_blur",
    "motion_blur",
    "pad",
    "border_index",
    "backend_info",
    "METHODS",
]

METHODS = ("auto", "separable", "direct", "fft", "torch")

# ------------------------------------------------------------------------------ border handling
_INDEX_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def border_index(n: int, before: int, after: int, border: str) -> torch.Tensor:
    """Source index of each padded position along one axis.

    Args:
        n: length of the axis (>= 1).
        before, after: number of padded positions on each side (any size, also > n).
        border: a border name (see the module docs).

    Returns:
        Long tensor of shape ``(before + n + after,)`` (CPU): entry ``j`` is the source index of padded
        position ``j - before``, or ``-1`` where a constant border supplies the value.
    """
    key = (n, before, after, border)
    hit = _INDEX_CACHE.get(key)
    if hit is not None:
        return hit
    i = torch.arange(-before, n + after, dtype=torch.int64)
    if border == "replicate":
        m = i.clamp(0, n - 1)
    elif border == "circular":
        m = i.remainder(n)
    elif border == "reflect":
        if n == 1:
            m = torch.zeros_like(i)
        else:
            period = 2 * n - 2
            m = i.remainder(period)
            m = torch.where(m < n, m, period - m)
    elif border == "symmetric":
        m = i.remainder(2 * n)
        m = torch.where(m < n, m, 2 * n - 1 - m)
    elif border == "constant":
        m = torch.where((i >= 0) & (i < n), i, torch.full_like(i, -1))
    else:  # pragma: no cover - validated by callers
        raise ValueError(f"unknown border {border!r}")
    _INDEX_CACHE[key] = m
    if len(_INDEX_CACHE) > 256:
        _INDEX_CACHE.popitem(last=False)
    return m


_DEV_INDEX: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _index_on(n: int, before: int, after: int, border: str, device: torch.device) -> torch.Tensor:
    key = (n, before, after, border, device)
    hit = _DEV_INDEX.get(key)
    if hit is None:
        hit = border_index(n, before, after, border).to(device)
        _DEV_INDEX[key] = hit
        if len(_DEV_INDEX) > 256:
            _DEV_INDEX.popitem(last=False)
    return hit


# Border modes torch pads natively, with the pad sizes it accepts for an axis of length n.
_TORCH_PAD = {
    "reflect": lambda p, n: p < n,
    "replicate": lambda p, n: True,
    "circular": lambda p, n: p <= n,
}


def pad(images: torch.Tensor, padding: tuple[int, int, int, int], border: str = "reflect",
        value: float = 0.0) -> torch.Tensor:
    """Pad the last two dimensions by any amount with any border (differentiable).

    Unlike ``torch.nn.functional.pad``, reflect/symmetric/circular padding may exceed the image
    size (the pattern repeats).

    Args:
        images: tensor ``(..., H, W)``.
        padding: ``(left, right, top, bottom)`` in pixels, each ``>= 0``.
        border: border name; ``value`` is used by ``"constant"``.

    Returns:
        Tensor ``(..., H + top + bottom, W + left + right)``.
    """
    check_border(border)
    left, right, top, bottom = (int(p) for p in padding)
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"padding must be non-negative; got {padding}")
    if left == right == top == bottom == 0:
        return images
    if border == "constant":
        return F.pad(images, (left, right, top, bottom), mode="constant", value=float(value))
    H, W = images.shape[-2:]
    if border in _TORCH_PAD and images.dim() in (3, 4) and _TORCH_PAD[border](max(left, right), W) \
            and _TORCH_PAD[border](max(top, bottom), H):
        return F.pad(images, (left, right, top, bottom), mode=border)  # torch's own kernels: faster
    out = images
    if left or right:
        out = out.index_select(-1, _index_on(W, left, right, border, images.device))
    if top or bottom:
        out = out.index_select(-2, _index_on(H, top, bottom, border, images.device))
    return out


# ------------------------------------------------------------------------- compiled CPU kernels
_LIB: ctypes.CDLL | None = None
_LIB_ERROR: str | None = None
_ABI_VERSION = 2  # bk_version() of the C sources this module calls

# Output modes of the compiled kernels (cconv.c): the value as computed, clipped to [lo, hi], or
# uint8 of the clipped value rounded half-to-even (torch.round) or floored (numpy's uint8 cast, with a
# margin for rounding, see below).
OUT_PLAIN, OUT_CLIP, OUT_U8_RINT, OUT_U8_FLOOR = 0, 1, 2, 3
# OUT_U8_FLOOR truncates clip(v) + 2^-10 (float32; 2^-30 in float64): rounding leaves a flat region of
# value c at c - 1e-5 or so after a normalised kernel, and it must stay c.


def _load_lib() -> ctypes.CDLL | None:
    global _LIB, _LIB_ERROR, _LIB_OPENMP
    if _LIB is not None or _LIB_ERROR is not None:
        return _LIB
    try:
        spec = importlib.util.find_spec("blurkit._cconv")
        if spec is None or spec.origin is None:
            raise ImportError("the compiled extension blurkit._cconv is not built")
        lib = ctypes.CDLL(spec.origin)
        vp, i64, p64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p
        lib.bk_version.restype = ctypes.c_int
        if lib.bk_version() < _ABI_VERSION:
            raise ImportError("the compiled extension blurkit._cconv is out of date; reinstall blurkit")
        modes = [ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double]
        lib.bk_sep.argtypes = [ctypes.c_int, vp, vp, i64, i64, i64, i64, vp, i64, p64, vp, i64, p64,
                               p64, p64, i64, i64, ctypes.c_double, ctypes.c_int, *modes]
        lib.bk_sep.restype = ctypes.c_int
        lib.bk_conv2d.argtypes = [ctypes.c_int, vp, vp, i64, i64, i64, i64, vp, i64, i64, p64, p64,
                                  p64, p64, i64, i64, ctypes.c_double, ctypes.c_int, *modes]
        lib.bk_conv2d.restype = ctypes.c_int
        lib.bk_blur_effect_sums.argtypes = [vp, vp, i64, i64, i64, i64, vp, vp, vp, vp, i64, p64, p64, i64,
                                            ctypes.c_int]
        lib.bk_blur_effect_sums.restype = ctypes.c_int
        lib.bk_hugepage_hint.argtypes = [vp, i64]
        lib.bk_hugepage_hint.restype = ctypes.c_int
        lib.bk_set_openmp.argtypes = [vp]
        lib.bk_set_openmp.restype = ctypes.c_int
        _LIB_OPENMP = _share_torch_openmp(lib)
        _LIB = lib
    except (ImportError, OSError, AttributeError) as exc:
        _LIB_ERROR = str(exc)
    return _LIB


_LIB_OPENMP: str | None = None  # the OpenMP runtime whose team runs the compiled kernels
_FORKED = False  # set in a child process made by fork() after this module was imported


def _after_fork_in_child() -> None:
    global _FORKED, _LIB_OPENMP
    _FORKED = True
    if _LIB is not None and _LIB_OPENMP is not None:
        _LIB.bk_set_openmp(None)  # POSIX threads from now on
        _LIB_OPENMP = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _share_torch_openmp(lib: ctypes.CDLL) -> str | None:
    """Run the compiled kernels on torch's own OpenMP thread team (Linux, OpenMP builds of torch).

    After a parallel torch op, torch's OpenMP workers keep spinning for a few milliseconds; threads
    of our own would share the cores with them (measured: +70% on a motion blur right after a
    reduction). The runtime torch loaded is found in this process's memory map and its
    ``GOMP_parallel`` (exported by GNU libgomp and by LLVM/Intel OpenMP) is handed to the C code.
    ``BLURKIT_OPENMP=0`` turns this off (POSIX threads are used then, as on other platforms).
    """
    if os.environ.get("BLURKIT_OPENMP", "1") == "0" or "OpenMP" not in torch.__config__.parallel_info():
        return None
    if _FORKED or multiprocessing.parent_process() is not None:
        # A forked child cannot use the OpenMP team its parent may have started (it would wait for
        # threads that do not exist in the child); any multiprocessing child keeps POSIX threads.
        return None
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return None
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    names = ("libgomp", "libiomp5", "libomp")
    cands = sorted((p for p in paths if os.path.basename(p).startswith(names)),
                   key=lambda p: not p.startswith(torch_dir))  # torch's own copy first
    for path in cands:
        try:
            fn = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):
            continue
        if lib.bk_set_openmp(ctypes.cast(fn, ctypes.c_void_p).value):
            return path
    return None


def backend_info() -> dict[str, object]:
    """Which engines are available: ``{"compiled_cpu", "reason", "threads", "thread_team"}``.

    ``thread_team`` is ``"openmp"`` when the compiled kernels run on torch's OpenMP threads, else ``"pthreads"``.
    """
    lib = _load_lib()
    return {"compiled_cpu": lib is not None, "reason": _LIB_ERROR, "threads": torch.get_num_threads(),
            "thread_team": "openmp" if _LIB_OPENMP else "pthreads"}


_FORCE_TORCH = False  # tests flip this to compare the compiled and eager paths


def _use_compiled(x: torch.Tensor, *tensors: torch.Tensor) -> bool:
    if _FORCE_TORCH or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *tensors)):
        return False
    return _load_lib() is not None


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _hinted_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor; large CPU ones are hinted to use huge pages before their
    first touch (fewer page faults; the C side ignores buffers below 8 MiB)."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if out.device.type == "cpu":
        lib = _load_lib()
        if lib is not None:
            lib.bk_hugepage_hint(out.data_ptr(), out.numel() * out.element_size())
    return out


def _fresh_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new contiguous output buffer shaped like ``x`` (huge-page hinted, see :func:`_hinted_empty`)."""
    return _hinted_empty(tuple(x.shape), x.dtype if dtype is None else dtype, x.device)


def _out_buffer(x: torch.Tensor, wdt: torch.dtype, out_kind: int) -> torch.Tensor:
    return _fresh_like(x, torch.uint8 if out_kind in (OUT_U8_RINT, OUT_U8_FLOOR) else wdt)


def _c_sep(x, kx, ky, rx, ry, border, value, out=None, out_kind=OUT_PLAIN, lo=0.0, hi=0.0, wdt=None):
    """Compiled separable filter. ``x`` is float32/float64, or uint8 (read as 0..255) with ``wdt`` the
    working float dtype; ``out_kind``/``lo``/``hi`` fuse a clip or a uint8 conversion into the write."""
    lib = _load_lib()
    B, C, H, W = x.shape
    wdt = x.dtype if wdt is None else wdt
    if not kx.shape[0] == ky.shape[0] == rx.shape[0] == ry.shape[0] == B:  # the C code reads one per image
        raise AssertionError(f"blurkit: {B} images but {kx.shape[0]}/{ky.shape[0]} kernels")
    Rx, Ry = int(rx.max()), int(ry.max())
    colmap = border_index(W, Rx, Rx, border)
    rowmap = border_index(H, Ry, Ry, border)
    kx = kx.to(wdt).contiguous()
    ky = ky.to(wdt).contiguous()
    rx = rx.to(torch.int64).contiguous()
    ry = ry.to(torch.int64).contiguous()
    x = x.contiguous()
    out = _out_buffer(x, wdt, out_kind) if out is None else out
    st = lib.bk_sep(int(wdt == torch.float64), _ptr(x), _ptr(out), B, C, H, W, _ptr(kx), kx.shape[1],
                    _ptr(rx), _ptr(ky), ky.shape[1], _ptr(ry), _ptr(rowmap), _ptr(colmap), Ry, Rx,
                    float(value), torch.get_num_threads(), int(x.dtype == torch.uint8), out_kind, lo, hi)
    if st != 0:
        raise MemoryError("blurkit: the compiled separable filter could not allocate its scratch buffers")
    return out


def _c_2d(x, k, ry, rx, border, value, out=None, out_kind=OUT_PLAIN, lo=0.0, hi=0.0, wdt=None):
    """Compiled direct 2-D correlation over the kernels' non-zero taps (modes as :func:`_c_sep`)."""
    lib = _load_lib()
    B, C, H, W = x.shape
    wdt = x.dtype if wdt is None else wdt
    if not k.shape[0] == rx.shape[0] == ry.shape[0] == B:  # the C code reads one kernel per image
        raise AssertionError(f"blurkit: {B} images but {k.shape[0]} kernels")
    Rx, Ry = int(rx.max()), int(ry.max())
    colmap = border_index(W, Rx, Rx, border)
    rowmap = border_index(H, Ry, Ry, border)
    k = k.to(wdt).contiguous()
    ry = ry.to(torch.int64).contiguous()
    rx = rx.to(torch.int64).contiguous()
    x = x.contiguous()
    out = _out_buffer(x, wdt, out_kind) if out is None else out
    st = lib.bk_conv2d(int(wdt == torch.float64), _ptr(x), _ptr(out), B, C, H, W, _ptr(k), k.shape[1],
                       k.shape[2], _ptr(ry), _ptr(rx), _ptr(rowmap), _ptr(colmap), Ry, Rx, float(value),
                       torch.get_num_threads(), int(x.dtype == torch.uint8), out_kind, lo, hi)
    if st != 0:
        raise MemoryError("blurkit: the compiled 2-D filter could not allocate its scratch buffers")
    return out


def blur_effect_sums(x: torch.Tensor, weights: torch.Tensor, smooth: torch.Tensor, edge: torch.Tensor,
                     both: torch.Tensor) -> torch.Tensor | None:
    """Fused sums of the Crete blur effect on the compiled CPU path, or ``None`` where it does not apply.

    Per image: grey ``sum_c weights[c] * x[:, c]``; for each axis ``a`` the absolute correlation with
    ``edge`` along ``a`` (``sharp``) and with ``both`` (edge composed with the re-blur) along ``a``,
    both on the grey image smoothed by ``smooth`` across ``a``, symmetric borders, summed over the
    interior ``[2, n-1)``. Used by :func:`blurkit.measure.blur_effect`.

    Args:
        x: ``(B, C, H, W)`` float32 CPU tensor, no gradient; ``weights``: ``(C,)``; ``smooth``,
            ``edge``: 3 taps; ``both``: odd number of taps (correlation form).

    Returns:
        ``(B, 4)`` float64: ``sum sharp_0, sum min(sharp_0, blur_0), sum sharp_1, sum min(sharp_1, blur_1)``.
    """
    if not _use_compiled(x) or x.dtype != torch.float32 or x.dim() != 4:
        return None
    B, C, H, W = x.shape
    nb = both.numel()
    R = max(nb // 2, 1)
    x = x.contiguous()
    out = torch.empty(B, 4, dtype=torch.float64)
    wc = weights.to(torch.float64).contiguous()
    sm, ed, bo = (t.to(torch.float32).contiguous() for t in (smooth, edge, both))
    rowmap = border_index(H, R, R, "symmetric")
    colmap = border_index(W, R, R, "symmetric")
    st = _load_lib().bk_blur_effect_sums(_ptr(x), _ptr(out), B, C, H, W, _ptr(wc), _ptr(sm), _ptr(ed), _ptr(bo),
                                         nb, _ptr(rowmap), _ptr(colmap), R, torch.get_num_threads())
    if st != 0:
        raise MemoryError("blurkit: the compiled blur-effect kernel could not allocate its scratch buffers")
    return out


# ------------------------------------------------------------------------------- torch paths
def _support_1d(k: torch.Tensor) -> torch.Tensor:
    """Per-row radius of the non-zero support of centred kernels ``(B, K)`` -> long ``(B,)``."""
    K = k.shape[1]
    if k.requires_grad and torch.is_grad_enabled():
        return torch.full((k.shape[0],), K // 2, dtype=torch.int64, device=k.device)
    off = (torch.arange(K, device=k.device) - K // 2).abs()
    nz = k.detach() != 0
    return torch.where(nz, off[None, :], torch.zeros_like(off)[None, :]).amax(dim=1)


def _support_2d(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-kernel (ry, rx) of the non-zero support of centred kernels ``(B, Kh, Kw)``."""
    B, Kh, Kw = k.shape
    if k.requires_grad and torch.is_grad_enabled():
        return (torch.full((B,), Kh // 2, dtype=torch.int64, device=k.device),
                torch.full((B,), Kw // 2, dtype=torch.int64, device=k.device))
    nz = k.detach() != 0
    oy = (torch.arange(Kh, device=k.device) - Kh // 2).abs()
    ox = (torch.arange(Kw, device=k.device) - Kw // 2).abs()
    ry = torch.where(nz.any(dim=2), oy[None, :], torch.zeros_like(oy)[None, :]).amax(dim=1)
    rx = torch.where(nz.any(dim=1), ox[None, :], torch.zeros_like(ox)[None, :]).amax(dim=1)
    return ry, rx


_STRIP_ELEMS = 1 << 22  # CPU convs on larger inputs run in strips of rows (oneDNN workspace ~9x input)


def _conv(y: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    """'Valid' grouped ``conv2d``; on CPU, large inputs go in strips of output rows to bound memory."""
    if y.device.type != "cpu" or y.numel() <= _STRIP_ELEMS:
        return F.conv2d(y, w, groups=groups)
    kh = w.shape[-2]
    h_out = y.shape[-2] - kh + 1
    rows = max(1, _STRIP_ELEMS // max(1, y.shape[1] * y.shape[-1]))
    return torch.cat([F.conv2d(y[..., a:min(a + rows, h_out) + kh - 1, :], w, groups=groups)
                      for a in range(0, h_out, rows)], dim=-2)


def _groups(keys: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
    """Split the batch by key: [(key, indices or None for 'all')]."""
    uniq = torch.unique(keys)
    if uniq.numel() == 1:
        return [(int(uniq.item()), None)]
    return [(int(u), torch.nonzero(keys == u).flatten()) for u in uniq.tolist()]


def _assemble(parts: list[tuple[torch.Tensor, torch.Tensor | None]], B: int) -> torch.Tensor:
    if len(parts) == 1 and parts[0][1] is None:
        return parts[0][0]
    vals = torch.cat([p for p, _ in parts], dim=0)
    idx = torch.cat([i for _, i in parts], dim=0)
    return vals.index_select(0, torch.argsort(idx))


def _shared(k: torch.Tensor) -> bool:
    """True when every image uses the same kernel (an expanded view, or equal rows)."""
    return k.shape[0] == 1 or k.stride(0) == 0 or bool((k.detach() == k.detach()[:1]).all())


def _torch_sep_shared(x, kx, ky, border, value):
    """One kernel pair for the whole batch: depthwise convs over channels, the batch kept as batch."""
    C = x.shape[1]
    Kx, Ky = kx.shape[1], ky.shape[1]
    xp = pad(x, (Kx // 2, Kx // 2, Ky // 2, Ky // 2), border, value)
    y = F.conv2d(xp, kx[:1].to(x.dtype).expand(C, Kx)[:, None, None, :], groups=C)
    return F.conv2d(y, ky[:1].to(x.dtype).expand(C, Ky)[:, None, :, None], groups=C)


def _torch_sep(x, kx, ky, rx, ry, border, value):
    B, C, H, W = x.shape
    Kx, Ky = kx.shape[1], ky.shape[1]
    if B > 1 and x.numel() <= _STRIP_ELEMS and _shared(kx) and _shared(ky):
        return _torch_sep_shared(x, kx, ky, border, value)
    keys = rx * (int(ry.max()) + 1) + ry
    parts = []
    for key, idx in _groups(keys):
        r_x, r_y = divmod(key, int(ry.max()) + 1)
        xs = x if idx is None else x.index_select(0, idx)
        n = xs.shape[0]
        if r_x == 0 and r_y == 0:
            kxs = kx[:, Kx // 2] if idx is None else kx.index_select(0, idx)[:, Kx // 2]
            kys = ky[:, Ky // 2] if idx is None else ky.index_select(0, idx)[:, Ky // 2]
            parts.append((xs * (kxs * kys).to(xs.dtype)[:, None, None, None], idx))
            continue
        wx = (kx if idx is None else kx.index_select(0, idx))[:, Kx // 2 - r_x: Kx // 2 + r_x + 1]
        wy = (ky if idx is None else ky.index_select(0, idx))[:, Ky // 2 - r_y: Ky // 2 + r_y + 1]
        # Both passes are (k x 1) grouped convs; the horizontal one runs on the transposed view.
        y = xs.reshape(1, n * C, H, W)
        wxs = wx.to(x.dtype).repeat_interleave(C, 0)
        wys = wy.to(x.dtype).repeat_interleave(C, 0)
        if r_y:  # rows first, so constant rows get value * sum(kx) from the horizontal pass
            y = pad(y, (0, 0, r_y, r_y), border, value)
        if r_x:
            yt = pad(y.transpose(-1, -2), (0, 0, r_x, r_x), border, value)
            y = _conv(yt, wxs[:, None, :, None], n * C).transpose(-1, -2)
        else:
            y = y * wxs.reshape(1, -1, 1, 1)
        if r_y:
            y = _conv(y, wys[:, None, :, None], n * C)
        else:
            y = y * wys.reshape(1, -1, 1, 1)
        parts.append((y.reshape(n, C, H, W), idx))
    return _assemble(parts, B)


def _torch_2d(x, k, ry, rx, border, value):
    B, C, H, W = x.shape
    Kh, Kw = k.shape[1:]
    keys = ry * (int(rx.max()) + 1) + rx
    parts = []
    for key, idx in _groups(keys):
        r_y, r_x = divmod(key, int(rx.max()) + 1)
        xs = x if idx is None else x.index_select(0, idx)
        ks = k if idx is None else k.index_select(0, idx)
        n = xs.shape[0]
        w = ks[:, Kh // 2 - r_y: Kh // 2 + r_y + 1, Kw // 2 - r_x: Kw // 2 + r_x + 1].to(x.dtype)
        xp = pad(xs, (r_x, r_x, r_y, r_y), border, value)
        y = _conv(xp.reshape(1, n * C, H + 2 * r_y, W + 2 * r_x), w.repeat_interleave(C, 0)[:, None], n * C)
        parts.append((y.reshape(n, C, H, W), idx))
    return _assemble(parts, B)


def _fft_2d(x, k, border, value):
    """Linear correlation through the FFT; the border is emulated by padding first."""
    B, C, H, W = x.shape
    if k.shape[0] > 1 and not k.requires_grad and _shared(k):
        k = k[:1]  # one kernel for the whole batch: one transform, broadcast (rows with their own
        # gradient keep their own transforms)
    nk = k.shape[0]
    Kh, Kw = k.shape[1:]
    Ry, Rx = Kh // 2, Kw // 2
    xp = pad(x, (Rx, Rx, Ry, Ry), border, value)
    Hp, Wp = H + 2 * Ry, W + 2 * Rx
    g = torch.cat([torch.cat([k.flip(-1, -2).to(x.dtype), torch.zeros(nk, Kh, Wp - Kw, dtype=x.dtype,
                                                                      device=x.device)], dim=2),
                   torch.zeros(nk, Hp - Kh, Wp, dtype=x.dtype, device=x.device)], dim=1)
    g = torch.roll(g, shifts=(-Ry, -Rx), dims=(1, 2))
    Gf = torch.fft.rfft2(g)
    del g
    Xf = torch.fft.rfft2(xp)
    del xp  # free intermediates early: peak memory stays a few times the batch
    if Xf.requires_grad or Gf.requires_grad:
        Xf = Xf * Gf[:, None]
    else:
        Xf.mul_(Gf[:, None])
    del Gf
    y = torch.fft.irfft2(Xf, s=(Hp, Wp))
    return y[..., Ry:Ry + H, Rx:Rx + W].contiguous()


def _keep_identity(y: torch.Tensor, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Images whose kernel is a unit impulse come back bit for bit (the FFT would add rounding noise)."""
    Kh, Kw = k.shape[1:]
    kd = k.detach()
    centre = kd[:, Kh // 2, Kw // 2]
    ident = (centre == 1) & ((kd != 0).sum(dim=(1, 2)) == 1)
    if not bool(ident.any()):
        return y
    return torch.where(ident.view(-1, 1, 1, 1), x * centre.view(-1, 1, 1, 1).to(x.dtype), y)


def _fold_onto_period(k: torch.Tensor, n: int, border: str) -> torch.Tensor:
    """A centred kernel ``(B, K)`` far longer than the axis (``K > 4n + 1``) folded, exactly, into one of
    at most ``4n + 1`` taps with the same effect on an axis of length ``n``: the border's source index
    repeats with a period (reflect ``2n - 2``, symmetric ``2n``, circular ``n``), so taps whose
    offsets agree modulo it are summed; with replicate or constant every tap more than ``n`` beyond
    the centre lands on the same edge pixel (or outside) for every output pixel, so those are summed
    into the tap at offset ``-n`` or ``+n``. Without it, folding a sigma-1e6 kernel onto a 512-px axis
    needed ``512 x 6e6`` index entries."""
    B, K = k.shape
    R = K // 2
    if K <= 4 * n + 1:
        return k
    d = torch.arange(-R, R + 1, device=k.device)
    period = {"reflect": 2 * n - 2, "symmetric": 2 * n, "circular": n}.get(border)
    if period is not None:
        new = d.remainder(max(period, 1))  # in [0, period): offsets 0 .. period - 1 of a kernel of radius period
        r2 = max(period, 1)
    else:  # replicate, constant
        new = d.clamp(-n, n)
        r2 = n
    out = torch.zeros(B, 2 * r2 + 1, dtype=k.dtype, device=k.device)
    return out.index_add(1, new + r2, k)


def _axis_matrix(k: torch.Tensor, n: int, border: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold centred 1-D kernels ``(B, K)`` and a border onto an axis of length ``n``.

    Returns ``(M, c)``: ``M`` ``(B, n, n)`` with ``M[b, i, j] = sum of k[b, t] over the taps t whose padded
    position i + t - K//2 has source j``, and ``c`` ``(B, n)`` the weight that falls on a constant border.
    Filtering along the axis is then ``M @ x + value * c``, whatever the kernel's size.
    """
    k = _fold_onto_period(k, n, border)
    B, K = k.shape
    idx = _index_on(n, K // 2, K // 2, border, k.device)
    src = idx[torch.arange(n, device=k.device)[:, None] + torch.arange(K, device=k.device)[None, :]]  # (n, K)
    inside = (src >= 0).to(k.dtype)
    w = k[:, None, :] * inside  # (B, n, K)
    M = torch.zeros(B, n, n, dtype=k.dtype, device=k.device)
    M = M.scatter_add(2, src.clamp_min(0).expand(B, n, K), w)
    c = (k[:, None, :] * (1 - inside)).sum(-1)
    return M, c


def _matrix_sep(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str, value: float) -> torch.Tensor:
    """Separable filtering as two small matrix products (kernels far larger than the image)."""
    H, W = x.shape[-2:]
    Mx, cx = _axis_matrix(kx.to(x.dtype), W, border)
    My, cy = _axis_matrix(ky.to(x.dtype), H, border)
    y = torch.matmul(x, Mx.transpose(1, 2)[:, None])
    if border == "constant" and value != 0:
        y = y + value * cx[:, None, None, :]
    y = torch.matmul(My[:, None], y)
    if border == "constant" and value != 0:
        y = y + (value * kx.to(x.dtype).sum(-1))[:, None, None, None] * cy[:, None, :, None]
    return y


def _sep_as_2d(kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    return ky[:, :, None] * kx[:, None, :]


# --------------------------------------------------------------------------------- dispatcher
# Per-pixel cost model, in units of one multiply-add of the compiled CPU path, measured on a 2-core
# x86-64 CPU (64x3x224x224 float32): compiled direct ~0.06 ns per tap and pixel, eager grouped
# conv ~2.5x that, FFT (rfft2 + product + irfft2 of the padded batch) ~26 ns per pixel, i.e.
# ~25 units per log2(N). On CUDA the FFT is relatively cheaper; the constant there is a heuristic.
_FFT_UNIT = {"cpu": 25.0, "cuda": 60.0}
_EAGER_CPU_FACTOR = 2.5


def _choose(method: str, x: torch.Tensor, taps: float, fft_size: int, compiled: bool) -> str:
    """Pick "direct" (separable or 2-D taps) or "fft" by estimated cost, unless ``method`` is fixed."""
    if method != "auto":
        return method
    dev = x.device.type
    # the FFT transforms the padded plane: its cost per OUTPUT pixel grows with the padding
    H, W = x.shape[-2:]
    fft_cost = _FFT_UNIT.get(dev, _FFT_UNIT["cuda"]) * math.log2(max(fft_size, 2)) * fft_size / max(H * W, 1)
    direct_cost = taps * (_EAGER_CPU_FACTOR if dev == "cpu" and not compiled else 1.0)
    return "direct" if direct_cost <= fft_cost else "fft"


def _to_work(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in the working float dtype (a fresh, huge-page-hinted buffer on the compiled CPU path)."""
    if x.dtype == dtype:
        return x
    if x.device.type == "cpu" and not x.requires_grad and _load_lib() is not None:
        buf = torch.empty(x.shape, dtype=dtype)
        _load_lib().bk_hugepage_hint(buf.data_ptr(), buf.numel() * buf.element_size())
        return buf.copy_(x)
    return x.to(dtype)


def _from_work(y: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    if y.dtype == images.dtype:  # e.g. uint8 already produced by the compiled kernels
        pass
    elif images.dtype == torch.uint8:
        y = (y.round_().clamp_(0, 255) if not y.requires_grad else y.round().clamp(0, 255)).to(torch.uint8)
    elif y.dtype != images.dtype:
        y = y.to(images.dtype)
    if images.dim() == 4 and not images.is_contiguous() and images.is_contiguous(
            memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    return y


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    return method


def _batch_kernels(k: torch.Tensor, B: int, name: str) -> torch.Tensor:
    if k.shape[0] == B:
        return k
    if k.shape[0] == 1:
        return k.expand(B, *k.shape[1:])
    raise ValueError(f"{name} has {k.shape[0]} kernels but the batch has {B} images; "
                     f"give one kernel or one per image")


def _u8_compiled(x4: torch.Tensor, *kernels: torch.Tensor) -> bool:
    """uint8 input that the compiled kernels read directly (no float copy of the batch)."""
    return (x4.dtype == torch.uint8 and x4.device.type == "cpu" and not _FORCE_TORCH
            and not (torch.is_grad_enabled() and any(k.requires_grad for k in kernels))
            and _load_lib() is not None)


def _apply_out(y: torch.Tensor, out_kind: int, lo: float, hi: float) -> torch.Tensor:
    """The eager equivalent of the compiled kernels' fused output modes."""
    if out_kind == OUT_PLAIN:
        return y
    y = y.clamp(lo, hi)
    if out_kind == OUT_CLIP:
        return y
    if out_kind == OUT_U8_RINT:
        return y.round().to(torch.uint8)
    return (y + (2.0 ** -30 if y.dtype == torch.float64 else 2.0 ** -10)).floor().to(torch.uint8)


def _run_sep(x4: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str, method: str,
             value: float, radius: int | None = None, out_kind: int | None = None, lo: float = 0.0,
             hi: float = 255.0) -> torch.Tensor:
    """Core separable dispatch on a (B, C, H, W) batch.

    ``radius``: when every kernel is known to have this radius on both axes (a scalar parameter),
    the per-image support detection is skipped. ``out_kind`` (``OUT_*``, with ``lo``/``hi``) fuses a
    clip or a uint8 conversion into the output; ``None`` returns the working float result, except
    that uint8 input on the compiled path comes back as uint8 rounded half-to-even (what
    :func:`_from_work` would make of it).
    """
    wdt = torch.float64 if torch.float64 in (x4.dtype, kx.dtype, ky.dtype) else torch.float32
    u8c = _u8_compiled(x4, kx, ky)
    x = x4 if u8c else _to_work(x4, wdt)
    kx = kx.to(device=x.device, dtype=wdt)
    ky = ky.to(device=x.device, dtype=wdt)
    if radius is not None:
        rx = ry = torch.full((x.shape[0],), radius, dtype=torch.int64, device=x.device)
        taps = 2.0 * (2 * radius + 1)
    else:
        rx, ry = _support_1d(kx), _support_1d(ky)
        taps = float((2 * rx + 1).float().mean() + (2 * ry + 1).float().mean())
    compiled = u8c or _use_compiled(x, kx, ky)
    kind = (OUT_U8_RINT if u8c else OUT_PLAIN) if out_kind is None else out_kind
    if out_kind is None and u8c:
        lo, hi = 0.0, 255.0
    H, W = x.shape[-2:]
    if method == "auto" and (kx.shape[1] > 4 * W or ky.shape[1] > 4 * H):
        # Kernels far wider than the image: fold them onto the border (cost ~ H + W per pixel).
        return _apply_out(_matrix_sep(_to_work(x, wdt), kx, ky, border, value), kind, lo, hi)
    m = _choose(method, x, taps, (H + ky.shape[1]) * (W + kx.shape[1]), compiled)
    if m == "direct" and method == "auto":
        m = "separable"
    if compiled and m in ("separable", "direct"):
        if m == "separable":
            return _c_sep(x, kx, ky, rx, ry, border, value, out_kind=kind, lo=lo, hi=hi, wdt=wdt)
        return _c_2d(x, _sep_as_2d(kx, ky), ry, rx, border, value, out_kind=kind, lo=lo, hi=hi, wdt=wdt)
    x = _to_work(x, wdt)
    if m == "fft":
        k2 = _sep_as_2d(kx, ky)
        y = _keep_identity(_fft_2d(x, k2, border, value), x, k2)
    elif m == "direct":
        y = _torch_2d(x, _sep_as_2d(kx, ky), ry, rx, border, value)
    elif m in ("separable", "torch"):
        y = _torch_sep(x, kx, ky, rx, ry, border, value)
    else:  # pragma: no cover
        raise AssertionError(m)
    return _apply_out(y, kind, lo, hi)


def _run_2d(x4: torch.Tensor, k: torch.Tensor, border: str, method: str, value: float,
            out_kind: int | None = None, lo: float = 0.0, hi: float = 255.0) -> torch.Tensor:
    """Core 2-D dispatch on a (B, C, H, W) batch (``out_kind`` as in :func:`_run_sep`)."""
    wdt = torch.float64 if torch.float64 in (x4.dtype, k.dtype) else torch.float32
    u8c = _u8_compiled(x4, k)
    x = x4 if u8c else _to_work(x4, wdt)
    k = k.to(device=x.device, dtype=wdt)
    if method == "separable":
        raise ValueError("method='separable' needs separable kernels (use sepfilter2d, or an axis-aligned "
                         "Gaussian/box blur); got general 2-D kernels. Use 'auto', 'direct' or 'fft'")
    ry, rx = _support_2d(k)
    compiled = u8c or _use_compiled(x, k)
    kind = (OUT_U8_RINT if u8c else OUT_PLAIN) if out_kind is None else out_kind
    if out_kind is None and u8c:
        lo, hi = 0.0, 255.0
    H, W = x.shape[-2:]
    if compiled and not (k.requires_grad and torch.is_grad_enabled()):
        taps = float((k.detach() != 0).sum(dim=(1, 2)).float().mean())
    else:
        taps = float(((2 * ry + 1) * (2 * rx + 1)).float().mean())
    m = _choose(method, x, taps, (H + k.shape[1]) * (W + k.shape[2]), compiled)
    if compiled and m == "direct":
        return _c_2d(x, k, ry, rx, border, value, out_kind=kind, lo=lo, hi=hi, wdt=wdt)
    x = _to_work(x, wdt)
    if m == "fft":
        return _apply_out(_keep_identity(_fft_2d(x, k, border, value), x, k), kind, lo, hi)
    return _apply_out(_torch_2d(x, k, ry, rx, border, value), kind, lo, hi)


# ---------------------------------------------------------------------------------- public API
def filter2d(
    images: torch.Tensor,
    kernels: torch.Tensor,
    *,
    border: str = "reflect",
    method: str = "auto",
    value: float = 0.0,
) -> torch.Tensor:
    """Correlate every image with its own 2-D kernel.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``; float16/bfloat16/float32/float64 or uint8.
        kernels: ``(B, kh, kw)`` (one per image) or ``(kh, kw)`` (shared); odd sizes; floating.
            Kernels are used as given (not normalised). A zero frame around a kernel costs nothing.
        border: ``"reflect"``, ``"symmetric"``, ``"replicate"``, ``"circular"`` or ``"constant"``.
        method: ``"auto"`` (by cost), ``"direct"``, ``"fft"`` or ``"torch"`` (eager PyTorch, direct).
        value: fill value for ``border="constant"`` (in the image's units).

    Returns:
        Tensor with the shape, dtype, device and memory format of ``images``.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> y = bk.filter2d(x, bk.kernels.disk(torch.tensor([1.5, 3.0])))
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    k = _k._check_kernel_tensor(kernels)
    k = _batch_kernels(k, x4.shape[0], "kernels")
    y = _run_2d(x4, k, border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)


def sepfilter2d(
    images: torch.Tensor,
    kernel_x: torch.Tensor,
    kernel_y: torch.Tensor,
    *,
    border: str = "reflect",
    method: str = "auto",
    value: float = 0.0,
) -> torch.Tensor:
    """Correlate every image with its own separable kernel ``kernel_y[:, None] * kernel_x[None, :]``.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``.
        kernel_x: ``(B, kx)`` or ``(kx,)``, odd length, applied along the width.
        kernel_y: ``(B, ky)`` or ``(ky,)``, odd length, applied along the height.
        border, method, value: as in :func:`filter2d` (``method`` also accepts ``"separable"``).

    Returns:
        Tensor like ``images``.
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    ks = []
    for name, kk in (("kernel_x", kernel_x), ("kernel_y", kernel_y)):
        if not isinstance(kk, torch.Tensor) or not kk.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor of shape (B, k) or (k,); got "
                            f"{type(kk).__name__ if not isinstance(kk, torch.Tensor) else kk.dtype}")
        kk = kk.unsqueeze(0) if kk.dim() == 1 else kk
        if kk.dim() != 2 or kk.shape[1] % 2 == 0:
            raise ValueError(f"{name} must have shape (B, k) or (k,) with odd k; got shape {tuple(kk.shape)}")
        if not bool(torch.isfinite(kk.detach()).all()):
            raise ValueError(f"{name} must be finite; got {describe(kk)}")
        ks.append(_batch_kernels(kk, x4.shape[0], name))
    y = _run_sep(x4, ks[0], ks[1], border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)


def _plain_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_SCALAR_KERNELS: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _scalar_gauss1d(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (1, 2r+1) Gaussian kernel of one Python-number sigma, built once per (sigma, truncate, dtype)."""
    key = (sigma, truncate, dtype, device)
    k = _SCALAR_KERNELS.get(key)
    if k is None:
        k = _k.gaussian1d(torch.tensor([sigma], dtype=torch.float64), truncate=truncate, dtype=dtype).to(device)
        _SCALAR_KERNELS[key] = k
        if len(_SCALAR_KERNELS) > 256:
            _SCALAR_KERNELS.popitem(last=False)
    return k


def _work_dtype(x: torch.Tensor, *params: object) -> torch.dtype:
    """float64 for float64 images or float64 parameter tensors, else float32 (Python numbers are
    kept in float64 while kernels are built, then cast)."""
    if x.dtype == torch.float64 or any(isinstance(p, torch.Tensor) and p.dtype == torch.float64 for p in params):
        return torch.float64
    return torch.float32


def _any_grad(*params: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(p.requires_grad for p in params)


def _all_zero(t: torch.Tensor) -> bool:
    return not t.requires_grad and bool((t == 0).all())


def gaussian_blur(
    images: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    sigma_y: float | torch.Tensor | None = None,
    angle: float | torch.Tensor = 0.0,
    truncate: float = 3.0,
    border: str = "reflect",
    method: str = "auto",
    value: float = 0.0,
) -> torch.Tensor:
    """Gaussian blur with one (possibly anisotropic, rotated) Gaussian per image.

    Matches ``scipy.ndimage.gaussian_filter(x, sigma, truncate=t, radius=ceil(t*sigma))`` with the
    corresponding mode (see the module docs), and OpenCV ``GaussianBlur`` with ``ksize=2r+1``.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``; any float dtype or uint8, any value range.
        sigma: standard deviation in pixels (along x after rotation), ``>= 0``; a number or a
            tensor ``(B,)``. ``sigma == 0`` returns the image unchanged.
        sigma_y: standard deviation along y (default ``sigma``: isotropic).
        angle: rotation of the anisotropic Gaussian in degrees (counter-clockwise as displayed).
        truncate: kernel radius ``ceil(truncate * sigma)`` per image (``2.0``: Jang & Tong 2024).
        border: border mode; ``value`` fills ``"constant"``.
        method: ``"auto"``, ``"separable"`` (axis-aligned only), ``"direct"``, ``"fft"`` or ``"torch"``.

    Returns:
        Blurred tensor with the shape, dtype, device and memory format of ``images``;
        differentiable with respect to ``images``, ``sigma``, ``sigma_y`` and ``angle``.

    Example:
        >>> x = torch.rand(4, 3, 64, 64)
        >>> y = bk.gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0, 4.0]), truncate=2.0)
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    truncate = check_truncate(truncate)
    B = x4.shape[0]
    dev = x4.device
    if _plain_number(sigma) and sigma_y is None and _plain_number(angle) and math.isfinite(angle) \
            and angle % 180 == 0 and math.isfinite(sigma) and sigma > 0:
        # One Python-number sigma: a cached, trimmed kernel and no per-image bookkeeping.
        wdt = torch.float64 if x4.dtype == torch.float64 else torch.float32
        k = _scalar_gauss1d(float(sigma), truncate, wdt, dev).expand(B, -1)
        y = _run_sep(x4, k, k, border, method, value, radius=k.shape[1] // 2)
        return restore_batch(_from_work(y, x4), squeezed)
    sx = per_sample(sigma, "sigma", B, device=dev, dtype=torch.float64)
    sy = sx if sigma_y is None else per_sample(sigma_y, "sigma_y", B, device=dev, dtype=torch.float64)
    an = per_sample(angle, "angle", B, device=dev, minimum=None, dtype=torch.float64)
    if _all_zero(sx) and _all_zero(sy) and not _any_grad(an):
        return images.clone()
    # Isotropic kernels do not depend on the angle; at multiples of 90 degrees the rotated kernel is
    # the axis-aligned one with the two sigmas swapped (both separable, exact).
    rotated = an.requires_grad or (sigma_y is not None and bool((an.detach().remainder(90.0) != 0).any()))
    if not rotated and sigma_y is not None:
        swap = an.detach().remainder(180.0) == 90
        if bool(swap.any()):
            sx, sy = torch.where(swap, sy, sx), torch.where(swap, sx, sy)
    wdt = _work_dtype(x4, sigma, sigma_y, angle)
    if rotated:
        if method == "separable":
            raise ValueError("method='separable' cannot apply a rotated anisotropic Gaussian (angle not a "
                             "multiple of 90 degrees); use 'auto', 'direct' or 'fft'")
        k = _k.gaussian(sx, sy, an, truncate=truncate, dtype=wdt, device=dev)
        y = _run_2d(x4, k, border, method, value)
    else:
        kx = _k.gaussian1d(sx, truncate=truncate, dtype=wdt, device=dev)
        ky = kx if sigma_y is None else _k.gaussian1d(sy, truncate=truncate, dtype=wdt, device=dev)
        y = _run_sep(x4, kx, ky, border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)


def box_blur(images: torch.Tensor, size: int | torch.Tensor, *, border: str = "reflect",
             method: str = "auto", value: float = 0.0) -> torch.Tensor:
    """Box (moving-average) blur with an odd ``size x size`` window per image.

    Matches ``cv2.blur(x, (size, size))`` (border reflect = BORDER_REFLECT_101) and
    ``scipy.ndimage.uniform_filter``.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``.
        size: odd positive window size; a number or a tensor ``(B,)``. ``size == 1`` is the identity.

    Returns:
        Tensor like ``images``.
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    n = odd_size(size, "size", x4.shape[0])
    if bool((n == 1).all()):
        return images.clone()
    wdt = torch.float64 if x4.dtype == torch.float64 else torch.float32
    k = _k.box1d(n.to(x4.device), dtype=wdt, device=x4.device)
    y = _run_sep(x4, k, k, border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)


def defocus_blur(images: torch.Tensor, radius: float | torch.Tensor, *, border: str = "reflect",
                 method: str = "auto", value: float = 0.0) -> torch.Tensor:
    """Defocus (lens) blur with an anti-aliased disk of sub-pixel ``radius`` per image.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``.
        radius: disk radius in pixels, ``>= 0`` (0 is the identity); a number or ``(B,)``.

    Returns:
        Tensor like ``images``; differentiable with respect to ``images`` and ``radius``.
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    r = per_sample(radius, "radius", x4.shape[0], device=x4.device, dtype=torch.float64)
    if _all_zero(r):
        return images.clone()
    wdt = _work_dtype(x4, radius)
    y = _run_2d(x4, _k.disk(r, dtype=wdt, device=x4.device), border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)


def motion_blur(images: torch.Tensor, length: float | torch.Tensor, angle: float | torch.Tensor = 0.0, *,
                border: str = "reflect", method: str = "auto", value: float = 0.0) -> torch.Tensor:
    """Straight-line motion blur: a streak of sub-pixel ``length`` at ``angle`` per image.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``.
        length: streak length in pixels, ``>= 0`` (0 is the identity); a number or ``(B,)``.
        angle: direction in degrees, counter-clockwise as displayed; a number or ``(B,)``.

    Returns:
        Tensor like ``images``; the blur is centred (no shift) and differentiable with respect to
        ``images``, ``length`` and ``angle``.
    """
    x4, squeezed = check_images(images)
    check_border(border)
    _check_method(method)
    value = check_value(value)
    B = x4.shape[0]
    L = per_sample(length, "length", B, device=x4.device, dtype=torch.float64)
    an = per_sample(angle, "angle", B, device=x4.device, minimum=None, dtype=torch.float64)
    if _all_zero(L) and not _any_grad(an):
        return images.clone()
    wdt = _work_dtype(x4, length, angle)
    y = _run_2d(x4, _k.motion(L, an, dtype=wdt, device=x4.device), border, method, value)
    return restore_batch(_from_work(y, x4), squeezed)
