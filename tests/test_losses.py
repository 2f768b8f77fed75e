"""Tests of blurkit.losses against independent NumPy / OpenCV / SciPy implementations."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

import blurkit as bk
from blurkit import losses as L


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: one thread avoids oversubscription on shared CPUs (results do not depend on it).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ independent references (NumPy/cv2)
def _rel_np(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> float:
    rms = lambda t: math.sqrt(float(np.mean(t * t)))  # noqa: E731
    return rms(a - b) / (rms(a) + rms(b) + eps)


def _sobel_np(a: np.ndarray, k: int) -> np.ndarray:
    gx = cv2.Sobel(a, cv2.CV_64F, 1, 0, ksize=k)
    gy = cv2.Sobel(a, cv2.CV_64F, 0, 1, ksize=k)
    return np.hypot(gx, gy)


def _blursim_np(x: np.ndarray, y: np.ndarray, alpha: float, k: int = 5, log: bool = False,
                eps: float = 1e-8) -> float:
    """Documented formula on one (C, H, W) pair: full orthonormal np.fft.fft2 spectrum and cv2.Sobel."""
    vals = []
    for a, b in zip(x, y):
        if log:
            s = math.sqrt((np.mean(a * a) + np.mean(b * b)) / 2) + eps
            fa = np.log1p(np.abs(np.fft.fft2(a, norm="ortho")) / s)
            fb = np.log1p(np.abs(np.fft.fft2(b, norm="ortho")) / s)
        else:
            fa, fb = np.abs(np.fft.fft2(a, norm="ortho")), np.abs(np.fft.fft2(b, norm="ortho"))
        g = _rel_np(fa, fb, eps)
        sp = _rel_np(_sobel_np(a, k), _sobel_np(b, k), eps)
        vals.append((1 - alpha) * g + alpha * sp)
    return float(np.mean(vals))


def _photo(name: str, size: int = 128) -> np.ndarray:
    import skimage.color
    import skimage.data
    import skimage.transform

    im = getattr(skimage.data, name)()
    if im.ndim == 3:
        im = skimage.color.rgb2gray(im[..., :3])
    im = im.astype(np.float64)
    if im.max() > 1.0:
        im = im / 255.0
    return skimage.transform.resize(im, (size, size), anti_aliasing=True)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


# ------------------------------------------------------------------------------------------ Sobel
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_sobel_kernels_match_opencv(k):
    d, s = L.sobel_kernels(k)
    kx, ky = cv2.getDerivKernels(1, 0, k)
    np.testing.assert_array_equal(d.numpy(), kx.ravel())
    np.testing.assert_array_equal(s.numpy(), ky.ravel())


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_sobel_magnitude_matches_cv2_sobel(k):
    rng = np.random.default_rng(k)
    x = rng.random((2, 3, 19, 24))
    m = L.sobel_magnitude(torch.from_numpy(x), k).numpy()
    ref = np.stack([[_sobel_np(x[b, c], k) for c in range(3)] for b in range(2)])
    np.testing.assert_allclose(m, ref, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------- values vs NumPy
@pytest.mark.parametrize("k,log,alpha", [(5, False, 0.8), (3, False, 0.3), (7, True, 0.5), (5, True, 1.0)])
def test_blursim_matches_numpy_formula(k, log, alpha):
    rng = np.random.default_rng(1)
    x = rng.random((3, 2, 17, 22))  # odd height, even width: checks the rfft2 half-spectrum weighting
    y = ndimage.gaussian_filter(x, (0, 0, 1.2, 1.2)) + 0.05 * rng.random(x.shape)
    got = L.blursim(torch.from_numpy(x), torch.from_numpy(y), alpha, sobel_size=k, log_magnitude=log,
                    reduction="none").numpy()
    ref = [_blursim_np(x[b], y[b], alpha, k, log) for b in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    g = L.general_term(torch.from_numpy(x), torch.from_numpy(y), log_magnitude=log).numpy()
    np.testing.assert_allclose(g, [_blursim_np(x[b], y[b], 0.0, k, log) for b in range(3)], rtol=1e-9)
    s = L.specific_term(torch.from_numpy(x), torch.from_numpy(y), sobel_size=k).numpy()
    np.testing.assert_allclose(s, [_blursim_np(x[b], y[b], 1.0, k, log) for b in range(3)], rtol=1e-9)


def test_odd_width_spectrum_and_luminance():
    rng = np.random.default_rng(2)
    x, y = rng.random((2, 3, 16, 15)), rng.random((2, 3, 16, 15))
    w = np.array([0.299, 0.587, 0.114])[None, :, None, None]
    xl, yl = (x * w).sum(1, keepdims=True), (y * w).sum(1, keepdims=True)
    got = L.blursim(torch.from_numpy(x), torch.from_numpy(y), 0.4, color="luminance", reduction="none")
    np.testing.assert_allclose(got.numpy(), [_blursim_np(xl[b], yl[b], 0.4) for b in range(2)], rtol=1e-9)


def test_properties_range_identity_symmetry():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 24, 24, generator=g), torch.rand(4, 3, 24, 24, generator=g)
    v = L.blursim(x, y, reduction="none")
    assert v.shape == (4,) and bool(((v >= 0) & (v <= 1)).all())
    torch.testing.assert_close(v, L.blursim(y, x, reduction="none"))
    assert float(L.blursim(x, x)) == 0.0
    assert float(L.blursim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))) == 0.0


# ------------------------------------------------------------------------------- invariances
@pytest.mark.parametrize("log", [False, True])
def test_intensity_scale_invariance(log):
    A = _photo("camera", 64)
    Ap = ndimage.gaussian_filter(A, 1.5, mode="mirror")
    v1 = L.blursim(_t(A), _t(Ap), 0.6, log_magnitude=log)
    v255 = L.blursim(_t(A * 255), _t(Ap * 255), 0.6, log_magnitude=log)
    assert abs(float(v1) - float(v255)) < 1e-7 * float(v1)
    assert 0.05 < float(v1) < 1


def test_size_invariance_under_periodic_tiling_exact():
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 12, 10)), rng.random((2, 12, 10))
    tile = lambda a: np.tile(a, (1, 3, 2))  # noqa: E731  (3 x 2 copies: 36 x 20)
    for fn in (lambda a, b: L.general_term(a, b),
               lambda a, b: L.specific_term(a, b, border="circular"),
               lambda a, b: L.blursim(a, b, 0.5, border="circular")):
        small = fn(torch.from_numpy(x), torch.from_numpy(y))
        big = fn(torch.from_numpy(tile(x)), torch.from_numpy(tile(y)))
        torch.testing.assert_close(small, big, rtol=1e-10, atol=1e-12)


def test_size_invariance_on_photographs():
    # Documented: the value depends on the blur per pixel, not on the number of pixels.
    for name in ("camera", "astronaut"):
        vals = []
        for size in (64, 128, 256):
            A = _photo(name, size)
            vals.append(float(L.blursim(_t(A), _t(ndimage.gaussian_filter(A, 1.0, mode="mirror")))))
        assert max(vals) < 1.3 * min(vals), (name, vals)
        A = _photo(name, 256)
        crop = A[64:192, 64:192]
        v_crop = float(L.blursim(_t(crop), _t(ndimage.gaussian_filter(crop, 1.0, mode="mirror"))))
        assert abs(v_crop - vals[-1]) < 0.15 * vals[-1], (name, v_crop, vals[-1])


# -------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kw", [dict(alpha=0.7), dict(alpha=0.3, log_magnitude=True, sobel_size=3),
                                dict(alpha=0.5, color="luminance", sobel_size=7)])
def test_gradcheck_float64(kw):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.rand(2, 3, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: L.blursim(a, b, **kw, reduction="none"), (x, y),
                                    fast_mode=True)


def test_finite_gradients_at_equality_and_flat_images():
    for x in (torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16), torch.full((1, 2, 9, 9), 0.5)):
        xr = x.clone().requires_grad_()
        loss = L.blursim(xr, x.clone(), 0.5, log_magnitude=True) + L.blursim(xr, x.clone(), 0.5)
        loss.backward()
        assert float(loss.detach()) == 0.0 and bool(torch.isfinite(xr.grad).all())
    # One flat, one textured image: zero Sobel magnitude and zero spectrum bins on one side.
    xr = torch.zeros(1, 1, 8, 8, requires_grad=True)
    L.blursim(xr, torch.rand(1, 1, 8, 8)).backward()
    assert bool(torch.isfinite(xr.grad).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(dtype):
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    ref = L.blursim(x.double(), y.double())
    got = L.blursim(x.to(dtype).requires_grad_(), y.to(dtype))
    assert got.dtype == dtype
    assert abs(float(got.detach()) - float(ref)) < 2e-2
    got.backward()


# ------------------------------------------------------------------------------------ reductions
def test_reductions_and_unbatched_input():
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(3, 2, 12, 12, generator=g), torch.rand(3, 2, 12, 12, generator=g)
    none = L.blursim(x, y, reduction="none")
    torch.testing.assert_close(L.blursim(x, y, reduction="mean"), none.mean())
    torch.testing.assert_close(L.blursim(x, y, reduction="sum"), none.sum())
    torch.testing.assert_close(L.blursim(x[1], y[1], reduction="none"), none[1])
    alpha = torch.tensor([0.0, 0.5, 1.0])
    per = L.blursim(x, y, alpha, reduction="none")
    torch.testing.assert_close(per[0], L.general_term(x, y)[0])
    torch.testing.assert_close(per[2], L.specific_term(x, y)[2])


# ---------------------------------------------------------------------- the README claim, real photos
PHOTOS = ("camera", "astronaut", "coffee", "chelsea")


def test_readme_claim_on_photographs():
    ims = {n: _photo(n) for n in PHOTOS}
    for a in PHOTOS:
        A = ims[a]
        Ap = ndimage.gaussian_filter(A, 1.0, mode="mirror")
        bs_close = float(L.blursim(_t(A), _t(Ap)))
        bs_far = min(float(L.blursim(_t(A), _t(ims[b]))) for b in PHOTOS if b != a)
        assert bs_close < 0.35 * bs_far, (a, bs_close, bs_far)
        # MSE ranks the pair the same way (the blurred copy is closer).
        mse_close = float(np.mean((A - Ap) ** 2))
        mse_far = min(float(np.mean((A - ims[b]) ** 2)) for b in PHOTOS if b != a)
        assert mse_close < mse_far


@pytest.mark.parametrize("name", PHOTOS)
def test_blursim_monotonic_in_sigma(name):
    A = _t(_photo(name))
    sig = torch.tensor([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    blurred = bk.gaussian_blur(A.expand(len(sig), 1, -1, -1), sig)
    v = L.blursim(A.expand_as(blurred), blurred, reduction="none")
    assert bool((v.diff() > 0).all()), v


def test_optimising_blursim_from_noise_recovers_edges():
    tgt = _t(_photo("camera", 32)).float()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g).requires_grad_()

    def edge_corr(a: torch.Tensor) -> float:
        ma = _sobel_np(a[0, 0].detach().double().numpy(), 5).ravel()
        mb = _sobel_np(tgt[0, 0].double().numpy(), 5).ravel()
        return float(np.corrcoef(ma, mb)[0, 1])

    before = edge_corr(x)
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = L.blursim(x, tgt, 0.8)
        loss.backward()
        opt.step()
    after = edge_corr(x)
    assert before < 0.3 and after > 0.9, (before, after)


# ---------------------------------------------------------------------------------- AlphaSchedule
def test_alpha_schedule_kinds():
    lin = L.AlphaSchedule(0.9, 0.1, steps=10, kind="linear")
    cos = L.AlphaSchedule(0.9, 0.1, steps=10, kind="cosine")
    exp = L.AlphaSchedule(0.9, 0.1, steps=10, kind="exponential")
    for s in (lin, cos, exp):
        assert s.value == pytest.approx(0.9)
        vals = [s.step() for _ in range(12)]
        assert vals[9] == pytest.approx(0.1) and vals[-1] == pytest.approx(0.1)
        assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert lin.value_at(5) == pytest.approx(0.5)
    assert cos.value_at(5) == pytest.approx(0.5)
    assert cos.value_at(2) == pytest.approx(0.1 + 0.8 * (1 + math.cos(math.pi * 0.2)) / 2)
    assert exp.value_at(5) == pytest.approx(math.sqrt(0.9 * 0.1))
    assert float(lin) == lin.value


def test_alpha_schedule_state_and_blursim_reads_it():
    sched = L.AlphaSchedule(0.9, 0.1, steps=4)
    crit = bk.BlurSim(alpha=sched, reduction="none")
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    torch.testing.assert_close(crit(x, y), L.blursim(x, y, 0.9, reduction="none"))
    sched.step()
    sched.step()
    torch.testing.assert_close(crit(x, y), L.blursim(x, y, 0.5, reduction="none"))
    state = crit.state_dict()
    sched2 = L.AlphaSchedule(0.9, 0.1, steps=4)
    crit2 = bk.BlurSim(alpha=sched2)
    crit2.load_state_dict(state)
    assert sched2.last_step == 2 and crit2.alpha == pytest.approx(0.5)
    s3 = L.AlphaSchedule()
    s3.load_state_dict(sched.state_dict())
    assert s3.state_dict() == sched.state_dict()


# ---------------------------------------------------------------------------------- bad input
X8, Y8 = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)


@pytest.mark.parametrize("call,exc,words", [
    (lambda: L.blursim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9)), ValueError, "same shape"),
    (lambda: L.blursim(X8, Y8, 1.5), ValueError, "alpha"),
    (lambda: L.blursim(X8, Y8, -0.1), ValueError, "alpha"),
    (lambda: L.blursim(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.rand(1, 1, 8, 8)), TypeError, "x"),
    (lambda: L.blursim(torch.rand(1, 1, 8, 8), np.zeros((1, 1, 8, 8))), TypeError, "y"),
    (lambda: L.blursim(torch.rand(8, 8), torch.rand(8, 8)), ValueError, "shape"),
    (lambda: L.blursim(X8, Y8, reduction="avg"), ValueError, "reduction"),
    (lambda: L.blursim(X8, Y8, color="rgb"), ValueError, "color"),
    (lambda: L.blursim(X8.expand(1, 2, 8, 8), Y8.expand(1, 2, 8, 8), color="luminance"), ValueError,
     "luminance"),
    (lambda: L.blursim(X8, Y8, sobel_size=4), ValueError, "sobel_size"),
    (lambda: L.blursim(X8, Y8, eps=-1), ValueError, "eps"),
    (lambda: L.blursim(X8, Y8, border="wrap"), ValueError, "border"),
    (lambda: bk.BlurSim(alpha=2.0), ValueError, "alpha"),
    (lambda: bk.BlurSim(sobel_size=9.0), ValueError, "sobel_size"),
    (lambda: L.AlphaSchedule(steps=0), ValueError, "steps"),
    (lambda: L.AlphaSchedule(start=1.2), ValueError, "start"),
    (lambda: L.AlphaSchedule(kind="step"), ValueError, "kind"),
    (lambda: L.AlphaSchedule(0.9, 0.0, 10, "exponential"), ValueError, "exponential"),
    (lambda: L.blur_consistency(torch.rand(2, 5), torch.rand(2, 4)), ValueError, "blurred"),
    (lambda: L.blur_consistency(torch.rand(2, 5), torch.rand(2, 5), kind="kl"), ValueError, "kind"),
    (lambda: L.blur_consistency(torch.zeros(2, 5, dtype=torch.long), torch.rand(2, 5)), TypeError, "clean"),
    (lambda: L.blur_consistency(torch.rand(2, 5), []), ValueError, "blurred"),
    (lambda: L.BlurConsistencyLoss(3), TypeError, "blur"),
    (lambda: L.BlurConsistencyLoss(lambda x: x, views=0), ValueError, "views"),
    (lambda: L.BlurConsistencyLoss(lambda x: x, task_on="blurred"), ValueError, "task_on"),
])
def test_bad_input_errors_name_the_parameter(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


# ---------------------------------------------------------------------------- blur consistency
def test_js_matches_scipy_jensenshannon_squared():
    rng = np.random.default_rng(8)
    p, q = rng.dirichlet(np.ones(7), size=5), rng.dirichlet(np.ones(7), size=5)
    got = L.blur_consistency(torch.from_numpy(np.log(p)), torch.from_numpy(np.log(q)), "js", reduction="none")
    ref = [jensenshannon(p[i], q[i]) ** 2 for i in range(5)]  # natural log (scipy's default base e)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)
    ref2 = [jensenshannon(p[i], q[i], base=2) ** 2 * math.log(2) for i in range(5)]
    np.testing.assert_allclose(got.numpy(), ref2, rtol=1e-9)


def test_js_generalised_to_several_views_as_augmix():
    rng = np.random.default_rng(9)
    ps = rng.dirichlet(np.ones(6), size=(3, 4))  # clean + 2 blurred views, batch 4
    logits = torch.from_numpy(np.log(ps)) + 3.0  # softmax is shift invariant
    got = L.blur_consistency(logits[0], [logits[1], logits[2]], "js", reduction="none")
    m = ps.mean(0)
    ref = entropy(m, axis=1) - np.mean([entropy(p, axis=1) for p in ps], axis=0)  # JS = H(M) - mean H(p_i)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)
    torch.testing.assert_close(L.blur_consistency(logits[0], logits[1:], "js"), got.mean())
    # AugMix's own expression: mean of F.kl_div(log M, p_i, reduction="batchmean").
    pt = torch.softmax(logits, dim=2)
    log_m = pt.mean(0).clamp(1e-7, 1).log()
    augmix = sum(torch.nn.functional.kl_div(log_m, pi, reduction="batchmean") for pi in pt) / 3
    torch.testing.assert_close(got.mean(), augmix)


def test_cosine_consistency_and_gradients():
    g = torch.Generator().manual_seed(10)
    f0 = torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    f1 = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    got = L.blur_consistency(f0, f1, "cosine", reduction="none")
    a, b = f0.detach().reshape(4, -1).numpy(), f1.reshape(4, -1).numpy()
    ref = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-9)
    assert torch.autograd.gradcheck(lambda u: L.blur_consistency(u, f1, "cosine"), (f0,))
    # Identical views: zero loss with finite gradients.
    same = f0.detach().clone().requires_grad_()
    for kind in ("js", "cosine"):
        loss = L.blur_consistency(same, same.detach().clone(), kind)
        loss.backward()
        assert abs(float(loss.detach())) < 1e-12 and bool(torch.isfinite(same.grad).all())


def test_blur_consistency_loss_with_a_classifier():
    g = torch.Generator().manual_seed(11)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(5, 1, 16, 16, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1])
    blur = lambda t: bk.gaussian_blur(t, 1.5)  # noqa: E731
    crit = L.BlurConsistencyLoss(blur, kind="js", weight=12.0, views=2)
    loss = crit(model, x, y)
    out = model(torch.cat([x, blur(x), blur(x)]))
    o = out.split(5)
    ce = torch.nn.functional.cross_entropy
    ref = torch.stack([ce(oi, y) for oi in o]).mean() + 12.0 * L.blur_consistency(o[0], list(o[1:]))
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    assert set(crit.last_terms) == {"task", "consistency", "total"}
    # Identity "blur": the consistency term vanishes; clean-only task loss.
    crit0 = L.BlurConsistencyLoss(lambda t: t, views=1, task_on="clean")
    torch.testing.assert_close(crit0(model, x, y), ce(model(x), y))

    # A model returning (logits, features): cosine consistency uses the features.
    class Two(torch.nn.Module):
        def forward(self, t):
            f = t.flatten(1)
            return f[:, :3], f

    crit_c = L.BlurConsistencyLoss(blur, kind="cosine", weight=1.0, views=1)
    total = crit_c(Two(), x, y)
    xb = blur(x)
    ref_c = (ce(x.flatten(1)[:, :3], y) + ce(xb.flatten(1)[:, :3], y)) / 2 \
        + L.blur_consistency(x.flatten(1), xb.flatten(1), "cosine")
    torch.testing.assert_close(total, ref_c)



def test_flat_images_have_no_edges_in_float32():
    """Two flat images of different levels: the Sobel maps are 0 (not rounding noise), so the edge term
    is 0 and BlurSim is (1 - alpha) times the spectral term, as in float64."""
    a = torch.full((2, 1, 32, 32), 0.2)
    b = torch.full((2, 1, 32, 32), 0.9)
    assert float(bk.losses.sobel_magnitude(b).abs().max()) == 0.0
    for dt in (torch.float32, torch.float64):
        v = bk.losses.blursim(a.to(dt), b.to(dt), alpha=0.8, reduction="none")
        spectral = bk.losses.blursim(a.to(dt), b.to(dt), alpha=0.0, reduction="none")
        torch.testing.assert_close(v, 0.2 * spectral, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        bk.losses.blursim(a, b, eps=0)
