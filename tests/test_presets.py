"""Tests for blurkit.presets: the published regimes, schedules and the grayscale pipeline.

Independent references: the regimes table of Jang & Tong (2024) and the Yoshihara et al. (2023)
code (numbers typed in here), scipy.stats (chi-square, Kolmogorov-Smirnov), scipy.ndimage
gaussian_filter, Pillow's own convert("L"), and a numpy reimplementation of the pipeline.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats

import blurkit as bk
from blurkit import presets
from blurkit.augment import RandomGaussianBlur
from blurkit.presets import BlurRegime, BlurSchedule, GrayscaleBlurPipeline, ScheduledGaussianBlur

N_DRAWS = 100_000

# Jang & Tong 2024, regimes table (sigma in pixels at 224 px)
PAPER = {
    "standard": ((0,), (1,)),
    "weak": ((0, 1, 2, 3, 4, 5), (0.6937, 0.2129, 0.0653, 0.0200, 0.0062, 0.0019)),
    "strong": ((0, 1, 2, 4, 8), (0.2, 0.2, 0.2, 0.2, 0.2)),
}


def test_registry_names_and_get():
    assert presets.names() == ("standard", "weak", "strong", "mix", "random-mix", "multi-steps")
    assert isinstance(presets.get("strong"), BlurRegime)
    assert isinstance(presets.get("multi-steps"), BlurSchedule)
    assert presets.get(presets.WEAK) is presets.WEAK
    with pytest.raises(ValueError, match="unknown blur regime 'medium'.*standard, weak, strong"):
        presets.get("medium")
    with pytest.raises(ValueError, match="already registered"):
        presets.register(BlurRegime("strong", sigmas=(1.0,)))


def test_register_custom_regime():
    r = BlurRegime("test-only", sigmas=(0.0, 3.0), weights=(3.0, 1.0), truncate=3.0)
    presets.register(r)
    try:
        assert "test-only" in presets.names()
        assert presets.transform("test-only").sigma_dist.probabilities == (0.75, 0.25)
    finally:
        presets._REGISTRY.pop("test-only")
    with pytest.raises(ValueError, match="exactly one of"):
        BlurRegime("bad")
    with pytest.raises(ValueError, match="weights"):
        BlurRegime("bad", sigmas=(0.0, 1.0), weights=(1.0,))
    with pytest.raises(ValueError, match="every"):
        BlurSchedule("bad", sigmas=(1.0,), every=0)


@pytest.mark.parametrize("name", ["standard", "weak", "strong"])
def test_jang_tong_regimes_exact(name):
    r = presets.get(name)
    sigmas, weights = PAPER[name]
    assert r.sigmas == tuple(float(s) for s in sigmas) and r.weights == tuple(weights)
    assert r.truncate == 2.0 and r.p == 1.0 and r.border == "reflect"
    t = presets.transform(name)
    assert isinstance(t, RandomGaussianBlur) and t.truncate == 2.0


@pytest.mark.parametrize("name", ["weak", "strong", "mix"])
def test_chi_square_100k_sigmas(name):
    r = presets.get(name)
    t = presets.transform(name, seed=20240301)
    s = t.sample_params(N_DRAWS, 224, 224)["sigma"].numpy()
    values, probs = r.sigma_distribution()
    assert set(np.unique(s).tolist()) <= set(values)
    observed = np.array([(s == v).sum() for v in values])
    assert observed.sum() == N_DRAWS
    res = stats.chisquare(observed, np.asarray(probs) * N_DRAWS)
    assert res.pvalue > 1e-3, (name, observed, res)


def test_standard_never_blurs():
    s = presets.transform("standard", seed=0).sample_params(N_DRAWS, 224, 224)["sigma"]
    assert bool((s == 0).all())
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(presets.transform("standard")(x), x)


def test_paper_summary_numbers():
    # "Weak blurs 30.6% of images (mean sigma 0.44); strong blurs 80% (mean sigma 3.0)"
    assert presets.WEAK.blur_fraction == pytest.approx(0.306, abs=5e-4)
    assert presets.WEAK.mean_sigma == pytest.approx(0.44, abs=5e-3)
    assert presets.STRONG.blur_fraction == pytest.approx(0.8)
    assert presets.STRONG.mean_sigma == pytest.approx(3.0)
    # weights follow p ~ exp(-1.18 sigma)
    w = np.array(PAPER["weak"][1])
    expo = np.exp(-1.18 * np.arange(6))
    np.testing.assert_allclose(w, expo / expo.sum(), atol=6e-4)


@pytest.mark.parametrize("name", ["weak", "strong"])
def test_paper_kernel_sizes(name):
    r = presets.get(name)
    expected = {float(s): 2 * math.ceil(2 * s) + 1 for s in PAPER[name][0]}
    assert r.kernel_sizes == expected
    # the engine's kernels for these sigmas have exactly that support, normalised
    sig = torch.tensor([s for s in expected if s > 0])
    k = bk.kernels.gaussian1d(sig, truncate=r.truncate)
    for row, s in zip(k, sig.tolist()):
        nz = torch.nonzero(row).flatten()
        assert int(nz[-1] - nz[0]) + 1 == expected[s]
        assert float(row.sum()) == pytest.approx(1.0, abs=1e-6)


def test_strong_output_matches_scipy():
    x = torch.rand(10, 1, 48, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = presets.transform("strong", seed=4)
    y = t(x)
    for i, s in enumerate(t.last_params["sigma"].tolist()):
        ref = ndimage.gaussian_filter(x[i, 0].numpy(), s, mode="mirror", truncate=2.0) if s else x[i, 0].numpy()
        np.testing.assert_allclose(y[i, 0].numpy(), ref, atol=1e-10)


def test_reference_size_scales_preset():
    t = presets.transform("strong", reference_size=224, seed=0)
    s = t.sample_params(2000, 28, 28)["sigma"]
    assert set(s.unique().tolist()) == {0.0, 0.125, 0.25, 0.5, 1.0}


def test_mix_and_random_mix():
    mix = presets.transform("mix", seed=0)
    p = mix.sample_params(64, 224, 224)
    assert int(p["applied"].sum()) == 32
    assert set(p["sigma"][p["applied"]].tolist()) == {4.0} and mix.truncate == 4.0
    assert set(presets.transform("mix", sigma=2.0).sample_params(8, 8, 8)["sigma"].tolist()) <= {0.0, 2.0}
    rm = presets.transform("random-mix", seed=1)
    sig = []
    for _ in range(50):
        q = rm.sample_params(64, 224, 224)
        assert int(q["applied"].sum()) == 32
        sig.append(q["sigma"][q["applied"]])
        assert bool((q["sigma"][~q["applied"]] == 0).all())
    sig = torch.cat(sig).numpy()
    assert stats.kstest(sig, stats.uniform(loc=0, scale=5).cdf).pvalue > 1e-3
    assert presets.RANDOM_MIX.mean_sigma == pytest.approx(1.25)


def test_multi_steps_schedule():
    sched = presets.get("multi-steps")
    assert [sched.sigma_for_epoch(e) for e in (0, 9, 10, 19, 20, 30, 39, 40, 69)] == \
        [4, 4, 3, 3, 2, 1, 1, 0, 0]
    aug = presets.transform("multi-steps", seed=0)
    assert isinstance(aug, ScheduledGaussianBlur) and aug.epoch == 0
    x = torch.rand(2, 1, 32, 32)
    aug(x)
    assert aug.last_params["sigma"].tolist() == [4.0, 4.0]
    aug.set_epoch(25)
    aug(x)
    assert aug.last_params["sigma"].tolist() == [2.0, 2.0] and "epoch=25" in repr(aug)
    aug.set_epoch(45)
    assert torch.equal(aug(x), x)
    assert presets.transform("multi-steps", epoch=12).sigma_for_epoch(12) == 3.0
    with pytest.raises(ValueError, match="epoch"):
        aug.set_epoch(-1)
    with pytest.raises(ValueError, match="set by the schedule"):
        ScheduledGaussianBlur(sched, sigma=2.0)


# ----------------------------------------------------------------------------- grayscale pipeline
def _numpy_pipeline(x: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """Independent reimplementation: BT.601 grey, scipy Gaussian (truncate 2, mirror), normalise, x3."""
    grey = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    out = np.empty_like(grey)
    for i, s in enumerate(sigmas):
        out[i] = ndimage.gaussian_filter(grey[i], s, mode="mirror", truncate=2.0) if s > 0 else grey[i]
    out = (out - 0.449) / 0.226
    return np.repeat(out[:, None], 3, axis=1)


def test_grayscale_pipeline_matches_numpy():
    x = torch.rand(8, 3, 40, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    pipe = GrayscaleBlurPipeline("strong", seed=0)
    y = pipe(x)
    assert y.shape == (8, 3, 40, 36) and y.dtype == torch.float64
    ref = _numpy_pipeline(x.numpy(), pipe.last_params["sigma"].tolist())
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-9)


def test_grayscale_pil_mode_is_pillow():
    rgb = (torch.rand(4, 3, 17, 23, generator=torch.Generator().manual_seed(3)) * 255).round().to(torch.uint8)
    g = presets.to_grayscale(rgb, "pil")
    for i in range(4):
        ref = np.asarray(Image.fromarray(rgb[i].permute(1, 2, 0).numpy(), "RGB").convert("L"), np.float32) / 255
        np.testing.assert_array_equal(g[i, 0].numpy(), ref)
    # BT.601 float differs from Pillow's fixed point by at most one grey level
    assert float((presets.to_grayscale(rgb, "bt601") - g).abs().max()) <= 1 / 255 + 1e-6
    # the pipeline on uint8 input in "pil" mode, no blur: Pillow grey, normalised
    pipe = GrayscaleBlurPipeline("standard", luma="pil")
    y = pipe(rgb)
    ref0 = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy(), "RGB").convert("L"), np.float64) / 255
    np.testing.assert_allclose(y[0, 2].numpy(), (ref0 - 0.449) / 0.226, atol=1e-6)


def test_grayscale_pipeline_options():
    x = torch.rand(3, 32, 32)
    pipe = GrayscaleBlurPipeline("weak", seed=0, channels=1, return_params=True, reference_size=224)
    y, params = pipe(x)
    assert y.shape == (1, 32, 32) and params["sigma"].shape == (1,)
    assert GrayscaleBlurPipeline(None)(x).shape == (3, 32, 32)
    grey_in = torch.rand(2, 1, 16, 16)
    out = GrayscaleBlurPipeline("standard")(grey_in)
    torch.testing.assert_close(out[:, 1:2], (grey_in - 0.449) / 0.226)
    custom = GrayscaleBlurPipeline(RandomGaussianBlur(1.0, truncate=2.0))
    assert custom(torch.rand(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    sched = GrayscaleBlurPipeline("multi-steps")
    sched.set_epoch(35)
    sched(x)
    assert sched.last_params["sigma"].tolist() == [1.0]
    r = repr(GrayscaleBlurPipeline("strong", seed=1))
    assert "regime='strong'" in r and "mean=0.449" in r and "truncate=2" in r
    seq = torch.nn.Sequential(GrayscaleBlurPipeline("strong", seed=0), torch.nn.Conv2d(3, 4, 3))
    assert seq(torch.rand(2, 3, 20, 20)).shape == (2, 4, 18, 18)


def test_grayscale_pipeline_validation():
    with pytest.raises(ValueError, match="luma"):
        GrayscaleBlurPipeline("strong", luma="rec709")
    with pytest.raises(ValueError, match="std"):
        GrayscaleBlurPipeline("strong", std=0)
    with pytest.raises(ValueError, match="channels"):
        GrayscaleBlurPipeline("strong", channels=2)
    with pytest.raises(ValueError, match="unknown blur regime"):
        GrayscaleBlurPipeline("blurry")
    with pytest.raises(ValueError, match="only apply to a named regime"):
        GrayscaleBlurPipeline(RandomGaussianBlur(), seed=1)
    with pytest.raises(ValueError, match="1 .grey. or 3 .RGB. channels"):
        GrayscaleBlurPipeline("strong")(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="p must be"):
        GrayscaleBlurPipeline("strong", p=2)


def test_strong_matches_the_papers_kornia_call():
    """Jang & Tong blurred each image with kornia gaussian_blur2d, kernel 2*ceil(2*sigma)+1, reflect."""
    kornia = pytest.importorskip("kornia")
    x = torch.rand(10, 1, 36, 36, generator=torch.Generator().manual_seed(5))
    t = presets.transform("strong", seed=2)
    y = t(x)
    for i, s in enumerate(t.last_params["sigma"].tolist()):
        if s == 0:
            assert torch.equal(y[i], x[i])
            continue
        k = 2 * math.ceil(2.0 * s) + 1
        ref = kornia.filters.gaussian_blur2d(x[i:i + 1], (k, k), (s, s))[0]
        torch.testing.assert_close(y[i], ref, rtol=0, atol=2e-6)
