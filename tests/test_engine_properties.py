"""Property-based tests (hypothesis) of the blur engine: mathematical identities any correct
implementation satisfies, checked on random shapes, parameters, borders and methods."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blurkit as bk
import blurkit.filtering as filtering

BORDERS = ("reflect", "symmetric", "replicate", "circular", "constant")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
borders = st.sampled_from(BORDERS)
paths = st.booleans()  # True: force the eager torch fallback


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny images: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rand(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 4 - 1).to(dtype)


class _Eager:
    """Context manager that switches the engine to its eager torch fallback."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self):
        self.old = filtering._FORCE_TORCH
        filtering._FORCE_TORCH = self.on

    def __exit__(self, *exc):
        filtering._FORCE_TORCH = self.old


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2 ** 16), border=borders,
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.float64]),
       per_image=st.booleans(), eager=paths)
def test_sigma_zero_is_bit_exact_identity(shape, seed, border, dtype, per_image, eager):
    x = _rand(shape, seed)
    x = (x * 80 + 100).clamp(0, 255).to(dtype) if dtype == torch.uint8 else x.to(dtype)
    with _Eager(eager):
        sig = torch.zeros(shape[0]) if per_image else 0.0
        y = bk.gaussian_blur(x, sig, border=border)
        assert y.dtype == x.dtype and torch.equal(y, x)
        assert torch.equal(bk.defocus_blur(x, 0.0, border=border), x)
        assert torch.equal(bk.motion_blur(x, 0.0, 33.0, border=border), x)
        assert torch.equal(bk.box_blur(x, 1, border=border), x)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), sigma=st.floats(0.3, 4.0), border=borders,
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.float64]),
       eager=paths)
def test_sigma_zero_images_in_a_mixed_batch_are_unchanged(seed, sigma, border, dtype, eager):
    # the sigma-0 image of a batch goes through the engine with a unit impulse: still bit-exact
    x = _rand((3, 2, 9, 11), seed)
    x = (x * 80 + 100).clamp(0, 255).to(dtype) if dtype == torch.uint8 else x.to(dtype)
    with _Eager(eager):
        y = bk.gaussian_blur(x, torch.tensor([0.0, sigma, 0.0]), border=border)
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2 ** 16), sigma=st.floats(0.0, 9.0),
       method=st.sampled_from(["auto", "separable", "fft", "torch"]), eager=paths,
       family=st.sampled_from(["gauss", "rotated", "disk", "motion", "box"]))
def test_circular_border_preserves_mass(shape, seed, sigma, method, eager, family):
    x = _rand(shape, seed)
    with _Eager(eager):
        if family == "gauss":
            y = bk.gaussian_blur(x, sigma, border="circular", method=method)
        elif family == "rotated":
            y = bk.gaussian_blur(x, sigma, sigma_y=sigma / 2 + 0.3, angle=37.0, border="circular",
                                 method="direct" if method == "separable" else method)
        elif family == "disk":
            y = bk.defocus_blur(x, sigma, border="circular")
        elif family == "motion":
            y = bk.motion_blur(x, 2 * sigma, 71.0, border="circular")
        else:
            y = bk.box_blur(x, 2 * int(sigma) + 1, border="circular")
    torch.testing.assert_close(y.sum(dim=(-1, -2)), x.sum(dim=(-1, -2)), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), s1=st.floats(1.5, 3.0), s2=st.floats(1.5, 3.0),
       hw=st.tuples(st.integers(8, 24), st.integers(8, 24)), eager=paths)
def test_gaussian_semigroup(seed, s1, s2, hw, eager):
    """blur(s1) then blur(s2) == blur(sqrt(s1^2 + s2^2)), circular border, truncate 6.

    For sampled Gaussians the semigroup holds up to the aliasing of their spectra, exp(-2 pi^2 s^2)
    < 1e-19 for s >= 1.5, and the truncation: a truncate-6 window drops 2e-9 of each kernel's mass,
    so the difference is bounded by ~3 * 2e-9 * max|x|. Circular borders make the convolutions
    exact on the periodic image (no border effects), also for kernels larger than the image.
    """
    x = _rand((2, 1, *hw), seed)
    with _Eager(eager):
        two = bk.gaussian_blur(bk.gaussian_blur(x, s1, truncate=6.0, border="circular"), s2, truncate=6.0,
                               border="circular")
        one = bk.gaussian_blur(x, math.hypot(s1, s2), truncate=6.0, border="circular")
    assert float((two - one).abs().max()) <= 1e-7 * float(x.abs().max())


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2 ** 16), border=borders, eager=paths,
       sig=st.lists(st.floats(0.0, 6.0), min_size=3, max_size=3),
       sy=st.lists(st.floats(0.0, 6.0), min_size=3, max_size=3))
def test_separable_direct_fft_torch_agree(shape, seed, border, eager, sig, sy):
    x = _rand(shape, seed)
    B = shape[0]
    s = torch.tensor(sig[:B], dtype=torch.float64)
    t = torch.tensor(sy[:B], dtype=torch.float64)
    with _Eager(eager):
        outs = [bk.gaussian_blur(x, s, sigma_y=t, border=border, method=m, value=0.7)
                for m in ("separable", "direct", "fft", "torch", "auto")]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=0, atol=1e-10)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2 ** 16), border=borders, eager=paths,
       kh=st.integers(0, 4), kw=st.integers(0, 4), method=st.sampled_from(["auto", "direct", "fft", "torch"]))
def test_filter2d_methods_agree_and_are_linear(shape, seed, border, eager, kh, kw, method):
    x, z = _rand(shape, seed), _rand(shape, seed + 1)
    k = _rand((shape[0], 2 * kh + 1, 2 * kw + 1), seed + 2)
    a, b = 0.7, -1.9
    with _Eager(eager):
        ref = bk.filter2d(x, k, border=border, method="direct")
        y = bk.filter2d(x, k, border=border, method=method)
        lin = bk.filter2d(a * x + b * z, k, border=border, method=method)
        parts = a * y + b * bk.filter2d(z, k, border=border, method=method)
        # linear in the kernel too
        k2 = _rand(k.shape, seed + 3)
        kl = bk.filter2d(x, a * k + b * k2, border=border, method=method)
        kp = a * y + b * bk.filter2d(x, k2, border=border, method=method)
    scale = float(k.abs().sum(dim=(1, 2)).max()) * 4
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-11 * scale)
    torch.testing.assert_close(lin, parts, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(kl, kp, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("family", ["gauss", "aniso", "rotated", "disk", "box", "motion"])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 16), border=borders, eager=paths,
       sig=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 8.0]) | st.floats(0.0, 8.0), min_size=2,
                    max_size=5))
def test_batch_equals_per_image_results(family, seed, border, eager, sig):
    B = len(sig)
    x = _rand((B, 2, 11, 13), seed)
    s = torch.tensor(sig, dtype=torch.float64)

    def run(xx, ss):
        if family == "gauss":
            return bk.gaussian_blur(xx, ss, truncate=2.0, border=border)
        if family == "rotated":
            return bk.gaussian_blur(xx, ss, sigma_y=ss / 3 + 0.2, angle=ss * 20, border=border)
        if family == "disk":
            return bk.defocus_blur(xx, ss, border=border)
        if family == "motion":
            return bk.motion_blur(xx, 2 * ss, ss * 15, border=border)
        return bk.box_blur(xx, 2 * ss.round().long() + 1, border=border)

    if family == "aniso":  # per-image sigma_y pairs differ between the batch and single calls
        sy = s.flip(0)
        with _Eager(eager):
            y = bk.gaussian_blur(x, s, sigma_y=sy, border=border)
            singles = [bk.gaussian_blur(x[i:i + 1], s[i:i + 1], sigma_y=sy[i:i + 1], border=border)
                       for i in range(B)]
    else:
        with _Eager(eager):
            y = run(x, s)
            singles = [run(x[i:i + 1], s[i:i + 1]) for i in range(B)]
    # motion: the kernel radius is ceil(L/2 - 1e-9), so a streak shorter than ~1e-9 px alone gets a 1x1
    # kernel while in a batch it keeps its (< 1e-9) bilinear spread: allow that much
    tol = 1e-8 if family == "motion" else 1e-12
    torch.testing.assert_close(y, torch.cat(singles), rtol=0, atol=tol)


def test_small_sigma_image_does_not_depend_on_large_sigma_neighbour():
    x = _rand((2, 3, 40, 40), 5, dtype=torch.float32)
    for eager in (False, True):
        with _Eager(eager):
            both = bk.gaussian_blur(x, torch.tensor([0.5, 8.0]))
            alone = bk.gaussian_blur(x[:1], 0.5)
        torch.testing.assert_close(both[:1], alone, rtol=0, atol=1e-6)
        # the 0.5 image's kernel has 2*ceil(1.5)+1 = 5 taps, so a pixel 3 px from a change is untouched
        x2 = x.clone()
        x2[0, :, :, 20:] += 1.0
        with _Eager(eager):
            d = bk.gaussian_blur(x2, torch.tensor([0.5, 8.0]))[0] - both[0]
        assert float(d[..., :17].abs().max()) == 0.0
        assert float(d[..., 18:20].abs().max()) > 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 16), sigma=st.floats(0.5, 5.0), border=borders)
def test_compiled_and_eager_paths_agree(dtype, seed, sigma, border):
    torch.set_num_threads(2)  # the compiled path splits the planes over threads: exercise that too
    x = _rand((2, 3, 10, 14), seed, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    results = []
    for eager in (False, True):
        with _Eager(eager):
            results.append((bk.gaussian_blur(x, torch.tensor([sigma, sigma / 2]), border=border, value=0.2),
                            bk.defocus_blur(x, sigma, border=border, value=0.2),
                            bk.motion_blur(x, 2 * sigma, 25.0, border=border, value=0.2)))
    torch.set_num_threads(1)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=tol * 4)
