"""Tests of the blur engine ``blurkit.filtering`` against independent implementations.

References: ``scipy.ndimage.gaussian_filter`` / ``correlate`` / ``uniform_filter`` and OpenCV
(``cv2.GaussianBlur``, ``cv2.filter2D``, ``cv2.blur``), computed plane by plane in float64.
Every test runs through the compiled CPU path and, via the ``path`` fixture, the eager torch
fallback (``blurkit.filtering._FORCE_TORCH = True``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

import blurkit as bk
import blurkit.filtering as filtering

BORDERS = ("reflect", "symmetric", "replicate", "circular", "constant")
SCIPY_MODE = {"reflect": "mirror", "symmetric": "reflect", "replicate": "nearest", "circular": "wrap",
              "constant": "constant"}
CV_BORDER = {"reflect": cv2.BORDER_REFLECT_101, "symmetric": cv2.BORDER_REFLECT,
             "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
METHODS = ("auto", "separable", "direct", "fft", "torch")
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
CVAL = 0.37


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny images: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["compiled", "eager"])
def path(request, monkeypatch):
    """Run the test through the compiled CPU path and through the eager torch fallback."""
    if request.param == "compiled" and not filtering.backend_info()["compiled_cpu"]:
        pytest.skip("compiled CPU extension not built")
    monkeypatch.setattr(filtering, "_FORCE_TORCH", request.param == "eager")
    return request.param


def _images(seed: int, shape=(5, 2, 13, 17), dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 0.5).to(dtype)


def _radius(t: float, s: float) -> int:
    return math.ceil(t * s)


def _sp_gauss(x: np.ndarray, sx, sy, truncate: float, border: str, cval: float = 0.0) -> np.ndarray:
    """scipy reference, one plane at a time, sigma=(sy, sx) and radius ceil(t * sigma)."""
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        s = (float(sy[b]), float(sx[b]))
        for c in range(x.shape[1]):
            if max(s) == 0:
                out[b, c] = x[b, c]
                continue
            out[b, c] = ndi.gaussian_filter(x[b, c], s, mode=SCIPY_MODE[border], cval=cval, truncate=truncate,
                                            radius=[_radius(truncate, v) for v in s])
    return out


def _sp_correlate(x: np.ndarray, k: np.ndarray, border: str, cval: float = 0.0) -> np.ndarray:
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        kb = k[b] if k.ndim == 3 else k
        for c in range(x.shape[1]):
            out[b, c] = ndi.correlate(x[b, c], kb, mode=SCIPY_MODE[border], cval=cval)
    return out


def _err(y: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(y.double().numpy() - ref).max())


# a per-image sigma set: zero, small, moderate, and a kernel larger than the 13x17 image
SIGMAS = [0.0, 0.43, 1.37, 2.71, 7.7]


# ------------------------------------------------------------------------------- Gaussian vs scipy
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_matches_scipy_every_border_and_method(border, method, path):
    x = _images(1)
    g = torch.Generator().manual_seed(2)
    sig = torch.tensor(SIGMAS, dtype=torch.float64)[torch.randperm(5, generator=g)]
    ref = _sp_gauss(x.numpy(), sig, sig, 3.0, border, CVAL)
    for dtype in (torch.float64, torch.float32):
        y = bk.gaussian_blur(x.to(dtype), sig.to(dtype), border=border, method=method, value=CVAL)
        assert y.dtype == dtype and y.shape == x.shape
        assert _err(y, ref) <= TOL[dtype], (dtype, _err(y, ref))


@pytest.mark.parametrize("truncate", [2.0, 4.0])
def test_gaussian_matches_scipy_random_sigmas(truncate, path):
    rng = np.random.default_rng(3)
    for trial in range(3):
        x = _images(10 + trial)
        sig = torch.tensor(rng.uniform(0.2, 6.0, size=5))
        border = BORDERS[trial % 5]
        ref = _sp_gauss(x.numpy(), sig, sig, truncate, border)
        y = bk.gaussian_blur(x, sig, truncate=truncate, border=border)
        assert _err(y, ref) <= 1e-10
        y32 = bk.gaussian_blur(x.float(), sig.float(), truncate=truncate, border=border)
        assert _err(y32, ref) <= 1e-4


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", ["auto", "separable", "fft", "torch"])
def test_anisotropic_axis_aligned_gaussian_matches_scipy(border, method, path):
    x = _images(4)
    sx = torch.tensor([0.0, 2.3, 0.6, 1.1, 5.9], dtype=torch.float64)
    sy = torch.tensor([1.4, 0.0, 3.2, 1.1, 0.8], dtype=torch.float64)
    ref = _sp_gauss(x.numpy(), sx, sy, 3.0, border, CVAL)
    y = bk.gaussian_blur(x, sx, sigma_y=sy, border=border, method=method, value=CVAL)
    assert _err(y, ref) <= 1e-10
    # angle 180 is the same Gaussian
    y180 = bk.gaussian_blur(x, sx, sigma_y=sy, angle=180.0, border=border, method=method, value=CVAL)
    assert _err(y180, ref) <= 1e-10


@pytest.mark.parametrize("border", ["reflect", "symmetric", "replicate", "constant"])
def test_gaussian_matches_opencv_float32(border, path):
    x = _images(5, shape=(4, 3, 32, 40), dtype=torch.float32)
    sig = [0.6, 1.0, 2.2, 3.0]
    y = bk.gaussian_blur(x, torch.tensor(sig), border=border)
    for b, s in enumerate(sig):
        k = 2 * _radius(3.0, s) + 1
        for c in range(3):
            ref = cv2.GaussianBlur(x[b, c].numpy(), (k, k), sigmaX=s, sigmaY=s, borderType=CV_BORDER[border])
            assert float(np.abs(y[b, c].numpy() - ref).max()) <= 1e-4, (b, c)


# ------------------------------------------------------------------------------ rotated Gaussian
def _np_rotated(sx: float, sy: float, angle: float, truncate: float) -> np.ndarray:
    """Documented rotated Gaussian built independently (see tests/test_kernels.py)."""
    th = math.radians(angle)
    c, s = math.cos(th), math.sin(th)
    rx = math.ceil(truncate * math.sqrt((sx * c) ** 2 + (sy * s) ** 2) - 1e-9)
    ry = math.ceil(truncate * math.sqrt((sx * s) ** 2 + (sy * c) ** 2) - 1e-9)
    Y, X = np.mgrid[-ry: ry + 1, -rx: rx + 1].astype(np.float64)
    u = X * c - Y * s
    v = -X * s - Y * c
    w = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return w / w.sum()


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", ["auto", "direct", "fft", "torch"])
def test_rotated_gaussian_matches_scipy_correlate(border, method, path):
    x = _images(6, shape=(3, 2, 13, 17))
    params = [(2.0, 0.7, 30.0), (1.1, 2.6, 117.0), (4.5, 1.5, -61.0)]  # the last exceeds the image
    sx, sy, an = (torch.tensor(v, dtype=torch.float64) for v in zip(*params))
    y = bk.gaussian_blur(x, sx, sigma_y=sy, angle=an, border=border, method=method, value=CVAL)
    for b, (a, bb, c) in enumerate(params):
        ref = _sp_correlate(x[b:b + 1].numpy(), _np_rotated(a, bb, c, 3.0), border, CVAL)
        assert _err(y[b:b + 1], ref) <= 1e-10, b
    y32 = bk.gaussian_blur(x.float(), sx.float(), sigma_y=sy.float(), angle=an.float(), border=border,
                           method=method, value=CVAL)
    assert _err(y32, y.numpy()) <= 1e-4


def test_rotation_by_90_swaps_sigmas_in_output(path):
    x = _images(7, shape=(2, 1, 15, 15))
    a = bk.gaussian_blur(x, torch.tensor([2.0, 0.9], dtype=torch.float64),
                         sigma_y=torch.tensor([0.7, 2.5], dtype=torch.float64), angle=90.0, method="direct")
    b = bk.gaussian_blur(x, torch.tensor([0.7, 2.5], dtype=torch.float64),
                         sigma_y=torch.tensor([2.0, 0.9], dtype=torch.float64))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_angle_zero_equals_separable_result(path):
    x = _images(8)
    sx = torch.tensor([0.5, 1.5, 2.5, 3.5, 0.0], dtype=torch.float64)
    sy = torch.tensor([2.0, 0.4, 1.0, 3.5, 1.2], dtype=torch.float64)
    sep = bk.gaussian_blur(x, sx, sigma_y=sy, method="separable")
    for method in ("direct", "fft"):
        two_d = bk.filter2d(x, bk.kernels.gaussian(sx, sy, 0.0, dtype=torch.float64), method=method)
        torch.testing.assert_close(two_d, sep, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ disk, box, motion
@pytest.mark.parametrize("border", BORDERS)
def test_defocus_motion_box_match_scipy_correlate(border, path):
    x = _images(9)
    r = torch.tensor([0.0, 0.8, 2.3, 4.1, 9.5], dtype=torch.float64)
    y = bk.defocus_blur(x, r, border=border, value=CVAL)
    assert _err(y, _sp_correlate(x.numpy(), bk.kernels.disk(r).numpy(), border, CVAL)) <= 1e-10
    L = torch.tensor([0.0, 3.0, 7.3, 12.6, 21.0], dtype=torch.float64)
    an = torch.tensor([10.0, 17.0, 90.0, 133.0, 200.0], dtype=torch.float64)
    y = bk.motion_blur(x, L, an, border=border, value=CVAL)
    assert _err(y, _sp_correlate(x.numpy(), bk.kernels.motion(L, an).numpy(), border, CVAL)) <= 1e-10
    n = torch.tensor([1, 3, 5, 9, 21])
    y = bk.box_blur(x, n, border=border, value=CVAL)
    assert _err(y, _sp_correlate(x.numpy(), bk.kernels.box(n, dtype=torch.float64).numpy(), border,
                                 CVAL)) <= 1e-10
    # float32 through the same engines
    y32 = bk.motion_blur(x.float(), L.float(), an.float(), border=border, value=CVAL)
    assert _err(y32, _sp_correlate(x.numpy(), bk.kernels.motion(L, an).numpy(), border, CVAL)) <= 1e-4


@pytest.mark.parametrize("border", ["reflect", "symmetric", "replicate", "constant"])
def test_defocus_motion_box_match_opencv(border, path):
    x = _images(11, shape=(3, 3, 32, 40), dtype=torch.float32)
    r = torch.tensor([1.0, 2.6, 5.2])
    L = torch.tensor([4.0, 7.3, 15.5])
    an = torch.tensor([0.0, 17.0, 120.0])
    n = torch.tensor([3, 5, 11])
    yd = bk.defocus_blur(x, r, border=border)
    ym = bk.motion_blur(x, L, an, border=border)
    yb = bk.box_blur(x, n, border=border)
    kd, km = bk.kernels.disk(r).numpy(), bk.kernels.motion(L, an).numpy()
    for b in range(3):
        for c in range(3):
            p = x[b, c].numpy()
            ref_d = cv2.filter2D(p, -1, kd[b], borderType=CV_BORDER[border])
            ref_m = cv2.filter2D(p, -1, km[b], borderType=CV_BORDER[border])
            ref_b = cv2.blur(p, (int(n[b]), int(n[b])), borderType=CV_BORDER[border])
            assert float(np.abs(yd[b, c].numpy() - ref_d).max()) <= 1e-4
            assert float(np.abs(ym[b, c].numpy() - ref_m).max()) <= 1e-4
            assert float(np.abs(yb[b, c].numpy() - ref_b).max()) <= 1e-4


@pytest.mark.parametrize("border", BORDERS)
def test_box_blur_matches_uniform_filter(border, path):
    x = _images(12)
    for n in (3, 7, 19):
        y = bk.box_blur(x, n, border=border, value=CVAL)
        ref = ndi.uniform_filter(x.numpy(), size=(1, 1, n, n), mode=SCIPY_MODE[border], cval=CVAL)
        assert _err(y, ref) <= 1e-10, n


def test_motion_blur_does_not_shift_image(path):
    # a centred streak keeps the centroid of a bright dot where it was
    x = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    x[0, 0, 20, 20] = 1.0
    y = bk.motion_blur(x, 13.7, 33.0, border="constant")[0, 0].numpy()
    Y, X = np.mgrid[:41, :41]
    assert abs(float((y * X).sum()) - 20) < 1e-10 and abs(float((y * Y).sum()) - 20) < 1e-10


# ------------------------------------------------------------------------------------- filter2d
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", ["auto", "direct", "fft", "torch"])
def test_filter2d_is_correlation_with_random_kernels(border, method, path):
    x = _images(13)
    g = torch.Generator().manual_seed(14)
    k = torch.randn(5, 5, 9, generator=g, dtype=torch.float64)  # non-symmetric, not normalised
    k[1, :, :2] = 0  # ragged supports
    k[2] = 0
    k[2, 2, 4] = 1.0  # identity
    y = bk.filter2d(x, k, border=border, method=method, value=CVAL)
    assert _err(y, _sp_correlate(x.numpy(), k.numpy(), border, CVAL)) <= 1e-10
    # convolution = correlation with the flipped kernel
    yc = bk.filter2d(x, k.flip(-1, -2), border=border, method=method, value=CVAL)
    ref_conv = np.stack([np.stack([ndi.convolve(x[b, c].numpy(), k[b].numpy(), mode=SCIPY_MODE[border],
                                                cval=CVAL) for c in range(2)]) for b in range(5)])
    assert _err(yc, ref_conv) <= 1e-10
    # one shared kernel, larger than the image, in float32
    ks = torch.randn(15, 21, generator=g, dtype=torch.float64)
    y32 = bk.filter2d(x.float(), ks.float(), border=border, method=method, value=CVAL)
    ref = _sp_correlate(x.numpy(), ks.float().double().numpy(), border, CVAL)
    assert _err(y32, ref) <= 1e-4 * float(ks.abs().sum())


def test_filter2d_matches_opencv_filter2d(path):
    x = _images(15, shape=(2, 3, 24, 30), dtype=torch.float32)
    k = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(16))
    for border in ("reflect", "symmetric", "replicate", "constant"):
        y = bk.filter2d(x, k, border=border)
        for b in range(2):
            for c in range(3):
                ref = cv2.filter2D(x[b, c].numpy(), -1, k[b].numpy(), borderType=CV_BORDER[border])
                assert float(np.abs(y[b, c].numpy() - ref).max()) <= 1e-4


@pytest.mark.parametrize("method", ["auto", "separable", "direct", "fft", "torch"])
def test_sepfilter2d_matches_scipy(method, path):
    x = _images(17)
    g = torch.Generator().manual_seed(18)
    kx = torch.randn(5, 7, generator=g, dtype=torch.float64)
    ky = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for border in BORDERS:
        y = bk.sepfilter2d(x, kx, ky, border=border, method=method, value=CVAL)
        k2 = ky[:, :, None] * kx[:, None, :]
        assert _err(y, _sp_correlate(x.numpy(), k2.numpy(), border, CVAL)) <= 1e-10, border


@pytest.mark.parametrize("border", BORDERS)
def test_pad_matches_numpy_for_any_size(border):
    x = _images(19, shape=(1, 1, 3, 4))
    pads = (9, 2, 0, 7)  # left, right, top, bottom; larger than the image
    y = bk.filtering.pad(x, pads, border, value=CVAL)[0, 0].numpy()
    np_mode = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "circular": "wrap",
               "constant": "constant"}[border]
    kw = {"constant_values": CVAL} if border == "constant" else {}
    ref = np.pad(x[0, 0].numpy(), ((pads[2], pads[3]), (pads[0], pads[1])), mode=np_mode, **kw)
    np.testing.assert_array_equal(y, ref)


# ---------------------------------------------------------------------------- dtypes and layouts
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2), (torch.float32, 1e-5)])
def test_low_precision_dtypes(dtype, tol, path):
    x = _images(20).to(dtype)
    sig = torch.tensor([0.0, 0.7, 1.5, 3.0, 6.0])
    ref = _sp_gauss(x.double().numpy(), sig, sig, 3.0, "reflect")
    y = bk.gaussian_blur(x, sig)
    assert y.dtype == dtype
    scale = float(np.abs(ref).max())
    assert _err(y, ref) <= tol * scale
    for fn in (lambda t: bk.defocus_blur(t, 1.5), lambda t: bk.motion_blur(t, 5.0, 30.0),
               lambda t: bk.box_blur(t, 3), lambda t: bk.filter2d(t, bk.kernels.disk(2.0))):
        yy = fn(x)
        assert yy.dtype == dtype and yy.shape == x.shape
        assert _err(yy, fn(x.double()).numpy()) <= tol * scale


def test_uint8_is_computed_in_float_and_rounded(path):
    g = torch.Generator().manual_seed(21)
    x = torch.randint(0, 256, (5, 3, 13, 17), generator=g, dtype=torch.uint8)
    sig = torch.tensor([0.0, 0.6, 1.3, 2.9, 7.0])
    for border in BORDERS:
        y = bk.gaussian_blur(x, sig, border=border, value=200.0)
        assert y.dtype == torch.uint8
        ref = np.clip(np.round(_sp_gauss(x.double().numpy(), sig, sig, 3.0, border, 200.0)), 0, 255)
        diff = np.abs(y.numpy().astype(np.int64) - ref.astype(np.int64))
        assert diff.max() <= 1  # a float32 sum may round a .5 tie the other way
        assert (diff == 0).mean() > 0.99
        assert torch.equal(y[0], x[0])
    yb = bk.box_blur(x, 3)
    assert yb.dtype == torch.uint8


def test_uint8_output_rows_clip_round_and_truncate_exactly():
    """uint8 outputs of rows wider than the 32-value vector packer (two blocks and a tail), with values
    outside 0..255: integer (rounding) and half-integer (truncating) sums are exact, so the results
    must equal scipy's correlation clipped, rounded or floored, bit for bit."""
    from scipy.ndimage import correlate

    from blurkit import filtering as F

    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (2, 3, 9, 70), generator=g, dtype=torch.uint8)
    xn = x.double().numpy()
    k1 = torch.tensor([-1.0, 3.0, -1.0])
    k2 = torch.outer(k1, k1)  # sharpening: sums from -1020 to 2295
    ref = correlate(xn, k2.double().numpy()[None, None], mode="nearest")
    want = np.clip(ref, 0, 255)
    assert (ref < 0).any() and (ref > 255).any()
    for y in (bk.sepfilter2d(x, k1, k1, border="replicate"), bk.filter2d(x, k2, border="replicate")):
        assert y.dtype == torch.uint8 and np.array_equal(y.numpy(), want)
    half = F._run_2d(x, (k2 / 2).expand(2, -1, -1), "replicate", "auto", 0.0, out_kind=F.OUT_U8_FLOOR,
                     lo=0.0, hi=255.0)  # the corruptions' truncating cast of v / 2 (a .5 must floor)
    assert np.array_equal(half.numpy(), np.floor(np.clip(ref / 2, 0, 255)))


@pytest.mark.parametrize("fn", [
    lambda t: bk.gaussian_blur(t, torch.tensor([0.8, 2.0, 0.0])),
    lambda t: bk.gaussian_blur(t, 1.2, sigma_y=0.5, angle=25.0),
    lambda t: bk.defocus_blur(t, torch.tensor([1.0, 2.5, 0.5])),
    lambda t: bk.motion_blur(t, 6.0, torch.tensor([0.0, 45.0, 100.0])),
    lambda t: bk.box_blur(t, torch.tensor([3, 1, 5])),
], ids=["gauss", "rotated", "defocus", "motion", "box"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_channels_last_and_noncontiguous_inputs(fn, dtype, path):
    x = (_images(22, shape=(3, 4, 12, 14)) * 200).clamp(0, 255).to(dtype)
    ref = fn(x)
    cl = x.contiguous(memory_format=torch.channels_last)
    y = fn(cl)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6 if dtype != torch.uint8 else 0)
    # non-contiguous views: a strided slice and a transposed tensor
    big = torch.zeros(3, 4, 12, 28, dtype=dtype)
    big[..., ::2] = x
    torch.testing.assert_close(fn(big[..., ::2]), ref, rtol=0, atol=1e-6 if dtype != torch.uint8 else 0)
    xt = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not xt.is_contiguous()
    torch.testing.assert_close(fn(xt), ref, rtol=0, atol=1e-6 if dtype != torch.uint8 else 0)


def test_chw_input_and_channel_counts(path):
    for C in (1, 3, 5):
        x = _images(23, shape=(C, 13, 17))
        y = bk.gaussian_blur(x, torch.tensor(1.7, dtype=torch.float64), border="symmetric")
        assert y.shape == (C, 13, 17)
        ref = _sp_gauss(x[None].numpy(), [1.7], [1.7], 3.0, "symmetric")[0]
        assert _err(y, ref) <= 1e-10
        for f in (lambda t: bk.defocus_blur(t, 2.0), lambda t: bk.motion_blur(t, 4.0, 10.0),
                  lambda t: bk.box_blur(t, 3), lambda t: bk.filter2d(t, bk.kernels.box(3))):
            assert f(x).shape == (C, 13, 17)
            torch.testing.assert_close(f(x), f(x[None])[0], rtol=0, atol=0)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("shape", [(2, 2, 1, 9), (2, 2, 9, 1), (2, 1, 1, 1), (2, 1, 2, 3)])
def test_thin_images_and_kernels_larger_than_image(border, shape, path):
    x = _images(24, shape=shape)
    sig = torch.tensor([0.9, 4.4], dtype=torch.float64)
    ref = _sp_gauss(x.numpy(), sig, sig, 3.0, border, CVAL)
    for method in ("auto", "separable", "fft", "torch"):
        y = bk.gaussian_blur(x, sig, border=border, method=method, value=CVAL)
        assert _err(y, ref) <= 1e-10, method
    k = bk.kernels.disk(torch.tensor([1.3, 5.0], dtype=torch.float64))
    for method in ("auto", "direct", "fft"):
        y = bk.filter2d(x, k, border=border, method=method, value=CVAL)
        assert _err(y, _sp_correlate(x.numpy(), k.numpy(), border, CVAL)) <= 1e-10, method


def test_python_number_parameters_keep_float64_precision(path):
    x = _images(27)
    y = bk.gaussian_blur(x, 1.7, border="symmetric")
    assert _err(y, _sp_gauss(x.numpy(), [1.7] * 5, [1.7] * 5, 3.0, "symmetric")) <= 1e-12
    yd = bk.defocus_blur(x, 2.3)
    yt = bk.defocus_blur(x, torch.tensor(2.3, dtype=torch.float64))
    torch.testing.assert_close(yd, yt, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["auto", "direct", "fft", "torch"])
def test_planes_are_independent(method, path):
    # a NaN in one channel of one image must not reach any other plane, whatever the method
    x = _images(28, shape=(3, 2, 12, 13), dtype=torch.float32)
    x[1, 0, 5, 5] = float("nan")
    k = bk.kernels.disk(torch.tensor([1.0, 2.0, 3.0]))
    y = bk.filter2d(x, k, method=method)
    clean = bk.filter2d(torch.nan_to_num(x, nan=0.0), k, method=method)
    assert bool(torch.isnan(y[1, 0]).any())
    for b, c in [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)]:
        assert torch.equal(y[b, c], clean[b, c]), (b, c)
    g = bk.gaussian_blur(x, torch.tensor([1.5, 2.0, 0.0]), method="direct" if method == "direct" else method)
    assert bool(torch.isfinite(g[0]).all()) and bool(torch.isfinite(g[1, 1]).all())


def test_zero_blur_images_are_bit_exact_in_any_batch():
    x = _images(29, shape=(3, 2, 40, 40), dtype=torch.float32)
    z = torch.tensor([0.0, 12.0, 0.0])
    calls = {
        "gauss": lambda m: bk.gaussian_blur(x, z, method=m),
        "rotated": lambda m: bk.gaussian_blur(x, z, sigma_y=z / 2, angle=30.0,
                                              method="direct" if m == "separable" else m),
        "defocus": lambda m: bk.defocus_blur(x, z, method="direct" if m == "separable" else m),
        "motion": lambda m: bk.motion_blur(x, 2 * z, 40.0, method="direct" if m == "separable" else m),
    }
    bad = []
    for eager in (False, True):
        filtering._FORCE_TORCH = eager
        try:
            for name, fn in calls.items():
                for method in METHODS:
                    y = fn(method)
                    if not (torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])):
                        bad.append((eager, name, method))
        finally:
            filtering._FORCE_TORCH = False
    assert not bad, bad


def test_float_output_is_not_clipped(path):
    x = _images(25) * 10 - 3  # values well outside [0, 1]
    y = bk.gaussian_blur(x.float(), 1.0)
    assert float(y.min()) < -1 and float(y.max()) > 2


def test_sigma_zero_returns_input_values(path):
    x = _images(26, dtype=torch.float32)
    y = bk.gaussian_blur(x, 0.0)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()


# ----------------------------------------------------------------------------------- gradients
def _gradcheck(fn, inputs) -> bool:
    # fast mode (random projections of the Jacobian) keeps these within the test budget
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def _tiny(seed: int) -> torch.Tensor:
    return _images(seed, shape=(2, 1, 6, 7)).requires_grad_(True)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_gaussian_images_and_sigma(method):
    x = _tiny(30)
    s = torch.tensor([0.8, 1.6], dtype=torch.float64, requires_grad=True)
    for border in ("reflect", "constant", "circular"):
        assert _gradcheck(
            lambda a, b, border=border: bk.gaussian_blur(a, b, border=border, method=method, value=0.3), (x, s))


@pytest.mark.parametrize("method", ["auto", "direct", "fft", "torch"])
def test_gradcheck_rotated_gaussian(method):
    x = _tiny(31)
    s = torch.tensor([1.3, 0.9], dtype=torch.float64, requires_grad=True)
    sy = torch.tensor([0.6, 1.2], dtype=torch.float64, requires_grad=True)
    an = torch.tensor([25.0, 140.0], dtype=torch.float64, requires_grad=True)
    assert _gradcheck(
        lambda a, b, c, d: bk.gaussian_blur(a, b, sigma_y=c, angle=d, method=method, border="symmetric"),
        (x, s, sy, an))


@pytest.mark.parametrize("method", ["auto", "direct", "fft", "torch"])
def test_gradcheck_defocus_motion_filter2d(method):
    x = _tiny(32)
    r = torch.tensor([1.3, 2.2], dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda a, b: bk.defocus_blur(a, b, method=method), (x, r))
    L = torch.tensor([3.3, 5.1], dtype=torch.float64, requires_grad=True)
    an = torch.tensor([17.0, 71.0], dtype=torch.float64, requires_grad=True)
    assert _gradcheck(lambda a, b, c: bk.motion_blur(a, b, c, method=method,
                                                                   border="replicate"), (x, L, an))
    k = torch.randn(2, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(33))
    k.requires_grad_(True)
    assert _gradcheck(lambda a, b: bk.filter2d(a, b, method=method, border="circular"), (x, k))


@pytest.mark.parametrize("method", ["auto", "separable", "direct", "fft", "torch"])
def test_gradcheck_sepfilter2d_kernels(method):
    x = _tiny(37)
    g = torch.Generator().manual_seed(38)
    kx = torch.randn(2, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    ky = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    assert _gradcheck(lambda a, b, c: bk.sepfilter2d(a, b, c, method=method, border="symmetric"), (x, kx, ky))


def test_gradcheck_box_blur_images():
    x = _tiny(34)
    assert _gradcheck(lambda a: bk.box_blur(a, torch.tensor([3, 5])), (x,))


def test_identity_keeps_graph_of_other_parameters():
    x = _images(35, shape=(2, 1, 8, 9))
    for fn in (lambda a: bk.motion_blur(x, 0.0, a), lambda a: bk.gaussian_blur(x, 0.0, angle=a),
               lambda a: bk.gaussian_blur(x, 0.0, sigma_y=0.0, angle=a)):
        a = torch.tensor([10.0, 33.0], dtype=torch.float64, requires_grad=True)
        y = fn(a)
        torch.testing.assert_close(y, x, rtol=0, atol=0)
        y.sum().backward()
        assert a.grad is not None and bool((a.grad == 0).all())


def test_gradients_at_zero_parameters_are_finite():
    x = _images(36, shape=(2, 1, 8, 9))
    z = torch.zeros(2, dtype=torch.float64)
    for fn in (lambda p: bk.gaussian_blur(x, p), lambda p: bk.gaussian_blur(x, p, sigma_y=p, angle=30.0),
               lambda p: bk.gaussian_blur(x, 1.0, sigma_y=p), lambda p: bk.defocus_blur(x, p),
               lambda p: bk.motion_blur(x, p, 30.0)):
        p = z.clone().requires_grad_(True)
        y = fn(p)
        (y * torch.rand_like(y)).sum().backward()
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
        assert bool(torch.isfinite(y).all())


def test_gradient_flows_to_float32_parameters():
    x = torch.rand(2, 3, 16, 16)
    s = torch.tensor([1.0, 2.0], requires_grad=True)
    bk.gaussian_blur(x, s).pow(2).sum().backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all()) and bool((s.grad != 0).all())


# --------------------------------------------------------------------------------------- memory
_MEM_SCRIPT = textwrap.dedent("""
    import json, re, sys, torch, blurkit as bk
    import blurkit.filtering as f

    def peak():
        with open("/proc/self/status") as fh:
            return int(re.search(r"VmHWM:\\s+(\\d+)", fh.read()).group(1)) * 1024

    def reset():
        with open("/proc/self/clear_refs", "w") as fh:   # Linux: reset the peak RSS (VmHWM)
            fh.write("5")

    torch.set_num_threads(2)
    x = torch.rand(1, 1, 4096, 4096)
    assert bk.kernels.gaussian1d(21.3, truncate=3.0).shape[-1] == 129
    res = {}
    for cfg in sys.argv[1:]:
        mode, method = cfg.split("-")
        f._FORCE_TORCH = mode == "eager"
        bk.gaussian_blur(torch.rand(1, 1, 64, 64), 21.3, truncate=3.0, method=method)  # warm caches
        reset()
        before = peak()
        y = bk.gaussian_blur(x, 21.3, truncate=3.0, method=method)
        res[cfg] = peak() - before
        assert y.shape == x.shape
        del y
    print(json.dumps(res))
""")
_MEM_CASES = ["compiled-auto", "eager-auto", "eager-separable"]


@pytest.fixture(scope="module")
def memory_growth() -> dict[str, int]:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    out = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, *_MEM_CASES], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", _MEM_CASES)
def test_large_image_memory_is_a_few_times_the_image(memory_growth, case):
    """A 4096x4096 float32 image with a 129-tap kernel needs < 6 images of extra peak memory.

    Measured in a subprocess as the growth of the peak resident set size (VmHWM, reset before each
    configuration); the output itself is one image.
    """
    image = 4096 * 4096 * 4
    grown = memory_growth[case]
    assert grown < 6 * image, f"{case}: peak RSS grew by {grown / image:.2f} images"


# ----------------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("border", BORDERS)
def test_cuda_matches_scipy_and_keeps_device(border):
    x = _images(40)
    sig = torch.tensor(SIGMAS, dtype=torch.float64)
    ref = _sp_gauss(x.numpy(), sig, sig, 3.0, border, CVAL)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        for method in METHODS:
            y = bk.gaussian_blur(x.to("cuda", dtype), sig.to("cuda", dtype), border=border, method=method,
                                 value=CVAL)
            assert y.device.type == "cuda" and y.dtype == dtype
            assert _err(y.cpu(), ref) <= tol, method
    k = bk.kernels.motion(torch.tensor([3.0, 7.3, 0.0, 12.0, 5.5]), torch.tensor([0.0, 17.0, 0.0, 90.0, 140.0]))
    y = bk.filter2d(x.cuda(), k.double().cuda(), border=border, value=CVAL)
    assert _err(y.cpu(), _sp_correlate(x.numpy(), k.double().numpy(), border, CVAL)) <= 1e-10
    xc = x.float().cuda().contiguous(memory_format=torch.channels_last)
    yc = bk.defocus_blur(xc, 2.5, border=border)
    assert yc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yc.cpu(), bk.defocus_blur(x.float(), 2.5, border=border), rtol=0, atol=1e-5)


@pytest.mark.parametrize("border", BORDERS)
def test_kernels_far_larger_than_the_image_match_scipy(border):
    """Kernels many times the image size are folded onto the border (matrix path), still exact."""
    x = torch.rand(3, 2, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sigma = torch.tensor([0.0, 12.3, 55.0], dtype=torch.float64)
    sigma_y = torch.tensor([2.0, 40.7, 0.0], dtype=torch.float64)
    y = bk.gaussian_blur(x, sigma, sigma_y=sigma_y, border=border, value=CVAL)
    for i in range(3):
        sx, sy = float(sigma[i]), float(sigma_y[i])
        radius = (math.ceil(3 * sy - 1e-9), math.ceil(3 * sx - 1e-9))
        ref = ndi.gaussian_filter(x[i].numpy(), (0, sy, sx), mode=SCIPY_MODE[border], cval=CVAL, truncate=3.0,
                                  radius=(0, *radius))
        assert np.abs(y[i].numpy() - ref).max() <= 1e-10


@pytest.mark.skipif(filtering._load_lib() is None, reason="compiled kernels not built")
def test_openmp_team_and_posix_threads_give_the_same_result(monkeypatch):
    """The compiled kernels run on torch's OpenMP team when found, else on POSIX threads: same output."""
    import ctypes

    lib = filtering._load_lib()
    info = filtering.backend_info()
    assert info["thread_team"] in ("openmp", "pthreads")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 29, 31, generator=g)
    xu = (x * 255).to(torch.uint8)
    sig = torch.tensor([0.0, 0.7, 1.5, 2.0, 3.3, 5.0])

    def run():
        return (bk.gaussian_blur(x, sig), bk.motion_blur(xu, 9.0, 30.0), bk.gaussian_blur(xu, 2.0, border="constant"))

    try:
        lib.bk_set_openmp(None)
        posix = run()
    finally:
        if filtering._LIB_OPENMP:
            lib.bk_set_openmp(ctypes.cast(ctypes.CDLL(filtering._LIB_OPENMP).GOMP_parallel, ctypes.c_void_p).value)
    team = run()
    for a, b in zip(posix, team):
        assert torch.equal(a, b)
    ref = torch.from_numpy(ndi.gaussian_filter(x[4].double().numpy(), (0, 3.3, 3.3), truncate=3.0, mode="mirror"))
    torch.testing.assert_close(team[0][4].double(), ref, rtol=0, atol=1e-5)


def _blur_in_forked_child(q, x, ref):  # module level: the fork start method runs it in the child
    torch.set_num_threads(2)
    y = bk.gaussian_blur(x, 2.0)
    torch.set_num_threads(1)  # torch's own OpenMP ops are not usable after fork with >1 thread
    q.put(bool(torch.equal(y, ref)))


@pytest.mark.skipif(not hasattr(os, "fork") or filtering._load_lib() is None,
                    reason="needs fork and the compiled kernels")
def test_compiled_kernels_work_in_a_forked_child_after_the_parent_used_threads():
    """A forked child cannot use its parent's OpenMP team: the kernels fall back to POSIX threads there."""
    import multiprocessing as mp

    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = bk.gaussian_blur(x, 2.0)  # the parent's kernels run on its thread team
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_blur_in_forked_child, args=(q, x, ref))
    p.start()
    p.join(60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive, "the blur hung in a forked child"
    assert q.get(timeout=5) is True


@pytest.mark.skipif(not hasattr(os, "fork") or filtering._load_lib() is None,
                    reason="needs fork and the compiled kernels")
def test_blur_in_a_fork_pool_after_the_parent_used_torch_threads(tmp_path):
    """The parent ran a parallel torch op but never loaded the kernels; fork-pool workers still finish."""
    script = tmp_path / "forkpool.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing as mp
        import torch
        import blurkit as bk

        def work(i):
            return float(bk.gaussian_blur(torch.ones(2, 3, 32, 32), 2.0).mean())

        if __name__ == "__main__":
            a = torch.rand(300, 300)
            (a @ a).sum()
            with mp.get_context("fork").Pool(2) as pool:
                print(pool.map(work, range(2), chunksize=1))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1.0, 1.0]"


def test_symmetric_rows_are_computed_alike_in_every_row_and_column():
    """Identical input rows give identical output rows (the two-row and one-row vertical kernels and the
    vector and scalar column tails use the same arithmetic)."""
    g = torch.Generator().manual_seed(1)
    for H, W in ((7, 13), (5, 37), (9, 70)):
        x = torch.rand(1, 1, 1, W, generator=g).expand(1, 1, H, W).contiguous()
        for x_ in (x, x.double()):
            y = bk.gaussian_blur(x_, 1.7, border="replicate")
            assert torch.equal(y, y[:, :, :1].expand_as(y))
