"""blurkit.robustness on toy models with analytically known answers.

The main toy model reads one blur-sensitive feature: the centre value of a unit impulse (channel 0)
against a per-image threshold held in a constant channel 1 (blur leaves a constant unchanged). Under
a Gaussian blur of sigma (radius ceil(3 sigma)) the impulse's centre value is w0(sigma)^2 with
w0 = 1 / sum_k exp(-k^2 / (2 sigma^2)), so the flip sigma of each image is known: it is solved here
with scipy's brentq, independently of blurkit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from blurkit import robustness as R
from blurkit.robustness import _common


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these tests run many tiny ops: one thread avoids OpenMP oversubscription on shared CPUs
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


H = 33


def centre_value(sigma: float, truncate: float = 3.0, radius: int | None = None) -> float:
    """Centre of a blurred unit impulse: w0(sigma)^2 (numpy, independent of blurkit)."""
    if sigma == 0:
        return 1.0
    r = math.ceil(truncate * sigma - 1e-9) if radius is None else radius
    k = np.arange(-r, r + 1)
    return float(1.0 / np.exp(-k ** 2 / (2 * sigma ** 2)).sum()) ** 2


class Impulse(nn.Module):
    """Class 0 while the centre of channel 0 exceeds channel 1 (band: wrong inside (lo, hi))."""

    def __init__(self, band: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.band = band
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1] // 2
        v = x[:, 0, c, c] * self.w
        f = (v - x[:, 1, c, c]) * 100
        if self.band is not None:  # wrong while v lies in the band (a non-monotonic decision)
            lo, hi = self.band
            inside = torch.sigmoid((v - lo) * 1e4) * torch.sigmoid((hi - v) * 1e4)
            f = torch.where(inside > 0.5, -(f.abs() + 1), f)
        return torch.stack([f, -f], 1)


def impulse_batch(flip_sigmas, truncate: float = 3.0):
    B = len(flip_sigmas)
    x = torch.zeros(B, 2, H, H)
    x[:, 0, H // 2, H // 2] = 1.0
    for i, s in enumerate(flip_sigmas):
        x[i, 1] = centre_value(s, truncate)
    return x, torch.zeros(B, dtype=torch.long)


TARGETS = [0.37, 0.9, 1.3, 2.1, 2.9, 3.55]


# --------------------------------------------------------------------------------- curves
def test_accuracy_curve_matches_known_flips():
    x, y = impulse_batch(TARGETS)
    levels = [0, 0.5, 1, 2, 3, 4]
    cv = R.accuracy_curve(Impulse(), [(x[:3], y[:3]), (x[3:], y[3:])], levels, progress=False, n_bootstrap=200)
    want = [float(np.mean([s > lv for s in TARGETS])) for lv in levels]
    assert cv.top1 == pytest.approx(want)
    auc = np.trapezoid(want, levels) / (levels[-1] - levels[0])
    assert cv.auc == pytest.approx(auc)
    assert cv.topk is None  # 2 classes: top-5 is meaningless
    assert cv.n == len(TARGETS)
    for (lo, hi), a in zip(cv.top1_ci, cv.top1):
        assert lo <= a + 1e-12 and a <= hi + 1e-12
    assert cv.top1_ci[0] == (1.0, 1.0)
    d = json.loads(cv.to_json())
    assert d["top1"] == pytest.approx(want) and d["family"] == "gaussian"


class ChannelMeans(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_topk_and_several_models_blur_once(monkeypatch):
    # constant images: blur keeps them, so accuracy is the same at every level; true class at rank r
    B, K = 10, 10
    x = torch.zeros(B, K, 8, 8)
    y = torch.zeros(B, dtype=torch.long)
    for b in range(B):
        order = torch.randperm(K, generator=torch.Generator().manual_seed(b))
        x[b, order, :, :] = torch.linspace(1, 0, K)[:, None, None]  # order[0] best
        y[b] = order[b % K]  # rank b % K
    calls = []
    real = _common.apply_blur

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(_common, "apply_blur", counting)
    res = R.accuracy_curve({"a": ChannelMeans(), "b": ChannelMeans()}, [(x[:5], y[:5]), (x[5:], y[5:])],
                           [0, 1, 2], family="box", progress=False, n_bootstrap=0)
    assert set(res) == {"a", "b"}
    assert len(calls) == 2 * 2  # 2 batches x 2 blurred levels, shared by both models
    for cv in res.values():
        assert cv.top1 == pytest.approx([0.1] * 3)
        assert cv.topk == pytest.approx([0.5] * 3)


@pytest.mark.parametrize("family", ["motion", "defocus"])
def test_other_families_reduce_the_impulse(family):
    x, y = impulse_batch([1.0])
    cv = R.accuracy_curve(Impulse(), [(x, y)], [0, 0.5, 8], family=family, progress=False, n_bootstrap=0)
    assert cv.top1[0] == 1.0 and cv.top1[-1] == 0.0


# ------------------------------------------------------------------------------- critical
@pytest.mark.parametrize("tol", [0.05, 0.005])
def test_critical_sigma_bisection_tolerance(tol):
    # the flip sigma of image i solves centre_value(s) = threshold_i; solved independently with brentq
    x, y = impulse_batch(TARGETS)
    truth = [brentq(lambda s, t=float(x[i, 1, 0, 0]): centre_value(s) - t, 0.05, 6) for i in range(len(TARGETS))]
    res = R.critical_sigma(Impulse(), [(x, y)], "gaussian", max_sigma=4, grid_step=0.5, tol=tol, progress=False)
    s = res.sigma.numpy()
    assert res.clean_correct.all()
    for got, want in zip(s, truth):
        assert want - 1e-4 <= got <= want + tol + 1e-4
    assert res.median == pytest.approx(float(np.median(s)))  # the mean of the two middle values
    assert (res.flip_pred == 1).all()
    lv, share = res.survival([0, 1, 2, 3, 4])
    assert share == pytest.approx([np.mean(np.array(truth) > v) for v in lv])


def test_critical_sigma_censoring_and_misclassified():
    x, y = impulse_batch([1.0, 5.0])
    y = torch.tensor([0, 1])  # second image is wrong when clean
    x2, y2 = impulse_batch([6.0])
    res = R.critical_sigma(Impulse(), [(x, y), (x2, y2)], max_sigma=3, tol=0.01, progress=False)
    assert math.isnan(float(res.sigma[1])) and not bool(res.clean_correct[1])
    assert math.isinf(float(res.sigma[2]))  # never flips within max_sigma
    assert res.n_searched == 2 and int(res.flipped.sum()) == 1
    d = json.loads(res.to_json())
    assert d["sigma"][2] == "inf" and d["sigma"][1] is None


def test_critical_sigma_non_monotonic_first_flip_on_grid():
    # wrong while the centre value lies in a band -> the decision flips at s1 and recovers at s2
    s1, s2 = 0.9, 1.7
    band = (centre_value(s2), centre_value(s1))
    x, y = impulse_batch([3.3])  # and it flips for good at 3.3
    res = R.critical_sigma(Impulse(band), [(x, y)], max_sigma=4, grid_step=0.5, tol=0.01, progress=False)
    assert s1 - 1e-3 <= float(res.sigma[0]) <= s1 + 0.01 + 1e-3  # first flip, bracketed by grid 0.5 .. 1.0
    # a band narrower than the grid spacing that falls between grid points is skipped: next flip found
    s1, s2 = 1.1, 1.4
    band = (centre_value(s2), centre_value(s1))
    res = R.critical_sigma(Impulse(band), [(x, y)], max_sigma=4, grid_step=0.5, tol=0.01, progress=False)
    assert 3.3 - 1e-3 <= float(res.sigma[0]) <= 3.31 + 1e-3


def test_critical_sigma_quality_is_psnr_ssim_of_the_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 40, 40, generator=g)
    x[:, :, 17:24, 17:24] = torch.tensor([0.9, 0.8, 0.95])[:, None, None, None]

    class MeanCentre(nn.Module):  # flips once the centre 3x3 mean moves away from its clean value
        def forward(self, z):
            d = (z[:, :, 19:22, 19:22].mean(dim=(1, 2, 3)) - 0.9).abs()
            f = 0.2 - d
            return torch.stack([f, -f], 1)

    y = torch.zeros(3, dtype=torch.long)
    res = R.critical_sigma(MeanCentre(), [(x, y)], max_sigma=6, tol=0.01, progress=False)
    assert res.flipped.all()
    import blurkit as bk
    for i in range(3):
        blurred = bk.gaussian_blur(x[i:i + 1], float(res.sigma[i]))
        a, b = x[i].permute(1, 2, 0).double().numpy(), blurred[0].permute(1, 2, 0).double().numpy()
        assert float(res.psnr[i]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), rel=1e-4)
        ssim = structural_similarity(a, b, data_range=1, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
        assert float(res.ssim[i]) == pytest.approx(ssim, abs=1e-4)


def test_box_family_integer_radii():
    x, y = impulse_batch([0.9])
    # box of radius r: centre value 1 / (2r+1)^2; flips at the first r with 1/(2r+1)^2 < threshold
    t = float(x[0, 1, 0, 0])
    want = next(r for r in range(1, 10) if 1 / (2 * r + 1) ** 2 < t)
    res = R.critical_sigma(Impulse(), [(x, y)], "box", max_sigma=6, progress=False)
    assert float(res.sigma[0]) == want


# ------------------------------------------------------------------------- corruption errors
def test_corruption_errors_arithmetic():
    errs = {"defocus_blur": [0.3, 0.4, 0.5, 0.6, 0.7], "motion_blur": [0.2, 0.2, 0.3, 0.3, 0.5], "clean": 0.1}
    r = R.corruption_errors(errs)
    assert r.ce["defocus_blur"] == pytest.approx(0.5 / 0.819880)
    assert r.ce["motion_blur"] == pytest.approx(0.3 / 0.785948)
    assert r.mce == pytest.approx((0.5 / 0.819880 + 0.3 / 0.785948) / 2)
    a0 = R.ALEXNET_CLEAN_ERROR
    assert r.relative_ce["defocus_blur"] == pytest.approx((0.5 - 0.1) / (0.819880 - a0))
    assert r.relative_mce == pytest.approx(((0.4 / (0.819880 - a0)) + (0.2 / (0.785948 - a0))) / 2)
    # against a baseline model: sums over severities
    base = {"defocus_blur": [0.5, 0.6, 0.7, 0.8, 0.9], "motion_blur": [0.4] * 5, "clean": 0.2}
    r2 = R.corruption_errors(errs, baseline=base)
    assert r2.ce["defocus_blur"] == pytest.approx(2.5 / 3.5)
    assert r2.relative_ce["motion_blur"] == pytest.approx((1.5 - 5 * 0.1) / (2.0 - 5 * 0.2))
    assert json.loads(r2.to_json())["baseline"] == "custom"
    r4 = R.corruption_errors({"zoom_blur": 0.4, "clean": 0.1}, baseline={"zoom_blur": 0.3, "clean": 0.3})
    assert math.isnan(r4.relative_ce["zoom_blur"]) and math.isnan(r4.relative_mce)
    r3 = R.corruption_errors({"zoom_blur": 0.4})
    assert r3.relative_ce is None and r3.ce["zoom_blur"] == pytest.approx(0.4 / 0.798360)


def test_corruption_errors_bad_input():
    with pytest.raises(ValueError, match="percent"):
        R.corruption_errors({"defocus_blur": [30, 40]})
    with pytest.raises(ValueError, match="baseline has no errors"):
        R.corruption_errors({"fancy_blur": 0.3})
    with pytest.raises(ValueError, match="baseline"):
        R.corruption_errors({"defocus_blur": 0.3}, baseline="resnet")
    with pytest.raises(TypeError, match="errors"):
        R.corruption_errors([])


def test_evaluate_corruptions_feeds_corruption_errors():
    x, y = impulse_batch([0.2, 0.5, 5.0])  # away from the corruption sigmas (no ties)
    x = x.clamp(0, 1)
    out = R.evaluate_corruptions(Impulse(), [(x, y)], ["gaussian_blur", "gaussian_noise"], [1, 2],
                                 dataset="cifar", progress=False)
    assert out["clean"] == 0.0
    # cifar gaussian_blur sigma .4, .6 (skimage: nearest border, truncate 4, radius int(4 s + .5))
    cv = [centre_value(s, radius=int(4 * s + 0.5)) for s in (0.4, 0.6)]
    thr = x[:, 1, 0, 0].tolist()
    assert out["gaussian_blur"] == pytest.approx([np.mean([c_ < t for t in thr]) for c_ in cv], abs=1e-6)
    assert out["gaussian_blur"] == pytest.approx([1 / 3, 2 / 3])
    with pytest.warns(UserWarning, match="severities 1-5"):  # 2 severities against AlexNet's 1-5 mean
        r = R.corruption_errors(out)
    assert set(r.ce) == {"gaussian_blur", "gaussian_noise"}


# ----------------------------------------------------------------------------- worst case
@pytest.mark.parametrize("family", ["gaussian", "anisotropic", "free"])
def test_worst_case_finds_flips(family):
    x, y = impulse_batch([0.5, 0.9, 1.4])
    model = Impulse()
    r = R.worst_case_blur(model, x, y, family, steps=50, lr=0.15)
    assert r.flipped.all()
    xb = r.apply(x)
    assert (model(xb).argmax(1) != y).all()
    assert model.w.grad is None  # the model's parameters are not touched
    from blurkit.robustness import quality
    assert torch.allclose(quality.ssim(x, xb), r.ssim, atol=1e-4)
    if family == "gaussian":  # the cheapest isotropic flip is just above the analytic sigma
        for s, want in zip(r.params["sigma"].tolist(), [0.5, 0.9, 1.4]):
            assert want - 1e-3 <= s <= want * 1.15


def test_worst_case_started_at_the_critical_sigma_is_never_worse():
    x, y = impulse_batch([0.6, 1.2])
    model = Impulse()
    crit = R.critical_sigma(model, [(x, y)], max_sigma=3, tol=0.01, progress=False)
    for family in ("anisotropic", "free"):
        r = R.worst_case_blur(model, x, y, family, steps=10, init_sigma=crit.sigma.float())
        assert r.flipped.all()
        assert (r.ssim >= crit.ssim - 1e-4).all()


def test_worst_case_motion_and_budget():
    x, y = impulse_batch([0.45])
    r = R.worst_case_blur(Impulse(), x, y, "motion", steps=60, lr=0.2)
    assert r.flipped.all() and float(r.params["length"][0]) > 0
    strict = R.worst_case_blur(Impulse(), x, y, "gaussian", steps=40, budget=0.9999)
    assert not strict.flipped.any() and torch.isnan(strict.ssim).all()


def test_worst_case_bad_input():
    x, y = impulse_batch([0.5])
    with pytest.raises(ValueError, match="family"):
        R.worst_case_blur(Impulse(), x, y, "zoom")
    with pytest.raises(ValueError, match="metric"):
        R.worst_case_blur(Impulse(), x, y, metric="lpips")
    with pytest.raises(ValueError, match="kernel_size"):
        R.worst_case_blur(Impulse(), x, y, "free", kernel_size=4)
    with pytest.raises(ValueError, match="labels"):
        R.worst_case_blur(Impulse(), x, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------- human
def test_imagenet_to_16_and_shape_bias_arithmetic():
    idx = R.IMAGENET_16_CLASS_INDICES
    assert list(idx) == list(R.CATEGORIES_16) == sorted(R.CATEGORIES_16)
    flat = [i for v in idx.values() for i in v]
    assert len(flat) == len(set(flat)) and max(flat) < 1000
    # stimulus i: probability mass on one ImageNet class of a chosen category
    cats = R.CATEGORIES_16
    decided = ["cat", "dog", "dog", "bird", "knife", "truck", "oven", "car"]
    shape = ["cat", "cat", "dog", "bird", "knife", "car", "clock", "car"]
    texture = ["dog", "dog", "cat", "bird", "bear", "truck", "chair", "boat"]
    p = torch.full((len(decided), 1000), 1e-6)
    for i, d in enumerate(decided):
        p[i, idx[d][-1]] = 1.0
    p = p / p.sum(1, keepdim=True)
    p16 = R.imagenet_to_16(p)
    assert p16.shape == (8, 16)
    cat_i = cats.index("cat")
    assert float(p16[0, cat_i]) == pytest.approx(float(p[0, list(idx["cat"])].mean()))
    s = [cats.index(v) for v in shape]
    t = [cats.index(v) for v in texture]
    r = R.shape_bias(p, s, t)
    # kept (shape != texture): 0,1,2,4,5,6,7 -> shape hits: 0 (cat), 2 (dog), 4 (knife), 7 (car) = 4;
    # texture hits: 1 (dog), 5 (truck) = 2; 6 (oven) matches neither cue
    assert r["n"] == 7
    assert r["shape_bias"] == pytest.approx(4 / 6)
    assert r["shape_fraction"] == pytest.approx(4 / 7) and r["texture_fraction"] == pytest.approx(2 / 7)
    assert r["per_category"]["cat"] == pytest.approx(1 / 2)
    logits = torch.log(p)
    assert R.shape_bias(logits, s, t, from_logits=True)["shape_bias"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="entries"):
        R.shape_bias(p, s[:3], t)


def test_lowpass_protocol_grey_and_constant_border():
    # a 16-class "model" that is right while the corner pixel stays at the image's grey value:
    # with the 0.4423 constant border only an image of exactly that grey keeps its corner
    class Corner(nn.Module):
        def forward(self, z):
            assert z.shape[1] == 3 and torch.equal(z[:, 0], z[:, 2])  # greyscale repeated
            ok = (z[:, 0, 0, 0] - 0.4423).abs() < 1e-4
            logits = torch.zeros(z.shape[0], 16)
            logits[:, 0] = torch.where(ok, 1.0, -1.0)
            return logits

    x = torch.empty(2, 3, 24, 24)
    x[0] = 0.4423
    x[1] = torch.tensor([0.9, 0.5, 0.2])[:, None, None]  # grey = .2125*.9+.7154*.5+.0721*.2 = .5632
    y = torch.zeros(2, dtype=torch.long)
    cv = R.lowpass_evaluation(Corner(), [(x, y)], [0, 3, 10], sixteen_class=False, progress=False,
                              n_bootstrap=0)
    assert cv.top1 == pytest.approx([0.5, 0.5, 0.5])
    ref = R.GEIRHOS_2018_LOWPASS
    assert len(ref["sigmas"]) == len(ref["human"]) == len(ref["resnet50"])


def test_sixteen_class_head():
    class Fixed(nn.Module):
        def forward(self, z):
            out = torch.full((z.shape[0], 1000), -10.0)
            out[:, 404] = 5.0  # airplane
            return out

    head = R.SixteenClassHead(Fixed())
    assert int(head(torch.zeros(2, 3, 4, 4)).argmax(1)[0]) == R.CATEGORIES_16.index("airplane")


# -------------------------------------------------------------------------------- bad input
def test_bad_inputs():
    x, y = impulse_batch([1.0])
    with pytest.raises(ValueError, match="family"):
        R.accuracy_curve(Impulse(), [(x, y)], [0, 1], family="zoom")
    with pytest.raises(ValueError, match="increasing"):
        R.accuracy_curve(Impulse(), [(x, y)], [1, 0])
    with pytest.raises(TypeError, match="model"):
        R.accuracy_curve("resnet", [(x, y)], [0, 1])
    with pytest.raises(TypeError, match="data"):
        R.accuracy_curve(Impulse(), 3, [0, 1])
    with pytest.raises(ValueError, match="labels"):
        R.accuracy_curve(Impulse(), [(x, torch.zeros(2, dtype=torch.long))], [0, 1], progress=False)
    with pytest.raises(ValueError, match="logits"):
        R.accuracy_curve(lambda z: z.mean(), [(x, y)], [0, 1], progress=False)
    with pytest.raises(ValueError, match="tol"):
        R.critical_sigma(Impulse(), [(x, y)], tol=0)
    with pytest.raises(TypeError, match="one model"):
        R.critical_sigma([Impulse(), Impulse()], [(x, y)])
    with pytest.raises(ValueError, match="no batches"):
        R.accuracy_curve(Impulse(), [], [0, 1], progress=False)


def test_amp_device_and_outputs():
    x, y = impulse_batch([0.9, 2.1])
    cv = R.accuracy_curve(Impulse(), [(x, y)], [0, 1, 3], amp=True, device="cpu", progress=False, n_bootstrap=0)
    assert cv.top1 == pytest.approx([1.0, 0.5, 0.0])  # bfloat16 autocast on CPU keeps this decision
    d = cv.to_dict()
    assert set(d) >= {"levels", "top1", "auc", "top1_ci"}
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pandas"):
            cv.to_dataframe()
    else:
        assert len(cv.to_dataframe()) == 3
    u8 = (x * 255).round().to(torch.uint8)  # uint8 batches are scaled to [0, 1]
    cv8 = R.accuracy_curve(Impulse(), [(u8, y)], [0], progress=False, n_bootstrap=0)
    assert cv8.top1 == [1.0]


# ------------------------------------------------------------------- review regressions
class Recorder(nn.Module):
    """A 16-class model that records its inputs (always predicts class 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, z):
        self.seen.append(z.detach().clone())
        out = torch.zeros(z.shape[0], 16)
        out[:, 0] = 1.0
        return out


def test_lowpass_matches_the_experiment_code_for_float_and_uint8():
    """The experiment's low_pass_filter: skimage rgb2gray, then scipy gaussian_filter with a constant
    0.4423 border (truncate 4); uint8 stimuli are scaled to [0, 1] first; one (images, labels) tuple works."""
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2gray

    g = torch.Generator().manual_seed(0)
    u8 = (torch.rand(2, 3, 40, 40, generator=g) * 255).round().to(torch.uint8)
    y = torch.zeros(2, dtype=torch.long)
    for images in (u8, u8.float() / 255):
        rec = Recorder()
        cv = R.lowpass_evaluation(rec, (images, y), [0, 3], sixteen_class=False, progress=False, n_bootstrap=0)
        assert cv.n == 2 and cv.top1 == [1.0, 1.0]
        for level, seen in zip((0, 3), rec.seen):
            for i in range(2):
                grey = rgb2gray(u8[i].permute(1, 2, 0).numpy().astype(np.float64) / 255)
                want = grey if level == 0 else gaussian_filter(grey, level, mode="constant", cval=0.4423)
                assert np.abs(seen[i, 0].double().numpy() - want).max() < 1e-5
                assert torch.equal(seen[i, 0], seen[i, 2])


def test_corruption_errors_need_corruptions_and_matching_severities():
    with pytest.raises(ValueError, match="no corruption entries"):
        R.corruption_errors({"clean": 0.1})
    with pytest.raises(ValueError, match="same severities"):
        R.corruption_errors({"defocus_blur": [0.3, 0.4]}, baseline={"defocus_blur": [0.1, 0.2, 0.3, 0.4, 0.5]})
    with pytest.raises(ValueError, match="clean_error"):
        R.corruption_errors({"defocus_blur": 0.3}, clean_error="x")
    x, y = impulse_batch([0.5])
    for bad in ([1, 1], [2.5], [0], [True]):
        with pytest.raises(ValueError, match="severities"):
            R.evaluate_corruptions(Impulse(), [(x, y)], ["gaussian_blur"], bad, progress=False)
    with pytest.raises(TypeError, match="severities"):
        R.evaluate_corruptions(Impulse(), [(x, y)], ["gaussian_blur"], 3, progress=False)
    with pytest.raises(ValueError, match="at least one corruption"):
        R.evaluate_corruptions(Impulse(), [(x, y)], [], progress=False)
    with pytest.raises(ValueError, match="dataset"):
        R.evaluate_corruptions(Impulse(), [(x, y)], ["gaussian_blur"], dataset="mnist", progress=False)


def test_critical_sigma_scan_stays_within_max_sigma_and_median_is_numpy_median():
    x, y = impulse_batch([0.2, 0.45, 0.9])
    res = R.critical_sigma(Impulse(), [(x, y)], max_sigma=0.3, grid_step=0.5, tol=0.01, progress=False)
    assert res.grid == [0.3]
    s = res.sigma.tolist()
    assert 0.2 - 1e-4 <= s[0] <= 0.3 and math.isinf(s[1]) and math.isinf(s[2])
    assert res.median == math.inf  # two of three never flip within 0.3
    res = R.critical_sigma(Impulse(), [(x[:2], y[:2])], max_sigma=2, tol=0.01, progress=False)
    assert res.median == pytest.approx(float(np.median(res.sigma.numpy())))
    assert R.critical_sigma(Impulse(), [(x, y)], "box", max_sigma=3, progress=False).tol == 1.0


def test_float64_models_take_float32_data():
    x, y = impulse_batch([0.9, 2.1])
    m = Impulse().double()
    assert R.accuracy_curve(m, [(x, y)], [0, 1.5, 3], progress=False, n_bootstrap=0).top1 == \
        pytest.approx([1.0, 0.5, 0.0])
    res = R.critical_sigma(m, [(x, y)], max_sigma=3, tol=0.01, progress=False)
    assert res.flipped.all()
    r = R.worst_case_blur(m, x, y, "gaussian", steps=5, init_sigma=res.sigma.float())
    assert r.flipped.all() and r.ssim.dtype == torch.float64


def test_worst_case_first_candidate_is_the_isotropic_flip():
    """Even one step from the critical sigma never reports a costlier flip (the exact isotropic blur is
    evaluated first in the family's own parameters)."""
    x, y = impulse_batch([0.45, 0.8, 1.3, 1.9])
    model = Impulse()
    crit = R.critical_sigma(model, [(x, y)], max_sigma=3, tol=0.001, progress=False)
    for family in ("gaussian", "anisotropic", "free"):
        r = R.worst_case_blur(model, x, y, family, steps=1, lr=1.0, init_sigma=crit.sigma.float())
        assert r.flipped.all(), family
        assert (r.ssim >= crit.ssim - 1e-4).all(), family  # up to float rounding of the 2-D kernels
        assert not model(r.apply(x)).argmax(1).eq(y).any()  # the reported parameters do flip


def test_labels_classes_and_paired_bootstrap():
    x, y = impulse_batch([0.9, 2.1, 0.5, 3.0])
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\).*got 7"):
        R.accuracy_curve(Impulse(), [(x, torch.tensor([0, 7, 0, 0]))], [0, 1], progress=False)
    with pytest.raises(ValueError, match="class indices"):
        R.critical_sigma(Impulse(), [(x, torch.tensor([0, -1, 0, 0]))], progress=False)

    class Wide(Impulse):  # the same decision with 10 outputs
        def forward(self, z):
            out = super().forward(z)
            return torch.cat([out, torch.full((z.shape[0], 8), -1e3)], 1)

    both = R.accuracy_curve({"two": Impulse(), "ten": Wide()}, [(x, y)], [0, 1], k=3, progress=False,
                            n_bootstrap=200)
    assert both["two"].topk is None and both["ten"].topk is not None  # k=3 >= 2 classes: no top-3
    alone = R.accuracy_curve(Impulse(), [(x, y)], [0, 1], progress=False, n_bootstrap=200)
    assert alone.top1_ci == both["two"].top1_ci  # paired: a model's interval ignores the others


def test_clear_errors_for_options():
    x, y = impulse_batch([1.0])
    d = [(x, y)]
    with pytest.raises(ValueError, match="blur_kwargs: gaussian_blur takes no argument 'bogus'"):
        R.accuracy_curve(Impulse(), d, [0, 1], blur_kwargs={"bogus": 1}, progress=False)
    with pytest.raises(ValueError, match="device"):
        R.accuracy_curve(Impulse(), d, [0, 1], device="gpu0", progress=False)
    with pytest.raises(TypeError, match="sigmas"):
        R.accuracy_curve(Impulse(), d, "012", progress=False)
    with pytest.raises(ValueError, match="integer radii"):
        R.accuracy_curve(Impulse(), d, [0, 0.4], family="box", progress=False)
    with pytest.raises(ValueError, match="ci"):
        R.accuracy_curve(Impulse(), d, [0, 1], ci="x", progress=False)
    with pytest.raises(ValueError, match="max_batches"):
        R.accuracy_curve(Impulse(), d, [0, 1], max_batches="2", progress=False)
    with pytest.raises(TypeError, match="seed"):
        R.accuracy_curve(Impulse(), d, [0, 1], seed="a", progress=False)
    with pytest.raises(TypeError, match="transform"):
        R.accuracy_curve(Impulse(), d, [0, 1], transform=5, progress=False)
    with pytest.raises(ValueError, match="data_range"):
        R.critical_sigma(Impulse(), d, data_range=0, progress=False)
    for bad in (float("nan"), 2.0, "high"):
        with pytest.raises(ValueError, match="budget"):
            R.worst_case_blur(Impulse(), x, y, budget=bad)
    with pytest.raises(ValueError, match="margin"):
        R.worst_case_blur(Impulse(), x, y, margin="a")
    with pytest.raises(ValueError, match="channels"):
        R.lowpass_evaluation(Recorder(), d, [0], channels=0, progress=False)
    p = torch.softmax(torch.randn(3, 1000), 1)
    with pytest.raises(ValueError, match="from_logits"):
        R.shape_bias(torch.log(p), [0, 1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="shape_labels"):
        R.shape_bias(p, [0.7, 1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"mapping\['a'\]"):
        R.shape_bias(p, [0, 0, 0], [0, 0, 0], mapping={"a": [-1], "b": [2]})
