"""Compiled CPU kernels for ImageNet-C's noise corruptions (Gaussian, shot and impulse noise).

Each function takes a 4-D batch ``(B, C, H, W)`` with values in ``[0, 1]`` (float) or ``0..255``
(uint8, meaning ``v / 255``) and returns a new tensor of the same shape and dtype:

* float32 / float64 in, the same dtype out, clipped to ``[0, 1]``;
* uint8 in, uint8 out ``floor(clip(y, 0, 1) * 255)`` (the reference's ``np.uint8(clip(y) * 255)``);
* other float dtypes (float16, bfloat16) are computed in float32 and cast back.

On CPU (float32, float64 or uint8, no autograd) one multi-threaded C pass draws the noise with a
counter-based generator: the noise of every value is a pure function of a 64-bit seed and the value's
flat index, so results do not depend on the thread count. The seed is drawn from the caller's
``torch.Generator`` (or torch's default generator, so ``torch.manual_seed`` reproduces a run).
Elsewhere (GPU, autograd, no compiled extension) equivalent torch operations draw the same
distributions, with different random numbers.

The distributions (Hendrycks & Dietterich 2019, ``make_imagenet_c.py``):

* Gaussian noise: ``clip(x + c z)``, ``z ~ N(0, 1)`` (Box-Muller in float32, log/sqrt/sin/cos with
  relative error ~1e-7, uniforms with 2^-32 resolution: tails reach 6.6 sigma).
* Shot noise: ``clip(Poisson(c x) / c)``, exact up to the 2^-32 resolution of the uniforms, for any
  float ``x`` (``c x`` split into a 256-level grid plus sub-levels plus a thinned remainder).
* Impulse noise: with probability ``c`` a value becomes 1 or 0 (equally likely), else it is kept
  (``skimage.util.random_noise(mode="s&p", amount=c)``).

Example:
    >>> import torch
    >>> from blurkit import _noise
    >>> x = torch.rand(4, 3, 32, 32)
    >>> g = torch.Generator().manual_seed(0)
    >>> y = _noise.shot_noise(x, 60.0, g)
    >>> bool(((y >= 0) & (y <= 1)).all())
    True
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections import OrderedDict

import torch

from . import filtering as _f
from ._validation import from_unit, to_unit

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "compiled_available"]

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.uint8: 2}
_SHOT_C_MAX = 4096.0      # larger rates use torch.poisson (the tables grow like 256 * 2 * ceil(c) words)
_AUX_CAP = 64
_LOCK = threading.Lock()
_SHOT_TABLES: OrderedDict[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = OrderedDict()
_READY: bool | None = None


def _lib() -> ctypes.CDLL | None:
    """The compiled library with the noise symbols' signatures set, or ``None``."""
    global _READY
    lib = _f._load_lib()
    if _READY is None:
        names = ("bk_noise_gaussian", "bk_noise_impulse", "bk_noise_shot", "bk_noise_shot_layout",
                 "bk_noise_shot_tables", "bk_hugepage_hint")
        if lib is None or not all(hasattr(lib, n) for n in names):
            _READY = False
        else:
            vp, i64, u64, ci, cd = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int, ctypes.c_double
            lib.bk_noise_gaussian.argtypes = [ci, vp, vp, i64, cd, u64, ci]
            lib.bk_noise_gaussian.restype = ci
            lib.bk_noise_impulse.argtypes = [ci, vp, vp, i64, cd, u64, ci]
            lib.bk_noise_impulse.restype = ci
            lib.bk_noise_shot_layout.argtypes = [cd, vp]
            lib.bk_noise_shot_layout.restype = ci
            lib.bk_noise_shot_tables.argtypes = [cd, vp, vp, vp, ci]
            lib.bk_noise_shot_tables.restype = ci
            lib.bk_noise_shot.argtypes = [ci, vp, vp, i64, cd, vp, vp, vp, ci, u64, ci]
            lib.bk_noise_shot.restype = ci
            _READY = True
    return lib if _READY else None


def compiled_available() -> bool:
    """Whether the compiled noise kernels are built and loadable."""
    return _lib() is not None


def _use_c(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in _DTYPE_CODE and not x.requires_grad
            and x.numel() > 0 and _lib() is not None)


def _check(x: object, c: object, generator: object, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a 4-D torch.Tensor (B, C, H, W); got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8):
        raise TypeError(f"images must have dtype float16, bfloat16, float32, float64 or uint8; got {x.dtype}")
    number = isinstance(c, (int, float)) or (isinstance(c, torch.Tensor) and c.numel() == 1)
    if isinstance(c, bool) or not number:
        raise TypeError(f"{name} must be a number; got {type(c).__name__}")
    cf = float(c)
    below = cf <= lo if lo_open else cf < lo
    if not math.isfinite(cf) or below or cf > hi:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be a finite number in {interval}; got {c!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    return cf


def _seed(generator: torch.Generator | None) -> int:
    """A 62-bit seed drawn from ``generator`` (torch's default CPU generator when None)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, dtype=torch.int64).item())


def _run(fn_name: str, x: torch.Tensor, c: float, generator: torch.Generator | None, *extra) -> torch.Tensor:
    lib = _lib()
    x = x.contiguous()
    out = _f._fresh_like(x)
    seed = _seed(generator)
    fn = getattr(lib, fn_name)
    st = fn(_DTYPE_CODE[x.dtype], x.data_ptr(), out.data_ptr(), x.numel(), c, *extra, seed,
            torch.get_num_threads())
    if st != 0:
        raise MemoryError(f"blurkit: the compiled {fn_name[9:]} noise kernel failed (status {st})")
    return out


# -------------------------------------------------------------------------------------- Gaussian
def gaussian_noise(x: torch.Tensor, c: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise ``clip(x + c z, 0, 1)``, ``z ~ N(0, 1)`` i.i.d. per value.

    Args:
        x: ``(B, C, H, W)`` in ``[0, 1]`` (float) or uint8 (``v / 255``).
        c: noise standard deviation in units of the ``[0, 1]`` range (ImageNet-C: .08 .. .38), >= 0.
        generator: ``torch.Generator`` for the noise (default: torch's global generator).

    Returns:
        Tensor like ``x`` (uint8: ``floor(clip(y) * 255)``).

    Example:
        >>> y = gaussian_noise(torch.full((1, 3, 8, 8), 0.5), 0.1, torch.Generator().manual_seed(0))
    """
    cf = _check(x, c, generator, "c", 0.0, 1e6)
    if _use_c(x):
        return _run("bk_noise_gaussian", x, cf, generator)
    xf = to_unit(x)
    n = torch.randn(xf.shape, generator=generator, device=xf.device, dtype=xf.dtype)
    return from_unit(xf + cf * n, x)


# ------------------------------------------------------------------------------------------ shot
def _shot_tables(c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Alias tables for rate ``c`` (built in C once, then cached for the 8 most recent rates)."""
    with _LOCK:
        hit = _SHOT_TABLES.get(c)
        if hit is not None:
            _SHOT_TABLES.move_to_end(c)
            return hit
    lib = _lib()
    lay = torch.zeros(3, dtype=torch.int64)
    if lib.bk_noise_shot_layout(c, lay.data_ptr()) != 0:
        raise ValueError(f"c must be in (0, {_SHOT_C_MAX:g}] for the compiled shot noise; got {c!r}")
    bits, bits2 = int(lay[0]), int(lay[1])
    tab = torch.empty((256, 1 << bits), dtype=torch.int32)
    tab2 = torch.empty((256, 1 << bits2), dtype=torch.int32)
    aux = torch.empty(_AUX_CAP, dtype=torch.int32)
    naux = lib.bk_noise_shot_tables(c, tab.data_ptr(), tab2.data_ptr(), aux.data_ptr(), _AUX_CAP)
    if naux < 1:
        raise MemoryError("blurkit: could not build the shot-noise tables")
    entry = (tab, tab2, aux, naux)
    with _LOCK:
        _SHOT_TABLES[c] = entry
        while len(_SHOT_TABLES) > 8:
            _SHOT_TABLES.popitem(last=False)
    return entry


def shot_noise(x: torch.Tensor, c: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson (shot) noise ``clip(Poisson(c x) / c, 0, 1)``, independent per value.

    Args:
        x: ``(B, C, H, W)`` in ``[0, 1]`` (float) or uint8 (``v / 255``); values are clipped to ``[0, 1]``
            before ``c x`` is formed.
        c: photon count of a white value (ImageNet-C: 60 .. 3, CIFAR-10-C: 500 .. 50), > 0.
        generator: ``torch.Generator`` for the noise (default: torch's global generator).

    Returns:
        Tensor like ``x`` (uint8: ``floor(clip(y) * 255)``).

    Example:
        >>> y = shot_noise(torch.full((1, 3, 8, 8), 0.5), 60.0, torch.Generator().manual_seed(0))
    """
    cf = _check(x, c, generator, "c", 0.0, 1e9, lo_open=True)
    if _use_c(x) and cf <= _SHOT_C_MAX:
        tab, tab2, aux, naux = _shot_tables(cf)
        return _run("bk_noise_shot", x, cf, generator, tab.data_ptr(), tab2.data_ptr(), aux.data_ptr(), naux)
    xf = to_unit(x)
    y = torch.poisson(xf.clamp(0.0, 1.0) * cf, generator=generator) / cf
    return from_unit(y, x)


# --------------------------------------------------------------------------------------- impulse
def impulse_noise(x: torch.Tensor, c: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper noise: each value independently becomes 1 (probability ``c / 2``), 0
    (probability ``c / 2``) or stays (clipped to ``[0, 1]``).

    Same distribution as ``skimage.util.random_noise(x, mode="s&p", amount=c)``.

    Args:
        x: ``(B, C, H, W)`` in ``[0, 1]`` (float) or uint8 (``v / 255``; salt is 255, pepper 0).
        c: share of replaced values (ImageNet-C: .03 .. .27), in ``[0, 1]``.
        generator: ``torch.Generator`` for the noise (default: torch's global generator).

    Returns:
        Tensor like ``x``.

    Example:
        >>> y = impulse_noise(torch.full((1, 3, 8, 8), 0.5), 0.1, torch.Generator().manual_seed(0))
    """
    cf = _check(x, c, generator, "c", 0.0, 1.0)
    if _use_c(x):
        return _run("bk_noise_impulse", x, cf, generator)
    xf = to_unit(x)
    u = torch.rand(xf.shape, generator=generator, device=xf.device, dtype=xf.dtype)
    y = torch.where(u < cf, (u < cf / 2).to(xf.dtype), xf.clamp(0.0, 1.0))
    return from_unit(y, x)
