"""Tests for blurkit.deblur: Wiener, Richardson-Lucy, blind deblurring, DeblurFront.

References: scikit-image's ``restoration.wiener`` and ``restoration.richardson_lucy`` (run on the
same data, the same kernel and the same parameters, in their own border model: circular for
Wiener, zero padding for Richardson-Lucy), scipy.ndimage for blurring, and mathematical properties
(linearity, flux preservation, non-negativity, autograd gradcheck).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import color, data, restoration
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.transform import resize

import blurkit as bk
from blurkit import deblur


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def one_thread():
    """These tests make many small calls (gradcheck: hundreds): a second intra-op thread only waits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A grey 96x112 float64 photograph in [0, 1] (astronaut, downscaled)."""
    g = color.rgb2gray(data.astronaut())
    return resize(g, (96, 112), anti_aliasing=True)


def _asym_kernel() -> np.ndarray:
    """A normalised 5x7 kernel that is neither separable nor point-symmetric."""
    rng = np.random.default_rng(3)
    k = rng.random((5, 7)) ** 2
    return k / k.sum()


def _circ_blur(img: np.ndarray, corr_kernel: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img, corr_kernel, mode="wrap")


# ------------------------------------------------------------------------------- Wiener vs skimage
@pytest.mark.parametrize("family", ["gaussian", "disk", "motion", "asymmetric"])
def test_wiener_matches_skimage_in_its_setting(photo, family):
    # Same data, kernel, balance and regulariser (Laplacian), circular border: the same filter.
    kernel = {"gaussian": bk.kernels.gaussian(2.0, dtype=torch.float64)[0].numpy(),
              "disk": bk.kernels.disk(2.5, dtype=torch.float64)[0].numpy(),
              "motion": bk.kernels.motion(7.0, 30.0, dtype=torch.float64)[0].numpy(),
              "asymmetric": _asym_kernel()}[family]
    rng = np.random.default_rng(0)
    y = _circ_blur(photo, kernel) + 0.01 * rng.standard_normal(photo.shape)
    ref = restoration.wiener(y, kernel[::-1, ::-1].copy(), 0.01, clip=False)  # skimage: convolution kernel
    ours = deblur.wiener(torch.from_numpy(y)[None, None], torch.from_numpy(kernel), 0.01, border="circular")
    # float64 FFT round-off only (a Python-number balance is not rounded to float32 first: that cost 1e-9)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, atol=1e-11)


def test_wiener_identity_regulariser_matches_skimage(photo):
    kernel = bk.kernels.gaussian(1.5, dtype=torch.float64)[0].numpy()
    y = _circ_blur(photo, kernel)
    ref = restoration.wiener(y, kernel, 0.003, reg=np.ones((1, 1)), clip=False)
    ours = deblur.wiener(torch.from_numpy(y)[None, None], torch.from_numpy(kernel), 0.003, reg="identity",
                         border="circular")
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, atol=1e-7)


def test_wiener_beats_skimage_and_the_blurred_input(photo):
    # Realistic setting: blur with a reflect border (not periodic), noise 0.01. The padded, tapered
    # deconvolution must improve on the input and be at least as good as skimage (+-0.1 dB floor).
    rng = np.random.default_rng(1)
    for sigma in (1.0, 3.0):
        k = bk.kernels.gaussian(sigma, dtype=torch.float64)
        y = ndimage.gaussian_filter(photo, sigma, mode="mirror", truncate=3.0)
        y = y + 0.01 * rng.standard_normal(photo.shape)
        ours = deblur.wiener(torch.from_numpy(y)[None, None], k, 0.005)[0, 0].numpy()
        ref = restoration.wiener(y, k[0].numpy(), 0.005, clip=False)
        p_in, p_ours, p_ref = (sk_psnr(photo, a, data_range=1.0) for a in (y, ours, ref))
        assert p_ours > p_in + 1.0, (sigma, p_in, p_ours)
        assert p_ours >= p_ref - 0.1, (sigma, p_ref, p_ours)


def test_wiener_noise_free_recovers_image_with_small_balance(photo):
    # Exact periodic model, no noise: with a tiny identity regulariser the inverse is near exact.
    k = bk.kernels.gaussian(1.0, dtype=torch.float64)
    x = torch.from_numpy(photo)[None, None]
    y = bk.filter2d(x, k, border="circular")
    rec = deblur.wiener(y, k, 1e-14, reg="identity", border="circular")
    assert float((rec - x).abs().max()) < 1e-6


def test_wiener_per_image_kernels_and_balance_match_single_calls(photo):
    # The default margin follows the batch's largest kernel, so fix it to compare with single calls.
    x = torch.from_numpy(photo[:48, :56])[None, None].repeat(3, 2, 1, 1)
    k = bk.kernels.gaussian(torch.tensor([0.8, 2.0, 3.0]), dtype=torch.float64)
    y = bk.filter2d(x, k)
    bal = torch.tensor([0.001, 0.01, 0.003], dtype=torch.float64)
    batch = deblur.wiener(y, k, bal, margin=20)
    for i in range(3):
        one = deblur.wiener(y[i], k[i], float(bal[i]), margin=20)
        torch.testing.assert_close(batch[i], one, atol=1e-8, rtol=0)


def test_wiener_is_affine_equivariant(photo):
    # Linear and identity on constants (kernel sums to 1): works on normalised tensors.
    k = bk.kernels.disk(2.0, dtype=torch.float64)
    y = bk.filter2d(torch.from_numpy(photo)[None, None], k)
    a = deblur.wiener(y, k, 0.01)
    b = deblur.wiener((y - 0.449) / 0.226, k, 0.01) * 0.226 + 0.449
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_wiener_dtypes_shapes():
    x = torch.rand(3, 20, 24)
    k = bk.kernels.gaussian(1.0)
    out = deblur.wiener(x, k)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert deblur.wiener(x.half(), k).dtype == torch.float16
    u8 = (x * 255).to(torch.uint8)
    o8 = deblur.wiener(u8[None], k, clip=True)
    assert o8.dtype == torch.uint8 and o8.shape == (1, 3, 20, 24)
    assert float(deblur.wiener(x * 3, k, 1e-4, clip=True).max()) <= 1.0
    for border in ("reflect", "symmetric", "replicate", "constant", "circular"):
        assert torch.isfinite(deblur.wiener(x, k, border=border)).all()
    # a kernel larger than the image works with a padded border
    big = bk.kernels.gaussian(6.0)
    assert deblur.wiener(x, big).shape == x.shape


@pytest.mark.parametrize("border", ["reflect", "symmetric", "replicate", "constant", "circular"])
@pytest.mark.parametrize("groups", [False, True])
def test_wiener_fast_path_equals_general_path(photo, border, groups, monkeypatch):
    # Without autograd, point-symmetric kernels take a real-filter path; with autograd the general complex
    # path runs. Separable, non-separable and mixed batches, shared or per-image kernels and balances,
    # every border (the 48 px margin of sigma 4 exceeds the 40 px image height), the batch at once or
    # (groups) one image per group.
    if groups:
        monkeypatch.setattr(deblur, "_WIENER_CHUNK_BYTES", 1)
    x = torch.from_numpy(photo[:40, :52])[None, None].repeat(4, 1, 1, 1)
    cases = [bk.kernels.gaussian(torch.tensor([0.7, 1.5, 2.5, 4.0]), dtype=torch.float64),
             bk.kernels.gaussian(torch.tensor([2.0, 1.0, 3.0, 1.5]), torch.tensor([0.8, 2.5, 1.0, 1.5]),
                                 angle=torch.tensor([30.0, 75.0, 0.0, 140.0]), dtype=torch.float64),
             bk.kernels.motion(torch.tensor([5.0, 9.0, 3.0, 12.0]), torch.tensor([0.0, 33.0, 90.0, 150.0]),
                               dtype=torch.float64),
             bk.kernels.disk(2.5, dtype=torch.float64)]
    for k, bal in zip(cases, (torch.tensor([0.001, 0.01, 0.003, 0.03], dtype=torch.float64), 0.01,
                              torch.tensor([0.02, 0.005, 0.01, 0.1], dtype=torch.float64), 0.003)):
        y = bk.filter2d(x, k) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                                                   dtype=torch.float64)
        fast = deblur.wiener(y, k, bal, border=border)
        with torch.enable_grad():
            general = deblur.wiener(y.clone().requires_grad_(True), k, bal, border=border).detach()
        torch.testing.assert_close(fast, general, atol=1e-10, rtol=0)
    # float32: the flushed (negligible) transfer values change nothing visible
    k = bk.kernels.gaussian(torch.tensor([1.0, 4.0, 2.0, 3.0]))
    y = bk.filter2d(x.float(), k)
    with torch.enable_grad():
        general = deblur.wiener(y.clone().requires_grad_(True), k, 0.01, border=border).detach()
    torch.testing.assert_close(deblur.wiener(y, k, 0.01, border=border), general, atol=2e-5, rtol=0)


def test_wiener_gradcheck_images_balance_kernels():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    bal = torch.tensor([0.01, 0.05], dtype=torch.float64, requires_grad=True)
    k = bk.kernels.gaussian(torch.tensor([0.5, 0.6]), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: deblur.wiener(a, k, b), (x, bal))
    assert torch.autograd.gradcheck(lambda a: deblur.wiener(a, k, 0.02, border="circular"), (x,))
    # kernels: through a normalised, strictly positive parametrisation (perturbations stay valid kernels)
    p = (k[:1] + 0.01).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: deblur.wiener(x.detach(), q / q.sum(), 0.02), (p,))


# ------------------------------------------------------------------------------------------ Richardson-Lucy
@pytest.mark.parametrize("family", ["gaussian", "disk", "rotated", "asymmetric"])
def test_richardson_lucy_matches_skimage_in_its_setting(photo, family):
    # skimage: zero padding ('same' convolution), constant start 0.5, eps 1e-12.
    kernel = {"gaussian": bk.kernels.gaussian(1.5, dtype=torch.float64)[0].numpy(),
              "disk": bk.kernels.disk(2.0, dtype=torch.float64)[0].numpy(),
              "rotated": bk.kernels.gaussian(2.0, 0.7, 30.0, dtype=torch.float64)[0].numpy(),
              "asymmetric": _asym_kernel()}[family]
    y = np.clip(ndimage.correlate(photo, kernel, mode="constant"), 0, 1)
    ref = restoration.richardson_lucy(y, kernel[::-1, ::-1].copy(), num_iter=8, clip=False)
    ours = deblur.richardson_lucy(torch.from_numpy(y)[None, None], torch.from_numpy(kernel), 8,
                                  border="constant", init=0.5)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, rtol=1e-6, atol=1e-9)


def test_richardson_lucy_filter_epsilon_matches_skimage(photo):
    kernel = bk.kernels.gaussian(1.0, dtype=torch.float64)[0].numpy()
    y = np.clip(ndimage.correlate(photo, kernel, mode="constant"), 0, 1)
    ref = restoration.richardson_lucy(y, kernel, num_iter=5, clip=False, filter_epsilon=0.05)
    ours = deblur.richardson_lucy(torch.from_numpy(y)[None, None], torch.from_numpy(kernel), 5,
                                  border="constant", init=0.5, filter_epsilon=0.05)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, rtol=1e-6, atol=1e-9)


def test_richardson_lucy_improves_and_beats_skimage(photo):
    rng = np.random.default_rng(2)
    k = bk.kernels.disk(2.5, dtype=torch.float64)
    y = np.clip(ndimage.correlate(photo, k[0].numpy(), mode="mirror") + 0.01 * rng.standard_normal(photo.shape),
                0, 1)
    ours = deblur.richardson_lucy(torch.from_numpy(y)[None, None], k, 20)[0, 0].numpy()
    ref = restoration.richardson_lucy(y, k[0].numpy(), num_iter=20, clip=False)
    p_in, p_ours, p_ref = (sk_psnr(photo, a, data_range=1.0) for a in (y, ours, ref))
    assert p_ours > p_in + 1.0 and p_ours >= p_ref - 0.1, (p_in, p_ours, p_ref)


def test_richardson_lucy_nonnegative_and_flux_preserving(photo):
    k = bk.kernels.motion(torch.tensor([5.0, 9.0]), torch.tensor([20.0, 100.0]), dtype=torch.float64)
    x = torch.from_numpy(photo)[None, None].repeat(2, 1, 1, 1)
    y = bk.filter2d(x, k, border="circular")
    out = deblur.richardson_lucy(y, k, 15, border="circular")
    assert float(out.min()) >= 0.0
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), y.sum(dim=(1, 2, 3)), rtol=1e-9, atol=0)
    # negative noise is treated as zero intensity
    assert float(deblur.richardson_lucy(y - 0.05, k, 3).min()) >= 0.0


def test_richardson_lucy_per_image_iterations_match_single_calls(photo):
    x = torch.from_numpy(photo).float()[None, None].repeat(2, 1, 1, 1)
    k = bk.kernels.gaussian(torch.tensor([1.0, 2.0]))
    y = bk.filter2d(x, k)
    batch = deblur.richardson_lucy(y, k, torch.tensor([3, 7]))
    for i, n in enumerate((3, 7)):
        torch.testing.assert_close(batch[i], deblur.richardson_lucy(y[i], k[i], n), atol=1e-5, rtol=1e-5)


def test_richardson_lucy_compiled_loop_equals_eager_path(photo, monkeypatch):
    # The compiled CPU loop (buffers reused, a few images per group) against the eager torch path.
    from blurkit import filtering
    if filtering._load_lib() is None:
        pytest.skip("compiled extension not built")
    x = torch.from_numpy(photo)[None, None].repeat(5, 1, 1, 1)
    kernels = {"separable": bk.kernels.gaussian(torch.tensor([1.0, 2.0, 0.6, 3.0, 1.5]), dtype=torch.float64),
               "2-D": bk.kernels.motion(torch.tensor([5.0, 9.0, 3.0, 7.0, 11.0]),
                                        torch.tensor([10.0, 60.0, 90.0, 135.0, 0.0]), dtype=torch.float64)}
    monkeypatch.setattr(deblur, "_RL_CHUNK_BYTES", 2 * 4 * x[0].numel() * 8)  # groups of 2, 2 and 1 images
    n = torch.tensor([4, 6, 2, 6, 5])
    for k in kernels.values():
        y = bk.filter2d(x, k, border="symmetric")
        for kwargs in ({}, {"filter_epsilon": 1e-3, "border": "constant"}):
            ours = deblur.richardson_lucy(y, k, n, **kwargs)
            monkeypatch.setattr(filtering, "_FORCE_TORCH", True)
            ref = deblur.richardson_lucy(y, k, n, **kwargs)
            monkeypatch.setattr(filtering, "_FORCE_TORCH", False)
            torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-9)


def test_richardson_lucy_is_differentiable():
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 1, 6, 7, dtype=torch.float64, generator=gen) + 0.1).requires_grad_(True)
    k = bk.kernels.gaussian(0.8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: deblur.richardson_lucy(a, k, 2), (x,))


# ----------------------------------------------------------------------------------------------- errors
def test_errors_name_the_parameter():
    x = torch.rand(2, 1, 16, 16)
    k = bk.kernels.gaussian(1.0)
    with pytest.raises(ValueError, match="kernels has 3 kernels but images has 2"):
        deblur.wiener(x, bk.kernels.gaussian(torch.tensor([1.0, 2.0, 3.0])))
    with pytest.raises(ValueError, match="kernels must be normalised.*sums to 2"):
        deblur.wiener(x, k * 2)
    neg = k.clone()
    neg[0, 0, 0] = -0.1
    neg = neg / neg.sum()
    with pytest.raises(ValueError, match="kernels must be non-negative"):
        deblur.richardson_lucy(x, neg)
    with pytest.raises(ValueError, match="balance must be > 0"):
        deblur.wiener(x, k, 0.0)
    with pytest.raises(ValueError, match="balance must be > 0"):
        deblur.wiener(x, k, torch.tensor([0.01, -1.0]))
    with pytest.raises(ValueError, match="balance has 3 values"):
        deblur.wiener(x, k, torch.tensor([0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="num_iter must be >= 1"):
        deblur.richardson_lucy(x, k, 0)
    with pytest.raises(TypeError, match="num_iter"):
        deblur.richardson_lucy(x, k, 2.5)
    with pytest.raises(ValueError, match="reg must be one of"):
        deblur.wiener(x, k, reg="tv")
    with pytest.raises(ValueError, match="border must be one of"):
        deblur.wiener(x, k, border="wrap")
    with pytest.raises(ValueError, match="kernels must have odd sizes"):
        deblur.wiener(x, torch.full((4, 4), 1 / 16))
    with pytest.raises(ValueError, match="margin"):
        deblur.wiener(x, k, margin=-1)
    with pytest.raises(ValueError, match="family must be"):
        deblur.blind(x, "defocus", estimator=lambda im: torch.ones(2))
    with pytest.raises(ValueError, match="method must be"):
        deblur.blind(x, method="tv", estimator=lambda im: torch.ones(2))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        deblur.wiener(np.zeros((1, 8, 8)), k)


# ------------------------------------------------------------------------------------------------ blind
def _oracle(sigmas):
    return lambda images: torch.as_tensor(sigmas, dtype=torch.float32)


def test_blind_with_exact_estimate_equals_non_blind(photo):
    x = torch.from_numpy(photo).float()[None, None].repeat(2, 1, 1, 1)
    sig = torch.tensor([1.5, 3.0])
    y = bk.gaussian_blur(x, sig)
    out, est = deblur.blind(y, "gaussian", estimator=_oracle(sig))
    torch.testing.assert_close(est.sigma, sig)
    torch.testing.assert_close(out, deblur.wiener(y, bk.kernels.gaussian(sig), 0.01))
    out_m, est_m = deblur.blind(y, "motion", method="richardson_lucy", num_iter=3,
                                estimator=lambda im: (torch.tensor([5.0, 7.0]), torch.tensor([0.0, 45.0])))
    assert est_m.family == "motion" and est_m.kernels.shape[0] == 2 and out_m.shape == y.shape


def test_blind_with_blurkit_measure(photo):
    measure = pytest.importorskip("blurkit.measure")
    if not hasattr(measure, "estimate_sigma"):
        pytest.skip("blurkit.measure.estimate_sigma not available")
    x = torch.from_numpy(photo).float()[None, None].repeat(2, 1, 1, 1)
    y = bk.gaussian_blur(x, torch.tensor([1.5, 3.0]))
    out, est = deblur.blind(y, "gaussian")
    assert est.sigma.shape == (2,) and out.shape == y.shape
    assert all(sk_psnr(photo, out[i, 0].double().numpy(), data_range=1.0)
               > sk_psnr(photo, y[i, 0].double().numpy(), data_range=1.0) for i in range(2))


# ------------------------------------------------------------------------------------------ DeblurFront
class _Probe(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_deblur_front_fixed_sigma_equals_wiener_then_model():
    x = torch.rand(3, 1, 24, 24)
    front = bk.DeblurFront(_Probe(), sigma=1.5, balance=0.01)
    k = bk.kernels.gaussian(1.5)
    torch.testing.assert_close(front.deblur(x), deblur.wiener(x, k, 0.01))
    assert front(x).shape == (3, 1)
    blind_front = bk.DeblurFront(_Probe(), estimator=_oracle([1.0, 2.0, 0.0]))
    assert blind_front(x).shape == (3, 1)
    torch.testing.assert_close(blind_front.last_estimate.sigma, torch.tensor([1.0, 2.0, 0.0]))
    rl = bk.DeblurFront(_Probe(), method="richardson_lucy", sigma=1.0, num_iter=3, mean=0.449, std=0.226)
    assert torch.isfinite(rl((x - 0.449) / 0.226)).all()
    motion = bk.DeblurFront(_Probe(), family="motion", length=5.0, angle=30.0)
    assert motion(x).shape == (3, 1)
    alone = bk.DeblurFront(sigma=1.5, balance=0.01)  # front end only: returns the deblurred images
    torch.testing.assert_close(alone(x), deblur.wiener(x, k, 0.01))


def test_deblur_front_learnable_starts_as_fixed_and_trains():
    x = torch.rand(2, 3, 20, 20)
    fixed = bk.DeblurFront(_Probe(), sigma=1.0)
    learn = bk.DeblurFront(_Probe(), sigma=1.0, learnable=True)
    torch.testing.assert_close(learn.deblur(x), fixed.deblur(x), atol=1e-6, rtol=0)
    names = {n for n, _ in learn.named_parameters()}
    assert "log_balance" in names and any(n.startswith("refine.") for n in names)
    assert not list(fixed.parameters())
    learn(x).sum().backward()
    assert learn.log_balance.grad is not None and torch.isfinite(learn.log_balance.grad)
    with pytest.raises(ValueError, match="sigma is for family='gaussian'"):
        bk.DeblurFront(_Probe(), family="motion", sigma=1.0)
    with pytest.raises(ValueError, match="balance must be > 0"):
        bk.DeblurFront(_Probe(), balance=0.0)
    with pytest.raises(TypeError, match="model must be"):
        bk.DeblurFront(lambda z: z)


# ------------------------------------------------------------------------------- review regressions
@pytest.mark.parametrize("margin", [0, 1, 2])
def test_wiener_gives_the_same_result_with_and_without_autograd(margin):
    """The no-grad fast path and the autograd path agree, also with no taper (margin 0 or 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 37, 53, dtype=torch.float64, generator=g)
    k = bk.kernels.gaussian(1.0, dtype=torch.float64)
    y = bk.filter2d(x, k)
    with torch.no_grad():
        fast = deblur.wiener(y, k, 0.01, margin=margin)
    slow = deblur.wiener(y.clone().requires_grad_(True), k, 0.01, margin=margin)
    torch.testing.assert_close(slow.detach(), fast, rtol=0, atol=1e-12)


def test_learnable_kernels_get_gradients_at_zero_taps():
    """A kernel tap that is exactly 0 still has a gradient (finite differences are the reference), and
    the result does not depend on grad mode."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64, generator=g)
    k0 = torch.zeros(5, 5, dtype=torch.float64)
    k0[1:4, 1:4] = torch.rand(3, 3, dtype=torch.float64, generator=g)
    k0 /= k0.sum()
    for fn in (lambda img, k: deblur.wiener(img, k, 0.01, border="circular"),
               lambda img, k: deblur.richardson_lucy(img, k, 3, border="circular")):
        k = k0.clone().requires_grad_(True)
        out = fn(x, k)
        out.sum().backward()
        h = 1e-6  # one-sided (taps must stay >= 0), second order: (-f(2h) + 4 f(h) - 3 f(0)) / 2h
        f = []
        for step in (0.0, h, 2 * h):
            kk = k0.clone()
            kk[0, 0] += step
            with torch.no_grad():
                f.append(float(fn(x, kk.requires_grad_(True)).sum()))
        fd = (-f[2] + 4 * f[1] - 3 * f[0]) / (2 * h)
        assert float(k.grad[0, 0]) == pytest.approx(float(fd), rel=1e-4, abs=1e-6)
        assert float(k.grad[0, 0]) != 0.0


def test_deblurring_refuses_non_finite_images_and_parameters():
    x = torch.rand(1, 1, 16, 16)
    x[0, 0, 3, 3] = float("nan")
    k = bk.kernels.gaussian(1.0)
    with pytest.raises(ValueError, match="images must be finite; got 1 NaN"):
        deblur.wiener(x, k, 0.01)
    with pytest.raises(ValueError, match="images must be finite"):
        deblur.richardson_lucy(x, k, 2)
    ok = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="init must be"):
        deblur.richardson_lucy(ok, k, 2, init=float("inf"))
    with pytest.raises(ValueError, match="eps must be a finite number"):
        deblur.richardson_lucy(ok, k, 2, eps=float("inf"))
    with pytest.raises(ValueError, match="filter_epsilon must be a finite number"):
        deblur.richardson_lucy(ok, k, 2, filter_epsilon=float("inf"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.uint8])
def test_learnable_front_takes_the_dtypes_the_fixed_front_takes(dtype):
    x = torch.rand(2, 1, 32, 32)
    t = (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    out = bk.DeblurFront(sigma=2.0, learnable=True)(t)
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out.float()).all()
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype)
