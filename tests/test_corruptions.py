"""blurkit.corruptions against the reference algorithms of make_imagenet_c.py / make_cifar_c.py.

The reference functions below are re-implemented from hendrycks/robustness (ImageNet-C/create_c) and
the numpy motion blur of the imagecorruptions package with scipy, scikit-image, OpenCV and numpy
(the packages themselves no longer import with current NumPy / scikit-image / setuptools).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import zoom as scizoom
from skimage import data as skdata
from skimage.filters import gaussian as sk_gaussian
from skimage.transform import resize
from skimage.util import random_noise

import blurkit as bk
from blurkit import corruptions as C

TOL = 1.0 / 255.0


# ------------------------------------------------------------------------------- references
def ref_gaussian_blur(x, sigma):
    return np.clip(sk_gaussian(x, sigma=sigma, channel_axis=-1), 0, 1)


def ref_disk(radius, alias_blur=0.1, dtype=np.float32):
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        L = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=dtype)
    aliased /= np.sum(aliased)
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


def ref_defocus_blur(x, radius, alias):
    kernel = ref_disk(radius, alias)
    ch = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(x.shape[2])]
    return np.clip(np.array(ch).transpose((1, 2, 0)), 0, 1)


def _shift(image, dx, dy):
    if dx < 0:
        shifted = np.roll(image, shift=image.shape[1] + dx, axis=1)
        shifted[:, dx:] = shifted[:, dx - 1:dx]
    elif dx > 0:
        shifted = np.roll(image, shift=dx, axis=1)
        shifted[:, :dx] = shifted[:, dx:dx + 1]
    else:
        shifted = image
    if dy < 0:
        shifted = np.roll(shifted, shift=image.shape[0] + dy, axis=0)
        shifted[dy:, :] = shifted[dy - 1:dy, :]
    elif dy > 0:
        shifted = np.roll(shifted, shift=dy, axis=0)
        shifted[:dy, :] = shifted[dy:dy + 1, :]
    return shifted


def ref_motion_blur(x, radius, sigma, angle):
    """imagecorruptions._motion_blur on a [0, 1] image."""
    width = radius * 2 + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)
    k = k / k.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    blurred = np.zeros_like(x, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if np.abs(dy) >= x.shape[0] or np.abs(dx) >= x.shape[1]:
            break
        blurred = blurred + k[i] * _shift(x, dx, dy)
    return np.clip(blurred, 0, 1)


def ref_clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


def ref_zoom_blur(x, factors):
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for z in factors:
        out += ref_clipped_zoom(x, z)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


def ref_glass_blur(x, sigma, delta, iterations, offsets):
    """The reference loop, with the random offsets (dx, dy) taken from ``offsets[it, row, col]``."""
    x = np.uint8(sk_gaussian(x, sigma=sigma, channel_axis=-1) * 255)
    H, W = x.shape[:2]
    for i in range(iterations):
        for hi, h in enumerate(range(H - delta, delta, -1)):
            for wi, w in enumerate(range(W - delta, delta, -1)):
                dx, dy = offsets[i, hi, wi]
                hp, wp = h + dy, w + dx
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]  # verbatim: two views, so (hp, wp) is copied
    return np.clip(sk_gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1)


# ---------------------------------------------------------------------------------- fixtures
def _photo(name, size):
    img = getattr(skdata, name)()
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(img, (size, size), anti_aliasing=True).astype(np.float64)


@pytest.fixture(scope="module")
def photos224():
    return np.stack([_photo("astronaut", 224), _photo("chelsea", 224)])


@pytest.fixture(scope="module")
def photos32():
    return np.stack([_photo("astronaut", 32), _photo("chelsea", 32)])


def _t(batch):
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().contiguous()


def _np(t):
    return t.permute(0, 2, 3, 1).double().numpy()


def _mad(a, b):
    return float(np.abs(a - b).mean())


DATASETS = [("imagenet", "photos224"), ("cifar", "photos32")]


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_blur_matches_skimage(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)
    sigma = C.PARAMS[dataset]["gaussian_blur"][severity - 1]
    ours = _np(C.gaussian_blur(_t(x), severity, dataset=dataset))
    ref = np.stack([ref_gaussian_blur(im, sigma) for im in x])
    assert _mad(ours, ref) <= 1e-5
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_defocus_blur_matches_opencv(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)
    radius, alias = C.PARAMS[dataset]["defocus_blur"][severity - 1]
    np.testing.assert_allclose(C.defocus_kernel(radius, alias).numpy(), ref_disk(radius, alias), atol=1e-6)
    ours = _np(C.defocus_blur(_t(x), severity, dataset=dataset))
    ref = np.stack([ref_defocus_blur(im, radius, alias) for im in x])
    assert _mad(ours, ref) <= 1e-5


@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_motion_blur_matches_imagecorruptions(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)
    radius, sigma = C.PARAMS[dataset]["motion_blur"][severity - 1]
    g = torch.Generator().manual_seed(severity)
    angles = torch.rand(len(x), generator=g, dtype=torch.float64) * 90 - 45
    ours = _np(C.motion_blur(_t(x), severity, dataset=dataset, angle=angles))
    ref = np.stack([ref_motion_blur(im, radius, sigma, float(a)) for im, a in zip(x, angles)])
    assert _mad(ours, ref) <= 1e-5
    # the generator path draws the same angles
    g2 = torch.Generator().manual_seed(severity)
    again = _np(C.motion_blur(_t(x), severity, dataset=dataset, generator=g2))
    assert np.array_equal(again, ours)


def test_motion_blur_extreme_angles(photos224):
    x = photos224[:1]
    for a in (-45.0, -30.0, 0.0, 17.0, 30.0, 45.0, 90.0, 180.0):
        ours = _np(C.motion_blur(_t(x), 5, angle=a))
        assert _mad(ours, ref_motion_blur(x[0], 20, 15, a)[None]) <= 1e-5


@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_zoom_blur_matches_scipy(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)[:1]  # one photograph: scipy's zoom is the slow part
    factors = C.zoom_factors(severity, dataset)
    ours = _np(C.zoom_blur(_t(x), severity, dataset=dataset))
    ref = np.stack([ref_zoom_blur(im, factors) for im in x])
    assert _mad(ours, ref) <= 1e-5
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_glass_blur_matches_sequential_reference(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)
    if dataset == "imagenet":
        x = x[:1, :96, :96]  # the Python reference loop is slow: a 96 px crop at 224 px parameters
    sigma, delta, iters = C.PARAMS[dataset]["glass_blur"][severity - 1]
    B, H, W = x.shape[:3]
    off = C.glass_offsets(B, H, W, severity, dataset, generator=torch.Generator().manual_seed(3))
    assert int(off.min()) == -delta and int(off.max()) == delta - 1
    ours = _np(C.glass_blur(_t(x), severity, dataset=dataset, offsets=off))
    offn = off.numpy()
    ref = np.stack([ref_glass_blur(im, sigma, delta, iters, offn[:, :, :, b]) for b, im in enumerate(x)])
    assert _mad(ours, ref) <= TOL / 10
    # same seed through the generator: same result
    again = _np(C.glass_blur(_t(x), severity, dataset=dataset, generator=torch.Generator().manual_seed(3)))
    assert np.array_equal(again, ours)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_in_distribution(photos224, severity):
    x = photos224
    c = C.PARAMS["imagenet"]["gaussian_noise"][severity - 1]
    ours = _np(C.gaussian_noise(_t(x), severity, generator=torch.Generator().manual_seed(0)))
    ref = np.clip(x + np.random.default_rng(0).normal(size=x.shape, scale=c), 0, 1)
    assert abs(_mad(ours, x) - _mad(ref, x)) <= TOL
    assert abs(ours.mean() - ref.mean()) <= TOL


@pytest.mark.parametrize("dataset,fixture", DATASETS)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_shot_noise_in_distribution(dataset, fixture, severity, request):
    x = request.getfixturevalue(fixture)
    c = C.PARAMS[dataset]["shot_noise"][severity - 1]
    ours = _np(C.shot_noise(_t(x), severity, dataset=dataset, generator=torch.Generator().manual_seed(0)))
    ref = np.clip(np.random.default_rng(0).poisson(x * c) / c, 0, 1)
    tol = TOL if dataset == "imagenet" else 3 * TOL  # 2 x 32 x 32 x 3 samples only
    assert abs(_mad(ours, x) - _mad(ref, x)) <= tol
    assert abs(ours.mean() - ref.mean()) <= tol


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_impulse_noise_in_distribution(photos224, severity):
    x = photos224
    c = C.PARAMS["imagenet"]["impulse_noise"][severity - 1]
    ours = _np(C.impulse_noise(_t(x), severity, generator=torch.Generator().manual_seed(0)))
    ref = random_noise(x, mode="s&p", amount=c, rng=0)
    assert abs(_mad(ours, x) - _mad(ref, x)) <= TOL
    assert abs((ours == 1).mean() - (ref == 1).mean()) <= 0.005
    assert abs((ours == 0).mean() - (ref == 0).mean()) <= 0.005


def test_corrupt_dispatch_uint8_and_single_image(photos224):
    x = _t(photos224)
    for name in C.CORRUPTIONS:
        y = C.corrupt(x[:1], name, 2, generator=torch.Generator().manual_seed(0))
        assert y.shape == x[:1].shape and y.dtype == x.dtype
        assert float(y.min()) >= 0 and float(y.max()) <= 1
    single = C.corrupt(x[0], "defocus_blur", 1)
    assert single.shape == x[0].shape
    u8 = (x * 255).round().to(torch.uint8)
    yu = C.defocus_blur(u8, 1)
    assert yu.dtype == torch.uint8
    ref = np.floor(ref_defocus_blur(u8[0].permute(1, 2, 0).double().numpy() / 255, 3, 0.1) * 255)
    assert np.abs(yu[0].permute(1, 2, 0).double().numpy() - ref).max() <= 1


@pytest.mark.parametrize("eager", [False, True], ids=["compiled", "eager"])
def test_uint8_pipeline_matches_reference_uint8(photos224, eager, monkeypatch):
    """uint8 in -> uint8 out, as ImageNet-C runs: np.uint8(clip(ref(u8 / 255)) * 255) to within 1 level."""
    from blurkit import filtering as F

    monkeypatch.setattr(F, "_FORCE_TORCH", eager)
    u8 = (torch.from_numpy(photos224[:2]).permute(0, 3, 1, 2) * 255).round().to(torch.uint8).contiguous()
    xs = [im.permute(1, 2, 0).double().numpy() / 255.0 for im in u8]

    def check(ours, refs):
        assert ours.dtype == torch.uint8
        o = ours.permute(0, 2, 3, 1).double().numpy()
        r = np.stack([np.floor(np.clip(ref, 0, 1) * 255) for ref in refs])
        assert np.abs(o - r).max() <= 1 and (o != r).mean() < 0.01

    for sev in (1, 3, 5):
        check(C.gaussian_blur(u8, sev), [ref_gaussian_blur(x, C.PARAMS["imagenet"]["gaussian_blur"][sev - 1])
                                         for x in xs])
        radius, sigma = C.PARAMS["imagenet"]["motion_blur"][sev - 1]
        check(C.motion_blur(u8, sev, angle=torch.tensor([-30.0, 17.0])),
              [ref_motion_blur(x, radius, sigma, a) for x, a in zip(xs, (-30.0, 17.0))])
    sigma, delta, iters = C.PARAMS["imagenet"]["glass_blur"][0]
    crop = u8[:1, :, :64, :64].contiguous()
    off = C.glass_offsets(1, 64, 64, 1, generator=torch.Generator().manual_seed(1))
    ref = ref_glass_blur(crop[0].permute(1, 2, 0).double().numpy() / 255.0, sigma, delta, iters, off.numpy()[..., 0, :])
    check(C.glass_blur(crop, 1, offsets=off), [ref])


def test_fused_clip_and_dtypes(photos224):
    """Float results are clipped to [0, 1] in the input's dtype, float64 stays float64 and agrees."""
    x = _t(photos224[:1])
    y32 = C.gaussian_blur(x, 3)
    y64 = C.gaussian_blur(torch.from_numpy(photos224[:1]).permute(0, 3, 1, 2).contiguous(), 3)
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    assert float((y32.double() - y64).abs().max()) < 1e-5
    ref = ref_gaussian_blur(photos224[0], 3)
    assert np.abs(y64[0].permute(1, 2, 0).numpy() - ref).max() < 1e-12
    # glass blur keeps float64 through both blurs (its swapped image is uint8 in between)
    x64 = torch.from_numpy(photos224[:1, :32, :32]).permute(0, 3, 1, 2).contiguous()
    off = C.glass_offsets(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    ref = ref_glass_blur(photos224[0, :32, :32], *C.PARAMS["imagenet"]["glass_blur"][2], off.numpy()[..., 0, :])
    g64 = C.glass_blur(x64, 3, offsets=off)
    assert g64.dtype == torch.float64
    assert np.abs(g64[0].permute(1, 2, 0).numpy() - ref).max() < 1e-12
    bright = (x * 1.0 + 0.0).clamp(0, 1)
    bright[..., :8, :8] = 1.0  # a saturated corner: the blur of values near 1 must clip, not exceed
    z = C.motion_blur(bright, 5, angle=10.0)
    assert float(z.max()) <= 1.0 and float(z.min()) >= 0.0


def test_defocus_fallback_path_matches_opencv(photos224, monkeypatch):
    """Where the compiled disk path cannot run, the generic engine path gives the same result."""
    from blurkit import _disk

    x = photos224[:1]
    fast = _np(C.defocus_blur(_t(x), 4))
    monkeypatch.setattr(_disk, "defocus_corruption", lambda *a: None)
    slow = _np(C.defocus_blur(_t(x), 4))
    ref = np.stack([ref_defocus_blur(im, *C.PARAMS["imagenet"]["defocus_blur"][3]) for im in x])
    assert _mad(slow, ref) <= 1e-5 and _mad(fast, ref) <= 1e-5
    u8 = (torch.from_numpy(x).permute(0, 3, 1, 2) * 255).round().to(torch.uint8).contiguous()
    assert C.defocus_blur(u8, 4).dtype == torch.uint8


def test_uint8_flat_regions_keep_their_value():
    """A normalised kernel on a flat uint8 image gives the same value back (no level lost to float32
    rounding before the reference's truncating cast)."""
    vals = [0, 1, 37, 100, 128, 200, 254, 255]
    flat = torch.tensor(vals, dtype=torch.uint8)[:, None, None, None].expand(len(vals), 3, 96, 96).contiguous()
    want = flat[:, :, 40:56, 40:56]
    for sev in range(1, 6):
        assert torch.equal(C.gaussian_blur(flat, sev)[:, :, 40:56, 40:56], want)
        assert torch.equal(C.motion_blur(flat, sev, angle=10.0)[:, :, 40:56, 40:56], want)
    for sev in range(1, 4):  # radius <= 6: the reference disk kernel sums to 1
        assert torch.equal(C.defocus_blur(flat, sev)[:, :, 40:56, 40:56], want)


def test_float16_and_generator_reproducible(photos224):
    x = _t(photos224[:1]).half()
    y = C.gaussian_blur(x, 1)
    assert y.dtype == torch.float16
    a = C.gaussian_noise(x.float(), 2, generator=torch.Generator().manual_seed(5))
    b = C.gaussian_noise(x.float(), 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_bad_inputs():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="severity"):
        C.gaussian_blur(x, 0)
    with pytest.raises(ValueError, match="severity"):
        C.gaussian_blur(x, 6)
    with pytest.raises(ValueError, match="dataset"):
        C.gaussian_blur(x, 1, dataset="mnist")
    with pytest.raises(ValueError, match="corruption"):
        C.corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.gaussian_blur(x * 3 - 1, 1)
    with pytest.raises(TypeError, match="images"):
        C.gaussian_blur(np.zeros((3, 8, 8)), 1)
    with pytest.raises(TypeError, match="generator"):
        C.gaussian_noise(x, 1, generator=0)
    with pytest.raises(ValueError, match="offsets"):
        C.glass_blur(x, 1, offsets=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="angle"):
        C.motion_blur(x, 1, angle=torch.zeros(3))


def test_engine_blur_is_used_and_exports():
    assert bk.corruptions.corrupt is C.corrupt
    assert set(C.CORRUPTIONS) == set(C.PARAMS["imagenet"]) == set(C.PARAMS["cifar"])


def test_glass_offsets_are_validated():
    x = torch.rand(1, 3, 32, 32)
    off = C.glass_offsets(1, 32, 32, 1, "cifar")
    with pytest.raises(ValueError, match="offsets must be integers in"):
        C.glass_blur(x, 1, dataset="cifar", offsets=off.float())
    with pytest.raises(ValueError, match="got values from"):
        C.glass_blur(x, 1, dataset="cifar", offsets=off + 5)


def test_glass_shuffle_copies_like_the_reference_statement():
    """The reference's x[h, w], x[h', w'] = x[h', w'], x[h, w] on an (H, W, 3) array duplicates pixel
    (h', w'); blurkit's source map must do the same (checked on indices, no blur involved)."""
    H = W = 6
    off = C.glass_offsets(1, H, W, 1, "cifar", generator=torch.Generator().manual_seed(1))
    src = C._glass_permutation(off, H, W, 1)[0]
    ref = np.arange(H * W).reshape(H, W)[..., None].repeat(3, axis=2)  # pixel index in every channel
    o = off.numpy()[..., 0, :]
    for i in range(o.shape[0]):
        for hi, h in enumerate(range(H - 1, 1, -1)):
            for wi, w in enumerate(range(W - 1, 1, -1)):
                dx, dy = o[i, hi, wi]
                ref[h, w], ref[h + dy, w + dx] = ref[h + dy, w + dx], ref[h, w]
    np.testing.assert_array_equal(src, ref[..., 0].ravel())
    assert len(np.unique(src)) < H * W  # pixels were duplicated, not permuted


def test_uint8_zoom_blur_keeps_flat_levels():
    """A flat uint8 image is a fixed point of zoom blur (the weights sum to 1): every level stays."""
    x = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).expand(256, 3, 40, 40).contiguous()
    for severity in (1, 5):
        assert torch.equal(C.zoom_blur(x, severity, dataset="cifar"), x)
