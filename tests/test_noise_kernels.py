"""Tests of blurkit._noise: the compiled noise kernels (and their torch fallbacks) against scipy's
distributions, the reference's uint8 arithmetic in numpy, and reproducibility properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from blurkit import _noise

C_PATH = _noise.compiled_available()
needs_c = pytest.mark.skipif(not C_PATH, reason="compiled extension not built")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def const(v, n=1_000_000, dtype=torch.float32) -> torch.Tensor:
    """A (4, 1, n/4 / 250, 250)-ish batch filled with v (n values)."""
    return torch.full((4, 1, n // 1000, 250), v, dtype=dtype)


def chi2_pvalue(observed_k: np.ndarray, pmf: np.ndarray, clip_at: int | None = None) -> float:
    """Chi-square goodness of fit of integer samples against pmf[k] (k = 0..len-1, the rest lumped);
    with clip_at, counts >= clip_at are one cell (as clipping merges them)."""
    n = observed_k.size
    kmax = len(pmf) if clip_at is None else clip_at
    probs = list(pmf[:kmax])
    probs.append(max(0.0, 1.0 - sum(probs)))
    counts = np.bincount(np.minimum(observed_k, kmax), minlength=kmax + 1)[: kmax + 1].astype(float)
    exp = np.array(probs) * n
    # merge cells with expected count < 5 into neighbours (from both tails inwards)
    obs_m, exp_m, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(counts, exp):
        acc_o += o
        acc_e += e
        if acc_e >= 5:
            obs_m.append(acc_o)
            exp_m.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 or acc_o > 0:
        obs_m[-1] += acc_o
        exp_m[-1] += acc_e
    obs_m, exp_m = np.array(obs_m), np.array(exp_m)
    if len(obs_m) < 2:
        return 1.0
    stat = ((obs_m - exp_m) ** 2 / exp_m).sum()
    return float(stats.chi2.sf(stat, len(obs_m) - 1))


# ---------------------------------------------------------------------------------------- Gaussian
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_residual_is_standard_normal(dtype):
    c = 0.05
    y = _noise.gaussian_noise(const(0.5, dtype=dtype), c, gen(1))
    assert y.dtype == dtype and y.shape == (4, 1, 1000, 250)
    z = ((y.double() - 0.5) / c).numpy().ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / 1000 and abs(z.std() - 1) < 5 * np.sqrt(2) / 1000
    assert abs(stats.kurtosis(z)) < 0.02          # Gaussian tails (excess kurtosis 0)
    # Box-Muller pairs are independent (also through their squares) and so are neighbours
    assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 0.005
    assert abs(np.corrcoef(z[0::2] ** 2, z[1::2] ** 2)[0, 1]) < 0.005
    assert abs(np.corrcoef(z[1:-1:2], z[2::2])[0, 1]) < 0.005


def test_gaussian_clips_like_the_reference():
    x = torch.rand(8, 3, 64, 64, generator=gen(0))
    y = _noise.gaussian_noise(x, 0.38, gen(2))
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    # share clipped to 0 at a constant 0.1: P(0.1 + .38 z < 0) = Phi(-0.1 / .38)
    y0 = _noise.gaussian_noise(const(0.1, 400_000), 0.38, gen(3))
    p = stats.norm.cdf(-0.1 / 0.38)
    assert abs(float((y0 == 0).double().mean()) - p) < 5 * np.sqrt(p * (1 - p) / 400_000)


@needs_c
def test_gaussian_uint8_is_floor_of_clipped_value():
    # the same seed draws the same z for every dtype: apply the reference's numpy arithmetic to the
    # float64 result's noise and compare with the uint8 kernel
    v = np.random.default_rng(0).integers(0, 256, (2, 3, 100, 100)).astype(np.uint8)
    c = 0.2
    y64 = _noise.gaussian_noise(torch.from_numpy(v / 255.0), c, gen(5)).numpy()
    y8 = _noise.gaussian_noise(torch.from_numpy(v), c, gen(5)).numpy()
    ref = np.uint8(np.clip(y64, 0, 1) * 255)       # y64 is already clip(v / 255. + c z)
    diff = y8.astype(int) - ref.astype(int)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 1e-3   # float32 vs float64 rounding only
    assert y8.dtype == np.uint8


# -------------------------------------------------------------------------------------------- shot
SHOT_U8 = [(60.0, 128), (3.0, 77), (500.0, 255), (500.0, 1), (50.0, 200), (10.0, 0)]


@pytest.mark.parametrize("c,v", SHOT_U8)
def test_shot_uint8_grid_levels_match_poisson(c, v):
    # float64 input exactly on the uint8 grid: k = round(y c) (y < 1) must follow Poisson(c v / 255)
    n = 400_000
    y = _noise.shot_noise(const(v / 255.0, n, torch.float64), c, gen(int(c) + v)).numpy().ravel()
    K = int(np.ceil(c))
    k = np.where(y >= 1.0, K, np.rint(y * c)).astype(np.int64)
    assert np.allclose(k[y < 1] / c, y[y < 1], rtol=0, atol=1e-12)      # values are k / c exactly
    lam = c * v / 255.0
    pmf = stats.poisson.pmf(np.arange(K), lam)
    assert chi2_pvalue(k, pmf, clip_at=K) > 1e-3
    if lam > 0:
        mean = stats.poisson.expect(lambda t: np.minimum(t, K), args=(lam,))
        assert abs(k.mean() - mean) < 6 * np.sqrt(lam / n)
    else:
        assert (k == 0).all()


@pytest.mark.parametrize("c,x", [(60.0, 0.31234), (500.0, 0.7777), (3.0, 0.25 / 255), (20.0, 0.5),
                                 (7.5, 0.123456789)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shot_off_grid_float_values_match_poisson(c, x, dtype):
    n = 400_000
    xin = const(x, n, dtype)
    y = _noise.shot_noise(xin, c, gen(11)).double().numpy().ravel()
    K = int(np.ceil(c))
    k = np.where(y >= 1.0, K, np.rint(y * c)).astype(np.int64)
    lam = c * float(xin.flatten()[0])
    pmf = stats.poisson.pmf(np.arange(K), lam)
    assert chi2_pvalue(k, pmf, clip_at=K) > 1e-3
    mean = stats.poisson.expect(lambda t: np.minimum(t, K), args=(lam,))
    assert abs(k.mean() - mean) < 6 * np.sqrt(lam / n)


def test_shot_tiny_rate_event_count():
    # lambda = 3e-4: ~300 of 1e6 values get one count; the rest stay 0
    n = 1_000_000
    y = _noise.shot_noise(const(1e-4, n), 3.0, gen(4))
    hits = int((y > 0).sum())
    lam = 3e-4
    p1 = 1 - np.exp(-lam)
    assert abs(hits - n * p1) < 5 * np.sqrt(n * p1)
    assert torch.all((y == 0) | (torch.abs(y - 1 / 3) < 1e-6) | (torch.abs(y - 2 / 3) < 1e-6))


@needs_c
@pytest.mark.parametrize("c", [60.0, 3.0, 500.0, 7.3])
def test_shot_uint8_matches_numpy_reference_arithmetic(c):
    # uint8 input and float64 input v / 255. draw the same counts; the uint8 result must be the
    # reference's np.uint8(np.clip(k / c, 0, 1) * 255)
    v = np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64)).astype(np.uint8)
    y64 = _noise.shot_noise(torch.from_numpy(v / 255.0), c, gen(9)).numpy()
    y8 = _noise.shot_noise(torch.from_numpy(v), c, gen(9)).numpy()
    k = np.where(y64 >= 1, np.ceil(c), np.rint(y64 * c))     # y = 1 means a count >= c
    ref = np.uint8(np.clip(k / c, 0, 1) * 255)
    np.testing.assert_array_equal(y8, ref)
    np.testing.assert_allclose(y64[y64 < 1] * c, k[y64 < 1], rtol=0, atol=1e-9)   # counts / c


def test_shot_large_rate_uses_fallback_and_stays_in_range():
    x = torch.rand(2, 3, 16, 16, generator=gen(0))
    y = _noise.shot_noise(x, 10_000.0, gen(1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().max()) < 0.1            # Poisson(1e4 x) / 1e4: sd <= 0.01


# ----------------------------------------------------------------------------------------- impulse
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_impulse_rates_and_untouched_values(dtype):
    c, n = 0.27, 1_000_000
    base = torch.rand(4, 1, 1000, 250, generator=gen(3)) * 0.8 + 0.1     # interior values
    x = (base * 255).round().to(torch.uint8) if dtype == torch.uint8 else base.to(dtype)
    y = _noise.impulse_noise(x, c, gen(8))
    hi = 255 if dtype == torch.uint8 else 1.0
    salt, pepper = (y == hi), (y == 0)
    kept = ~(salt | pepper)
    sd = np.sqrt(c / 2 * (1 - c / 2) / n)
    assert abs(float(salt.double().mean()) - c / 2) < 5 * sd
    assert abs(float(pepper.double().mean()) - c / 2) < 5 * sd
    assert torch.equal(y[kept], x[kept])                          # untouched values are unchanged
    # salt and pepper are independent of the value and of each other's position parity
    s = salt.numpy().ravel().astype(float)
    assert abs(np.corrcoef(s[:-1], s[1:])[0, 1]) < 0.005
    assert abs(np.corrcoef(s, base.numpy().ravel())[0, 1]) < 0.005


def test_impulse_extremes_and_clipping():
    x = torch.rand(2, 3, 32, 32, generator=gen(0)) * 1.002 - 0.001     # slightly outside [0, 1]
    assert torch.equal(_noise.impulse_noise(x, 0.0, gen(1)), x.clamp(0, 1))
    y = _noise.impulse_noise(x, 1.0, gen(1))
    assert bool(((y == 0) | (y == 1)).all())


# ------------------------------------------------------------------------------- reproducibility
FUNCS = [(_noise.gaussian_noise, 0.1), (_noise.shot_noise, 30.0), (_noise.impulse_noise, 0.1)]


@pytest.mark.parametrize("fn,c", FUNCS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_seeded_reproducible_and_seeds_differ(fn, c, dtype):
    x = torch.rand(3, 3, 40, 40, generator=gen(0))
    x = (x * 255).to(torch.uint8) if dtype == torch.uint8 else x
    a, b, d = fn(x, c, gen(5)), fn(x, c, gen(5)), fn(x, c, gen(6))
    assert torch.equal(a, b) and not torch.equal(a, d)
    torch.manual_seed(123)
    e = fn(x, c, None)
    torch.manual_seed(123)
    assert torch.equal(e, fn(x, c, None))


@needs_c
@pytest.mark.parametrize("fn,c", FUNCS)
def test_thread_count_does_not_change_results(fn, c):
    x = torch.rand(4, 3, 96, 96, generator=gen(0))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fn(x, c, gen(7))
        torch.set_num_threads(2)
        two = fn(x, c, gen(7))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


@pytest.mark.parametrize("fn,c", FUNCS)
def test_independent_across_images_and_channels(fn, c):
    x = torch.full((2, 2, 300, 300), 0.5)
    r = (fn(x, c, gen(12)) - 0.5).numpy()
    pairs = [(r[0, 0], r[1, 0]), (r[0, 0], r[0, 1]), (r[0, 1], r[1, 1])]
    for a, b in pairs:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.015     # 90,000 values: sd 0.0033


def test_non_contiguous_input_and_strided_output():
    x = torch.rand(3, 64, 64, 2, generator=gen(0)).permute(0, 3, 1, 2)   # (3, 2, 64, 64) non-contiguous
    for fn, c in FUNCS:
        y = fn(x, c, gen(1))
        assert y.shape == x.shape and y.is_contiguous()
        assert torch.equal(y, fn(x.contiguous(), c, gen(1)))


# ------------------------------------------------------------------------------ fallback & errors
@pytest.mark.parametrize("fn,c", FUNCS)
def test_fallback_paths_same_distribution_shape_dtype(fn, c):
    x = torch.full((2, 3, 100, 100), 0.5)
    xg = x.clone().requires_grad_(True)              # autograd -> torch path
    y_t = fn(xg, c, gen(1)).detach()
    y_c = fn(x, c, gen(1))
    assert y_t.shape == x.shape and y_t.dtype == x.dtype
    assert abs(float(y_t.mean()) - float(y_c.mean())) < 0.01
    assert abs(float(y_t.std()) - float(y_c.std())) < 0.01
    h = fn(x.half(), c, gen(1))                      # float16 -> computed in float32
    assert h.dtype == torch.float16 and abs(float(h.float().mean()) - float(y_c.mean())) < 0.01


def test_gaussian_gradient_flows_on_the_torch_path():
    x = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    _noise.gaussian_noise(x, 0.01, gen(0)).sum().backward()
    assert x.grad is not None and float(x.grad.sum()) > 0


@pytest.mark.parametrize("fn,bad", [(_noise.gaussian_noise, -0.1), (_noise.shot_noise, 0.0),
                                    (_noise.shot_noise, float("inf")), (_noise.impulse_noise, 1.5),
                                    (_noise.impulse_noise, float("nan"))])
def test_bad_rate_raises_value_error_naming_it(fn, bad):
    with pytest.raises(ValueError, match=r"c must be"):
        fn(torch.rand(1, 1, 4, 4), bad, None)


def test_bad_arguments_raise_clear_errors():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(TypeError, match="c must be a number"):
        _noise.gaussian_noise(x, "0.1", None)
    with pytest.raises(TypeError, match="generator"):
        _noise.shot_noise(x, 10.0, 123)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        _noise.impulse_noise(torch.rand(4, 4), 0.1, None)
    with pytest.raises(TypeError, match="dtype"):
        _noise.impulse_noise(torch.zeros(1, 1, 4, 4, dtype=torch.int32), 0.1, None)
