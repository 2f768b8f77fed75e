"""The compiled exact defocus blur (blurkit._disk) against scipy / OpenCV with the reference kernel.

The reference kernel is rebuilt here from OpenCV exactly as make_imagenet_c.py does (binary disk on
arange(-8, 9) or arange(-r, r + 1), normalised, cv2.GaussianBlur 3x3 / 5x5), in float64, and applied
with scipy.ndimage.correlate(mode="mirror") (= cv2.filter2D BORDER_REFLECT_101) per plane.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

from blurkit import _disk
from blurkit import corruptions as C

IMAGENET = C.PARAMS["imagenet"]["defocus_blur"]
CIFAR = C.PARAMS["cifar"]["defocus_blur"]

pytestmark = pytest.mark.skipif(_disk._fn() is None, reason="compiled extension not built")


def ref_disk(radius, alias_blur, dtype=np.float64):
    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        L, ksize = np.arange(-radius, radius + 1), (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=dtype)
    aliased /= np.sum(aliased)
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


def ref_blur(x: np.ndarray, radius, alias) -> np.ndarray:
    """Unclipped reference on a (B, C, H, W) float64 array."""
    k = ref_disk(radius, alias)
    return np.stack([[correlate(p, k, mode="mirror") for p in im] for im in x])


def _rand(shape, seed, dtype=torch.float64):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("radius,alias", IMAGENET + CIFAR + ((7, 0.5), (12, 1.0), (2.5, 0.3)))
def test_plan_composes_to_the_reference_kernel(radius, alias):
    p = _disk.plan(radius, alias)
    assert p is not None
    k = ref_disk(radius, alias)
    ext = np.zeros_like(p.kernel)
    n = k.shape[0]
    ext[p.h:p.h + n, p.h:p.h + n] = k
    np.testing.assert_allclose(p.kernel, ext, rtol=0, atol=1e-15)
    assert p.count == int(round(1 / p.s))
    assert p.pad >= p.r + p.h and np.all(np.abs(p.ti) <= p.pad)


def test_plan_correction_terms():
    # alias_blur 0.1: side taps of 2e-22 are dropped (no float64 result changes beyond rounding)
    assert _disk.plan(3, 0.1).h == 0 and _disk.plan(4, 0.5).h == 1
    # the correction vanishes while the disk stays h px inside the 17 x 17 grid ...
    for radius, alias in IMAGENET[:3]:
        assert len(_disk.plan(radius, alias).ti) == 0
    # ... and is a handful of box terms where it touches the grid border
    assert len(_disk.plan(8, 0.5).ti) == 4
    assert len(_disk.plan(10, 0.5).ti) == 12


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(2, 3, 33, 47), (1, 2, 64, 80)])
def test_float64_matches_scipy(severity, shape):
    radius, alias = IMAGENET[severity - 1]
    x = _rand(shape, severity)
    y = _disk.defocus_corruption(x, radius, alias)
    assert y.dtype == torch.float64 and y.shape == x.shape
    ref = np.clip(ref_blur(x.numpy(), radius, alias), 0, 1)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_float32_matches_scipy_and_cv2(severity):
    radius, alias = IMAGENET[severity - 1]
    x = _rand((2, 3, 41, 58), 10 + severity, torch.float32)
    y = _disk.defocus_corruption(x, radius, alias)
    assert y.dtype == torch.float32
    ref = np.clip(ref_blur(x.double().numpy(), radius, alias), 0, 1)
    err = np.abs(y.double().numpy() - ref)
    assert err.max() < 2e-6 and err.mean() < 3e-7
    # OpenCV's own filter2D with its float32 kernel on an H x W x C image (the reference's call)
    k32 = ref_disk(radius, alias, np.float32)
    im = x[0].permute(1, 2, 0).numpy()
    cv = np.clip(cv2.filter2D(im, -1, k32, borderType=cv2.BORDER_REFLECT_101), 0, 1)
    assert np.abs(y[0].permute(1, 2, 0).numpy() - cv).max() < 1e-5


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_uint8_floor_of_the_exact_value(severity):
    radius, alias = IMAGENET[severity - 1]
    u = (_rand((2, 3, 37, 52), 20 + severity) * 256).clamp(max=255).to(torch.uint8)
    u[0, 0, :10] = 255  # flat regions: integer-valued results
    u[1, 1, :, :9] = 0
    y = _disk.defocus_corruption(u, radius, alias)
    assert y.dtype == torch.uint8
    v = ref_blur(u.double().numpy() / 255.0, radius, alias) * 255.0  # exact value in 0..255 units
    ref = np.floor(np.clip(v, 0, 255))
    got = y.double().numpy()
    diff = got != ref
    assert np.abs(got - ref).max() <= 1
    # disagreements only where the exact value is within the 2^-10 truncation margin below an
    # integer (or within rounding of one): floor() of it is decided by the last bits of the reference
    assert np.all(np.abs(v[diff] - np.round(v[diff])) < 2.0 ** -10 + 1e-6)
    assert diff.mean() < 0.05


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 2, 30), (1, 1, 5, 7), (1, 1, 17, 3), (1, 1, 9, 25)])
@pytest.mark.parametrize("severity", [1, 4, 5])
def test_images_smaller_than_the_kernel(shape, severity):
    # reflect-101 needs repeated reflection; the compiled path pads through the same index maps
    radius, alias = IMAGENET[severity - 1]
    x = _rand(shape, severity + shape[2])
    y = _disk.defocus_corruption(x, radius, alias)
    ref = np.clip(ref_blur(x.numpy(), radius, alias), 0, 1)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-13)
    k32 = ref_disk(radius, alias, np.float32)
    cv = cv2.filter2D(x[0, 0].float().numpy(), -1, k32, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(y[0, 0].numpy() - np.clip(cv, 0, 1)).max() < 1e-5


@pytest.mark.parametrize("radius,alias", CIFAR)
def test_cifar_radii(radius, alias):
    x = _rand((2, 3, 32, 32), 7)
    y = _disk.defocus_corruption(x, radius, alias)
    np.testing.assert_allclose(y.numpy(), np.clip(ref_blur(x.numpy(), radius, alias), 0, 1), rtol=0, atol=1e-13)


def test_thread_count_invariance():
    x = _rand((3, 3, 45, 61), 3, torch.float32)
    u = (x * 255).to(torch.uint8)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a, au = _disk.defocus_corruption(x, 10, 0.5), _disk.defocus_corruption(u, 6, 0.5)
        torch.set_num_threads(2)
        b, bu = _disk.defocus_corruption(x, 10, 0.5), _disk.defocus_corruption(u, 6, 0.5)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b) and torch.equal(au, bu)


def test_output_is_clipped():
    ones = torch.ones(1, 3, 30, 40, dtype=torch.float32)
    for radius, alias in IMAGENET:
        y = _disk.defocus_corruption(ones, radius, alias)
        assert float(y.max()) <= 1.0 and float(y.min()) > 0.999
        assert float(_disk.defocus_corruption(torch.zeros_like(ones), radius, alias).abs().max()) == 0.0
        yu = _disk.defocus_corruption(torch.full((1, 1, 20, 20), 255, dtype=torch.uint8), radius, alias)
        assert int(yu.min()) >= 254
    # values a hair above 1 (allowed by the corruption's range check) come back clipped
    x = torch.full((1, 1, 16, 16), 1.0005, dtype=torch.float64)
    assert float(_disk.defocus_corruption(x, 3, 0.1).max()) == 1.0


def test_input_untouched_and_non_contiguous():
    x = _rand((2, 3, 30, 40), 5, torch.float32)
    keep = x.clone()
    xt = x.permute(0, 1, 3, 2)  # non-contiguous view
    y = _disk.defocus_corruption(xt, 6, 0.5)
    assert torch.equal(x, keep)
    ref = np.clip(ref_blur(xt.double().numpy(), 6, 0.5), 0, 1)
    assert np.abs(y.double().numpy() - ref).max() < 2e-6


def test_falls_back_with_none(monkeypatch):
    x = _rand((1, 3, 20, 20), 1, torch.float32)
    assert _disk.defocus_corruption(x.half(), 3, 0.1) is None
    assert _disk.defocus_corruption(x.requires_grad_(), 3, 0.1) is None
    x = x.detach()
    assert _disk.defocus_corruption(x[0], 3, 0.1) is None  # 3-D: the caller passes the 4-D batch
    assert _disk.defocus_corruption(x[:0], 3, 0.1) is None
    assert _disk.defocus_corruption(x, 8.5, 0.5) is None  # the reference grid is not odd-sized
    assert _disk.defocus_corruption(x, 3, 0.0) is None
    assert _disk.defocus_corruption(x, float("nan"), 0.5) is None
    assert _disk.plan(8.5, 0.5) is None
    monkeypatch.setattr(_disk, "_FN", False)  # extension not built
    assert _disk.defocus_corruption(x, 3, 0.1) is None


def test_uint8_correction_terms_split_into_exact_int16_groups():
    # the uint8 path sums the correction boxes of one |coefficient| as integers before scaling; a
    # group holds boxes of total width <= 128 (|sum| <= 128 * 255 fits int16). At radius 60 (alias
    # blur 2) one coefficient's boxes weigh 148, so that group is split in two: this runs the
    # three-group bookkeeping (a wrong box or sign there moves values by ~0.2 level, and the floor
    # then differs far from any integer).
    p = _disk.plan(60, 2.0)
    weights: dict[float, int] = {}
    for b, c in zip(p.tb, p.tc):
        weights[abs(float(c))] = weights.get(abs(float(c)), 0) + 2 * int(b) + 1
    assert max(weights.values()) > 128
    u = (_rand((1, 2, 131, 140), 11) * 256).clamp(max=255).to(torch.uint8)
    u[0, 0, :, :70] = 255  # flat half: every box at its largest value
    y = _disk.defocus_corruption(u, 60, 2.0)
    k = ref_disk(60, 2.0).astype(np.float64)  # OpenCV's DFT correlation (a direct one takes seconds)
    v = np.stack([[cv2.filter2D(pl, -1, k, borderType=cv2.BORDER_REFLECT_101) for pl in im]
                  for im in u.double().numpy()])
    ref = np.floor(np.clip(v, 0, 255))
    diff = y.double().numpy() != ref
    assert np.all(np.abs(v[diff] - np.round(v[diff])) < 2.0 ** -10 + 1e-6) and diff.mean() < 0.01


def test_uint8_large_radius_sums_in_groups():
    # radius 20: the disk holds 1257 ones, 255 * 1257 > 2^16, so the uint16 column sums are added
    # in several groups; still exact
    u = (_rand((1, 2, 50, 61), 9) * 256).clamp(max=255).to(torch.uint8)
    y = _disk.defocus_corruption(u, 20, 0.5)
    v = ref_blur(u.double().numpy() / 255.0, 20, 0.5) * 255.0
    ref = np.floor(np.clip(v, 0, 255))
    diff = y.double().numpy() != ref
    assert np.all(np.abs(v[diff] - np.round(v[diff])) < 2.0 ** -10 + 1e-6) and diff.mean() < 0.01
    # beyond 2^24 / 255 ones float32 would no longer hold the sums exactly: fall back
    assert _disk.defocus_corruption(u, 150, 0.5) is None


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_planes_side_by_side_give_each_plane_its_own_result(dtype):
    """Planes are filtered three side by side as one wide plane; every plane count (whole and
    partial groups) must give each plane exactly its result alone, and that result is the reference."""
    for planes in (1, 2, 3, 4, 5, 7):
        x = _rand((1, planes, 23, 29), 30 + planes)
        x = (x * 256).clamp(max=255).to(dtype) if dtype == torch.uint8 else x.to(dtype)
        for radius, alias in ((10, 0.5), (6, 0.5)):
            y = _disk.defocus_corruption(x, radius, alias)
            for c in range(planes):
                alone = _disk.defocus_corruption(x[:, c:c + 1].contiguous(), radius, alias)
                assert torch.equal(y[:, c:c + 1], alone), (planes, c, radius)
            if dtype == torch.float64:
                ref = np.clip(ref_blur(x.numpy(), radius, alias), 0, 1)
                np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-13)
