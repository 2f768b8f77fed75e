"""Tests of the kernel families in ``blurkit.kernels``.

References are mathematical facts computed independently here (numpy, scipy.stats): the variance
of a truncated normal, the second moments of a uniform segment and of a uniform disk, the
documented closed-form rotated Gaussian.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import blurkit as bk

K = bk.kernels


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny images: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grid(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column offsets X and row offsets Y (rows grow downwards) of a centred odd kernel."""
    kh, kw = k.shape
    Y, X = np.mgrid[-(kh // 2): kh // 2 + 1, -(kw // 2): kw // 2 + 1]
    return X.astype(np.float64), Y.astype(np.float64)


def _support_radius(row: np.ndarray) -> int:
    nz = np.nonzero(row)[0]
    c = len(row) // 2
    return int(max(abs(nz[0] - c), abs(nz[-1] - c)))


# ------------------------------------------------------------------------------------- sums
@pytest.mark.parametrize("builder", [
    lambda: K.gaussian1d(torch.tensor([0.0, 0.4, 1.0, 2.7, 8.0])),
    lambda: K.gaussian(torch.tensor([0.0, 0.4, 1.0, 2.7]), torch.tensor([1.0, 2.0, 0.3, 2.7]),
                       torch.tensor([0.0, 30.0, 90.0, 137.0])),
    lambda: K.box1d(torch.tensor([1, 3, 7])),
    lambda: K.box(torch.tensor([1, 3, 7])),
    lambda: K.disk(torch.tensor([0.0, 0.3, 1.7, 6.0])),
    lambda: K.motion(torch.tensor([0.0, 1.0, 7.3, 24.5]), torch.tensor([0.0, 17.0, 90.0, 179.0])),
], ids=["gaussian1d", "gaussian", "box1d", "box", "disk", "motion"])
def test_kernels_sum_to_one_and_are_nonnegative(builder):
    k = builder()
    assert k.is_floating_point()
    sums = k.sum(dim=tuple(range(1, k.dim())))
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
    assert bool((k >= 0).all())
    assert all(s % 2 == 1 for s in k.shape[1:])


# -------------------------------------------------------------------------------- Gaussian
@pytest.mark.parametrize("truncate, sigmas, sizes", [
    (2.0, [1.0, 2.0, 4.0, 8.0], [5, 9, 17, 33]),
    (3.0, [0.5, 1.0, 2.5, 21.3], [5, 7, 17, 129]),
    (4.0, [0.0, 0.2, 1.1], [1, 3, 11]),
])
def test_gaussian_kernel_size_follows_ceil_truncate_sigma(truncate, sigmas, sizes):
    for s, n in zip(sigmas, sizes):
        k = K.gaussian1d(s, truncate=truncate)
        assert k.shape == (1, n), (s, truncate)
        k2 = K.gaussian(s, truncate=truncate)
        assert k2.shape == (1, n, n)
    # a batch shares one zero-padded tensor but each row keeps its own support
    kb = K.gaussian1d(torch.tensor(sigmas), truncate=truncate)
    assert kb.shape == (len(sigmas), max(sizes))
    for row, n in zip(kb.numpy(), sizes):
        assert _support_radius(row) == n // 2


@pytest.mark.parametrize("sigma", [1.0, 1.7, 2.0, 3.3, 8.0])
@pytest.mark.parametrize("truncate", [2.0, 3.0, 4.0])
def test_gaussian_kernel_variance_matches_sigma_within_truncation(sigma, truncate):
    """The sampled kernel's variance lies between those of normals truncated at r and r + 1.

    For sigma >= 1 the sampling error of the sampled Gaussian (Poisson summation) is below 1e-8
    relative, so the only deviation from sigma^2 is the truncation at radius r = ceil(t*sigma):
    the discrete window holds the taps |x| <= r, i.e. more than the continuous window [-r, r] and
    less than [-(r + 1), r + 1]. The forum bug exp(-(x/(2 sd))^2) has variance ~2 sigma^2 and fails.
    """
    k = K.gaussian1d(torch.tensor([sigma], dtype=torch.float64), truncate=truncate)[0].numpy()
    r = math.ceil(truncate * sigma)
    assert len(k) == 2 * r + 1
    x = np.arange(-r, r + 1, dtype=np.float64)
    var = float((k * x * x).sum())
    lo = sigma ** 2 * stats.truncnorm(-r / sigma, r / sigma).var()
    hi = sigma ** 2 * stats.truncnorm(-(r + 1) / sigma, (r + 1) / sigma).var()
    assert lo - 1e-8 <= var <= hi + 1e-8, (var, lo, hi)
    # and the midpoint rule (window [-(r+0.5), r+0.5]) predicts it closely
    mid = sigma ** 2 * stats.truncnorm(-(r + 0.5) / sigma, (r + 0.5) / sigma).var()
    assert abs(var - mid) <= 0.02 * sigma ** 2
    # mean zero
    assert abs(float((k * x).sum())) < 1e-12


def test_forum_two_std_bug_would_fail_variance_check():
    sigma, r = 2.0, 6
    x = np.arange(-r, r + 1, dtype=np.float64)
    bad = np.exp(-((x / (2 * sigma)) ** 2))
    bad /= bad.sum()
    var = float((bad * x * x).sum())
    hi = sigma ** 2 * stats.truncnorm(-(r + 1) / sigma, (r + 1) / sigma).var()
    assert var > 1.5 * hi


def _numpy_rotated_gaussian(sx: float, sy: float, angle_deg: float, truncate: float) -> np.ndarray:
    """The documented kernel, built independently: exp(-u^2/(2 sx^2) - v^2/(2 sy^2)).

    (u, v) are the pixel offsets in a frame rotated by ``angle`` counter-clockwise *as displayed*
    (display y points up, i.e. minus the row offset); the grid is the bounding box of the truncated
    ellipse with half-widths ceil(t * sqrt(sx^2 cos^2 + sy^2 sin^2)) (x) and the like (y).
    """
    th = math.radians(angle_deg)
    c, s = math.cos(th), math.sin(th)
    rx = math.ceil(truncate * math.sqrt((sx * c) ** 2 + (sy * s) ** 2) - 1e-9)
    ry = math.ceil(truncate * math.sqrt((sx * s) ** 2 + (sy * c) ** 2) - 1e-9)
    Y, X = np.mgrid[-ry: ry + 1, -rx: rx + 1].astype(np.float64)
    Yd = -Y
    u = X * c + Yd * s
    v = -X * s + Yd * c
    w = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return w / w.sum()


@pytest.mark.parametrize("sx, sy, angle", [(2.0, 0.7, 30.0), (1.3, 3.1, 117.0), (2.5, 2.5, 45.0),
                                           (3.0, 1.0, -20.0)])
def test_rotated_gaussian_matches_documented_formula(sx, sy, angle):
    k = K.gaussian(torch.tensor([sx], dtype=torch.float64), torch.tensor([sy], dtype=torch.float64),
                   torch.tensor([angle], dtype=torch.float64), truncate=3.0)[0].numpy()
    ref = _numpy_rotated_gaussian(sx, sy, angle, 3.0)
    assert k.shape == ref.shape
    np.testing.assert_allclose(k, ref, rtol=0, atol=1e-12)


def test_rotated_gaussian_direction_is_counter_clockwise_as_displayed():
    # long axis at +45 degrees on screen: up-right / down-left are heavy, up-left light
    k = K.gaussian(3.0, 0.5, 45.0, dtype=torch.float64)[0].numpy()
    c = k.shape[0] // 2
    assert k[c - 2, c + 2] > 100 * k[c - 2, c - 2]   # row above, column right = up-right
    assert k[c + 2, c - 2] > 100 * k[c + 2, c + 2]
    # covariance sign: along the displayed diagonal, x and display-y grow together
    X, Y = _grid(k)
    assert float((k * X * (-Y)).sum()) > 0


@pytest.mark.parametrize("sx, sy", [(2.0, 0.7), (1.2, 3.5)])
def test_rotation_by_90_degrees_swaps_sigma_and_sigma_y(sx, sy):
    k90 = K.gaussian(torch.tensor([sx], dtype=torch.float64), torch.tensor([sy], dtype=torch.float64),
                     torch.tensor([90.0], dtype=torch.float64))[0]
    k0 = K.gaussian(torch.tensor([sy], dtype=torch.float64), torch.tensor([sx], dtype=torch.float64),
                    torch.tensor([0.0], dtype=torch.float64))[0]
    assert k90.shape == k0.shape
    torch.testing.assert_close(k90, k0, rtol=0, atol=1e-12)
    # and 90 degrees is the transpose of the unrotated (sx, sy) kernel
    kt = K.gaussian(torch.tensor([sx], dtype=torch.float64), torch.tensor([sy], dtype=torch.float64))[0]
    torch.testing.assert_close(k90, kt.T, rtol=0, atol=1e-12)


def test_angle_zero_is_outer_product_of_1d_kernels():
    sx = torch.tensor([0.8, 2.2], dtype=torch.float64)
    sy = torch.tensor([1.9, 0.6], dtype=torch.float64)
    k = K.gaussian(sx, sy, 0.0, truncate=2.5)
    kx = K.gaussian1d(sx, truncate=2.5)
    ky = K.gaussian1d(sy, truncate=2.5)
    for i in range(2):
        rx, ry = _support_radius(kx[i].numpy()), _support_radius(ky[i].numpy())
        c_h, c_w = k.shape[1] // 2, k.shape[2] // 2
        inner = k[i, c_h - ry: c_h + ry + 1, c_w - rx: c_w + rx + 1]
        cx, cy = kx.shape[1] // 2, ky.shape[1] // 2
        outer = torch.outer(ky[i, cy - ry: cy + ry + 1], kx[i, cx - rx: cx + rx + 1])
        torch.testing.assert_close(inner, outer, rtol=0, atol=1e-14)
        assert float(k[i].sum() - inner.sum()) == pytest.approx(0.0, abs=1e-14)


def test_gaussian_kernel_gradcheck_sigma():
    s = torch.tensor([0.9, 2.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: K.gaussian1d(t, truncate=3.0), (s,))
    sy = torch.tensor([1.7, 0.8], dtype=torch.float64, requires_grad=True)
    an = torch.tensor([20.0, 133.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: K.gaussian(a, b, c, truncate=2.0), (s, sy, an))


# ----------------------------------------------------------------------------------- motion
def test_motion_streak_7_3_px_at_17_degrees():
    L, angle = 7.3, 17.0
    k = K.motion(torch.tensor([L], dtype=torch.float64), torch.tensor([angle], dtype=torch.float64))[0]
    k = k.numpy()
    assert k.shape == (9, 9)  # 2 * ceil(7.3 / 2) + 1
    X, Y = _grid(k)
    # centroid exactly at the centre: the blur does not translate the image
    assert abs(float((k * X).sum())) < 1e-12
    assert abs(float((k * Y).sum())) < 1e-12
    th = math.radians(angle)
    u = X * math.cos(th) - Y * math.sin(th)       # along the streak (display y = -Y)
    v = -X * math.sin(th) - Y * math.cos(th)      # across it
    m_par = float((k * u * u).sum())
    m_orth = float((k * v * v).sum())
    # A uniform segment of length L has second moment L^2/12. Bilinear splatting adds the
    # per-sample variance f(1-f) <= 1/4 per axis (1/6 on average over the fractional offsets).
    seg = L ** 2 / 12
    assert seg - 1e-3 <= m_par <= seg + 0.25
    assert abs(m_par - seg - 1 / 6) < 0.05
    assert m_orth <= 0.25
    # the length read back from the second moment
    assert math.sqrt(12 * (m_par - 1 / 6)) == pytest.approx(L, abs=0.1)
    # and it points at 17 degrees: principal axis of the second-moment matrix
    cov = np.array([[float((k * X * X).sum()), float((k * X * -Y).sum())],
                    [float((k * X * -Y).sum()), float((k * Y * Y).sum())]])
    w, vecs = np.linalg.eigh(cov)
    d = vecs[:, np.argmax(w)]
    est = math.degrees(math.atan2(d[1], d[0])) % 180
    assert est == pytest.approx(angle, abs=0.5)


@pytest.mark.parametrize("L, angle", [(3.0, 0.0), (5.5, 90.0), (12.2, 133.0), (20.0, 45.0)])
def test_motion_kernel_is_centred_with_segment_moment(L, angle):
    k = K.motion(torch.tensor([L], dtype=torch.float64), torch.tensor([angle], dtype=torch.float64))[0].numpy()
    X, Y = _grid(k)
    assert abs(float((k * X).sum())) < 1e-12 and abs(float((k * Y).sum())) < 1e-12
    th = math.radians(angle)
    u = X * math.cos(th) - Y * math.sin(th)
    m_par = float((k * u * u).sum())
    assert L ** 2 / 12 - 1e-3 <= m_par <= L ** 2 / 12 + 0.25


def test_motion_length_and_angle_change_kernel_smoothly_and_differentiably():
    L = torch.tensor([7.3, 4.1], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([17.0, 101.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda ll, aa: K.motion(ll, aa), (L, a))
    k1 = K.motion(torch.tensor([7.3]), 17.0)
    k2 = K.motion(torch.tensor([7.35]), 17.0)
    assert k1.shape == k2.shape
    assert 0 < float((k1 - k2).abs().sum()) < 0.05


# ------------------------------------------------------------------------------------- disk
def test_disk_second_moment_is_that_of_a_uniform_disk():
    # uniform disk of radius r: E[x^2 + y^2] = r^2 / 2, plus 2 * 1/12 for the pixel footprint
    for r in (2.0, 2.5, 5.0, 7.3, 10.0):
        k = K.disk(torch.tensor([r], dtype=torch.float64))[0].numpy()
        X, Y = _grid(k)
        m = float((k * (X * X + Y * Y)).sum())
        assert m == pytest.approx(r * r / 2 + 1 / 6, abs=0.2), r
        assert abs(float((k * X).sum())) < 1e-12 and abs(float((k * Y).sum())) < 1e-12
        np.testing.assert_allclose(k, k.T, atol=1e-15)
        np.testing.assert_allclose(k, k[::-1], atol=1e-15)


def test_disk_mass_spread_grows_monotonically_with_radius():
    radii = torch.linspace(0.0, 6.0, 61, dtype=torch.float64)
    k = K.disk(radii).numpy()
    X, Y = _grid(k[0])
    m = (k * (X * X + Y * Y)).sum(axis=(1, 2))
    assert m[0] == 0.0
    # a disk of radius <= 0.5 lies inside the centre pixel (the identity); beyond, it spreads
    small = radii.numpy() <= 0.5
    assert np.all(m[small] == 0.0)
    assert np.all(np.diff(m[~small]) > 0) and m[~small][0] > 0
    # identity at radius 0
    assert k[0, k.shape[1] // 2, k.shape[2] // 2] == 1.0


def test_disk_sub_pixel_radius_changes_kernel_smoothly():
    r = torch.linspace(2.0, 3.0, 21, dtype=torch.float64)
    k = K.disk(r)
    steps = (k[1:] - k[:-1]).abs().sum(dim=(1, 2))
    assert bool((steps > 0).all())
    assert float(steps.max()) < 0.1  # a 0.05 px change of radius moves < 10% of the mass
    rr = torch.tensor([2.3, 4.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: K.disk(t), (rr,))


# -------------------------------------------------------------------------------------- box
def test_box_kernels():
    k = K.box1d(torch.tensor([1, 3, 5]))
    assert k.shape == (3, 5)
    np.testing.assert_allclose(k.numpy(), [[0, 0, 1, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0.2] * 5], atol=1e-7)
    k2 = K.box(3)
    np.testing.assert_allclose(k2[0].numpy(), np.full((3, 3), 1 / 9), atol=1e-7)


def test_repeated_parameters_give_identical_kernels():
    s = torch.tensor([1.0, 2.0, 1.0, 4.0, 2.0])
    k = K.gaussian1d(s, truncate=2.0)
    assert torch.equal(k[0], k[2]) and torch.equal(k[1], k[4])
    single = K.gaussian1d(torch.tensor([4.0]), truncate=2.0)
    torch.testing.assert_close(k[3], single[0], rtol=0, atol=0)


# ------------------------------------------------------------------- review regressions
def test_changing_a_returned_kernel_in_place_leaves_later_blurs_alone():
    """The builders cache kernels: the cached tensor itself is never handed out."""
    x = torch.rand(2, 3, 24, 24)
    before = [bk.defocus_blur(x, 2.0), bk.gaussian_blur(x, torch.tensor([2.0, 2.0])), bk.motion_blur(x, 5.0, 30.0)]
    k = K.disk(2.0)
    k /= k.max()
    K.gaussian1d(torch.tensor([2.0, 2.0])).zero_()
    K.motion(5.0, 30.0).mul_(7)
    K.disk(2.0).requires_grad_(True)
    after = [bk.defocus_blur(x, 2.0), bk.gaussian_blur(x, torch.tensor([2.0, 2.0])), bk.motion_blur(x, 5.0, 30.0)]
    for b, a in zip(before, after):
        assert torch.equal(b, a)
    assert not K.disk(2.0).requires_grad
    assert K.disk(2.0).data_ptr() != K.disk(2.0).data_ptr()


def test_python_number_parameters_are_not_rounded_to_float32():
    x = np.arange(-3, 4)
    ref = np.exp(-0.5 * (x / 0.7) ** 2)
    ref /= ref.sum()
    np.testing.assert_allclose(K.gaussian1d(0.7, dtype=torch.float64)[0].numpy(), ref, rtol=1e-14, atol=1e-16)
    # radius ceil(3 * 1/3) = 1 (float32 1/3 times 3 exceeds 1 and would give radius 2)
    assert K.gaussian1d(1 / 3).shape == (1, 3)
    assert K.gaussian1d(1 / 3).dtype == torch.float32
    assert K.disk(1.5).dtype == torch.float32
    assert K.disk(torch.tensor([1.5], dtype=torch.float64)).dtype == torch.float64


def test_thin_rotated_gaussian_is_a_line_not_the_identity():
    """sigma_y = 0 at an oblique angle: a 1-D Gaussian along the rotated axis (second moment sigma^2
    along it, at most 0.5^2 plus the grid's spread across it), continuous in the angle."""
    for angle in (0.5, 30.0, 45.0, 117.0):
        k = K.gaussian(3.0, sigma_y=0.0, angle=angle, dtype=torch.float64)[0]
        kh, kw = k.shape
        yy, xx = torch.meshgrid(torch.arange(kh, dtype=torch.float64) - kh // 2,
                                torch.arange(kw, dtype=torch.float64) - kw // 2, indexing="ij")
        th = math.radians(angle)
        u = xx * math.cos(th) - yy * math.sin(th)  # along the line (display y is -row)
        v = xx * math.sin(th) + yy * math.cos(th)  # across it
        assert float((k * u * u).sum()) == pytest.approx(9.0, rel=0.05)
        assert float((k * v * v).sum()) < 0.5
        assert int((k > 1e-3).sum()) > 10
    # sigma = sigma_y = 0 stays the identity at any angle
    assert torch.equal(K.gaussian(0.0, sigma_y=0.0, angle=30.0), torch.ones(1, 1, 1))


def test_multiples_of_90_degrees_swap_the_axes_exactly():
    from scipy import ndimage

    img = torch.rand(1, 1, 30, 37, dtype=torch.float64)
    for angle, (row_sigma, col_sigma) in ((90.0, (3.0, 1.0)), (270.0, (3.0, 1.0)), (180.0, (1.0, 3.0))):
        y = bk.gaussian_blur(img, 3.0, sigma_y=1.0, angle=angle)
        ref = ndimage.gaussian_filter(img[0, 0].numpy(), (row_sigma, col_sigma), mode="mirror", truncate=3.0,
                                      radius=(math.ceil(3 * row_sigma), math.ceil(3 * col_sigma)))
        np.testing.assert_allclose(y[0, 0].numpy(), ref, rtol=0, atol=1e-13)
        k = K.gaussian(3.0, sigma_y=1.0, angle=angle, dtype=torch.float64)[0]
        g_row = K.gaussian1d(row_sigma, dtype=torch.float64)[0]
        g_col = K.gaussian1d(col_sigma, dtype=torch.float64)[0]
        outer = g_row[:, None] * g_col[None, :]
        torch.testing.assert_close(k, outer, rtol=1e-13, atol=1e-17)  # 2-D normalisation: rounding only
    # a degenerate (line) Gaussian at 90 degrees is the vertical line, exactly
    assert torch.equal(K.gaussian(3.0, sigma_y=0.0, angle=90.0), K.gaussian(0.0, sigma_y=3.0))
    # an isotropic Gaussian does not depend on the angle
    x = torch.rand(2, 3, 20, 20)
    assert torch.equal(bk.gaussian_blur(x, 2.0, angle=30.0), bk.gaussian_blur(x, 2.0))


def test_kernel_builders_refuse_empty_absurd_and_fractional_parameters():
    with pytest.raises(ValueError, match="sigma must hold at least one value"):
        K.gaussian1d(torch.tensor([]))
    with pytest.raises(ValueError, match="radius must hold at least one value"):
        K.disk(torch.tensor([]))
    with pytest.raises(TypeError, match="radius must be an integer"):
        K.gaussian1d(1.0, radius=4.7)
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"sigma=1e\+12 gives kernels of"):
        bk.gaussian_blur(x, 1e12)
    with pytest.raises(ValueError, match=r"radius=1e\+06 gives 2-D kernels"):
        bk.defocus_blur(x, 1e6)
    with pytest.raises(ValueError, match="length=.* gives 2-D kernels"):
        bk.motion_blur(x, 1e7)


def test_auto_method_counts_the_fft_padding():
    """A kernel as large as the image: the FFT transforms a plane several times the output, so the
    direct path is the cheaper one (auto used to pick the FFT for a radius-10 disk on 32 px images)."""
    from blurkit import filtering

    x = torch.rand(4, 3, 32, 32)
    assert filtering._choose("auto", x, 317.0, (32 + 21) ** 2, True) == "direct"
    big = torch.rand(1, 3, 512, 512)
    assert filtering._choose("auto", big, 61.0 * 61.0, (512 + 61) ** 2, True) == "fft"
    # and both methods agree on such a batch
    torch.testing.assert_close(bk.defocus_blur(x, 10.0, method="fft"), bk.defocus_blur(x, 10.0, method="direct"),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("border,np_mode", [("reflect", "reflect"), ("symmetric", "symmetric"), ("circular", "wrap"),
                                            ("replicate", "edge"), ("constant", "constant")])
def test_kernels_far_wider_than_the_image_are_folded_exactly(border, np_mode):
    """sigma 40 (241 taps) on a 7 x 9 image: the kernel is folded onto the border's period before the
    axis matrices are built; numpy's padding by 120 px on each side is the reference."""
    img = np.random.default_rng(0).random((7, 9))
    k = K.gaussian1d(40.0, dtype=torch.float64)[0].numpy()
    R = len(k) // 2
    p = np.pad(img, R, mode=np_mode)
    rows = np.stack([np.correlate(p[i], k, mode="valid") for i in range(p.shape[0])])  # (7 + 2R, 9)
    ref = np.stack([np.correlate(rows[:, j], k, mode="valid") for j in range(rows.shape[1])], axis=1)
    got = bk.gaussian_blur(torch.from_numpy(img)[None, None], 40.0, border=border)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # and a sigma that would need 512 x 6e6 index entries unfolded runs in memory and time
    y = bk.gaussian_blur(torch.rand(1, 1, 64, 64), 1e6, border=border)
    assert torch.isfinite(y).all()
