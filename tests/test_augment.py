"""Tests for blurkit.augment: sampling, application, determinism, validation, ecosystem use.

Independent references: scipy.ndimage.gaussian_filter / uniform_filter (per image), math properties
of the distributions; the engine itself is checked against scipy/OpenCV in test_filtering.py, so
"output equals bk.gaussian_blur with the recorded parameters" plus one scipy check per family closes
the loop.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage

import blurkit as bk
from blurkit.augment import (
    Distribution,
    RandomBlur,
    RandomBoxBlur,
    RandomDefocusBlur,
    RandomGaussianBlur,
    RandomMotionBlur,
)

STRONG = dict(sigmas=[0, 1, 2, 4, 8], weights=[1, 1, 1, 1, 1], truncate=2.0)


def _images(b=6, c=3, h=40, w=48, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=dtype)


# ------------------------------------------------------------------------------------ application
def test_output_equals_engine_with_recorded_params():
    x = _images(16)
    aug = RandomGaussianBlur(**STRONG, seed=1)
    y = aug(x)
    s = aug.last_params["sigma"]
    assert s.shape == (16,) and aug.last_params["applied"].all()
    assert set(s.tolist()) <= {0.0, 1.0, 2.0, 4.0, 8.0}
    torch.testing.assert_close(y, bk.gaussian_blur(x, s, truncate=2.0), rtol=0, atol=0)


def test_output_matches_scipy_per_image():
    x = _images(8, c=2, h=37, w=41).double()
    aug = RandomGaussianBlur(**STRONG, seed=3)
    y = aug(x)
    for i, s in enumerate(aug.last_params["sigma"].tolist()):
        for c in range(2):
            ref = ndimage.gaussian_filter(x[i, c].numpy(), s, mode="mirror", truncate=2.0) if s > 0 \
                else x[i, c].numpy()
            np.testing.assert_allclose(y[i, c].numpy(), ref, atol=1e-10)


def test_uniform_sigma_matches_scipy_with_radius():
    x = _images(4, c=1, h=33, w=30).double()
    aug = RandomGaussianBlur((0.3, 3.0), truncate=3.0, border="replicate", seed=5)
    y = aug(x)
    for i, s in enumerate(aug.last_params["sigma"].tolist()):
        r = math.ceil(3.0 * s - 1e-9)
        ref = ndimage.gaussian_filter(x[i, 0].numpy(), s, mode="nearest", radius=r)
        np.testing.assert_allclose(y[i, 0].numpy(), ref, atol=1e-6)


def test_box_matches_scipy_uniform_filter():
    x = _images(5, c=1, h=30, w=31).double()
    aug = RandomBoxBlur(size=(3, 9), seed=2)
    y = aug(x)
    sizes = aug.last_params["size"]
    assert set(sizes.tolist()) <= {3.0, 5.0, 7.0, 9.0}
    for i, k in enumerate(sizes.long().tolist()):
        ref = ndimage.uniform_filter(x[i, 0].numpy(), size=k, mode="mirror")
        np.testing.assert_allclose(y[i, 0].numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("cls,call", [
    (RandomMotionBlur, lambda x, p: bk.motion_blur(x, p["length"], p["angle"])),
    (RandomDefocusBlur, lambda x, p: bk.defocus_blur(x, p["radius"])),
    (RandomBoxBlur, lambda x, p: bk.box_blur(x, p["size"])),
])
def test_other_families_equal_engine(cls, call):
    x = _images(6)
    aug = cls(seed=4, p=0.5)
    y = aug(x)
    torch.testing.assert_close(y, call(x, aug.last_params), rtol=0, atol=0)
    # images not applied are returned bit for bit
    keep = ~aug.last_params["applied"]
    assert torch.equal(y[keep], x[keep])


def test_anisotropic_rotated():
    x = _images(6)
    aug = RandomGaussianBlur((0.5, 3.0), sigma_y=(0.5, 1.0), angle=(0.0, 180.0), truncate=2.5, seed=0)
    y = aug(x)
    p = aug.last_params
    assert set(p) == {"sigma", "sigma_y", "angle", "applied"}
    assert bool((p["angle"] >= 0).all() and (p["angle"] <= 180).all())
    ref = bk.gaussian_blur(x, p["sigma"], sigma_y=p["sigma_y"], angle=p["angle"], truncate=2.5)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_sigma_y_zero_where_sigma_zero():
    aug = RandomGaussianBlur(sigmas=[0, 2], sigma_y=(1.0, 2.0), seed=0)
    p = aug.sample_params(2000, 32, 32)
    assert bool((p["sigma_y"][p["sigma"] == 0] == 0).all())
    assert bool((p["sigma_y"][p["sigma"] > 0] >= 1).all())


def test_p_zero_identity_and_p_one_all():
    x = _images(10)
    aug0 = RandomGaussianBlur(**STRONG, p=0.0, seed=0)
    y0 = aug0(x)
    assert torch.equal(y0, x) and not aug0.last_params["applied"].any()
    assert bool((aug0.last_params["sigma"] == 0).all())
    aug1 = RandomGaussianBlur((1.0, 2.0), p=1.0, seed=0)
    y1 = aug1(x)
    assert aug1.last_params["applied"].all()
    assert all(not torch.equal(y1[i], x[i]) for i in range(10))


def test_probability_and_exact_fraction():
    aug = RandomGaussianBlur(2.0, p=0.3, seed=0)
    p = aug.sample_params(20000, 8, 8)
    assert abs(p["applied"].float().mean().item() - 0.3) < 0.015
    ex = RandomGaussianBlur(2.0, p=0.5, exact_fraction=True, seed=0)
    for b in (2, 64, 100):
        assert int(ex.sample_params(b, 8, 8)["applied"].sum()) == b // 2
    # odd batches: floor or ceil, right on average; single images blurred half the time
    counts = [int(ex.sample_params(7, 8, 8)["applied"].sum()) for _ in range(400)]
    assert set(counts) <= {3, 4} and abs(np.mean(counts) - 3.5) < 0.15
    singles = [bool(ex.sample_params(1, 8, 8)["applied"][0]) for _ in range(400)]
    assert 0.4 < np.mean(singles) < 0.6


# ----------------------------------------------------------------------------------- distributions
def test_discrete_weights_unnormalised():
    aug = RandomGaussianBlur(sigmas=[0, 1, 3], weights=[2, 1, 1], seed=0)
    s = aug.sample_params(40000, 16, 16)["sigma"]
    freq = [(s == v).float().mean().item() for v in (0, 1, 3)]
    np.testing.assert_allclose(freq, [0.5, 0.25, 0.25], atol=0.01)


def test_uniform_and_log_uniform():
    u = RandomGaussianBlur((1.0, 3.0), seed=0).sample_params(20000, 8, 8)["sigma"]
    assert u.min() >= 1 and u.max() <= 3 and abs(u.mean().item() - 2.0) < 0.02
    lg = RandomGaussianBlur((0.1, 10.0), distribution="log-uniform", seed=0).sample_params(20000, 8, 8)["sigma"]
    assert lg.min() >= 0.1 and lg.max() <= 10.0
    logs = torch.log10(lg)  # uniform on [-1, 1]
    assert abs(logs.mean().item()) < 0.02 and abs((logs < 0).float().mean().item() - 0.5) < 0.015


def test_callable_sampler_gets_generator():
    seen = {}

    def sampler(n, generator):
        seen["n"], seen["g"] = n, generator
        return torch.full((n,), 1.5)

    g = torch.Generator().manual_seed(0)
    aug = RandomGaussianBlur(sampler, generator=g)
    aug(_images(3))
    assert seen["n"] == 3 and seen["g"] is g
    assert bool((aug.last_params["sigma"] == 1.5).all())
    bad = RandomGaussianBlur(lambda n, g: torch.ones(n + 1))
    with pytest.raises(ValueError, match="shape"):
        bad(_images(2))
    neg = RandomGaussianBlur(lambda n, g: -torch.ones(n))
    with pytest.raises(ValueError, match="sampler"):
        neg(_images(2))


def test_distribution_repr_and_probabilities():
    d = Distribution.discrete([0, 1], [3, 1], "sigmas")
    assert d.probabilities == (0.75, 0.25)
    assert repr(d) == "{0: 0.75, 1: 0.25}"
    assert repr(Distribution.parse((0.5, 2), "sigma")) == "U(0.5, 2)"


# ------------------------------------------------------------------------------------ determinism
def test_seed_reproducible_and_seeds_differ():
    x = _images(12)
    a, b, c = (RandomGaussianBlur((0.5, 4.0), p=0.7, seed=s) for s in (7, 7, 8))
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)
    assert torch.equal(a(x), b(x))  # streams advance in step
    a.reseed(7)
    b2 = RandomGaussianBlur((0.5, 4.0), p=0.7, seed=7)
    assert torch.equal(a(x), b2(x))


def test_generator_reproducible():
    x = _images(8)
    y1 = RandomMotionBlur(generator=torch.Generator().manual_seed(3))(x)
    y2 = RandomMotionBlur(generator=torch.Generator().manual_seed(3))(x)
    assert torch.equal(y1, y2)


def test_global_rng_respects_manual_seed():
    aug = RandomDefocusBlur()
    torch.manual_seed(11)
    p1 = aug.sample_params(5, 8, 8)["radius"]
    torch.manual_seed(11)
    p2 = aug.sample_params(5, 8, 8)["radius"]
    assert torch.equal(p1, p2)


class _SameImages(torch.utils.data.Dataset):
    """Eight copies of one image, each passed through the transform (one (C, H, W) image at a time)."""

    def __init__(self, transform):
        self.transform = transform
        self.image = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        y = self.transform(self.image)
        info = torch.utils.data.get_worker_info()
        return y, self.transform.last_params["sigma"][0], (info.id if info else -1)


def _run_loader(transform, seed):
    ds = _SameImages(transform)
    dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                     generator=torch.Generator().manual_seed(seed))
    ys, sig, wid = zip(*dl)
    return torch.cat(ys), torch.cat(sig), torch.cat(wid)


@pytest.mark.parametrize("seed_kw", [{"seed": 5}, {}])
def test_dataloader_workers_reproducible_and_distinct(seed_kw):
    aug = RandomGaussianBlur((0.5, 3.0), **seed_kw)
    y1, s1, w1 = _run_loader(aug, 0)
    y2, s2, w2 = _run_loader(aug, 0)
    assert torch.equal(y1, y2) and torch.equal(s1, s2)
    assert set(w1.tolist()) == {0, 1}
    s_w0, s_w1 = s1[w1 == 0], s1[w1 == 1]
    assert not torch.equal(s_w0, s_w1)  # workers draw different streams
    assert len(set(s1.tolist())) == 8
    _, s3, _ = _run_loader(aug, 1)  # another loader seed, another run
    assert not torch.equal(s1, s3)


def test_pickle_and_deepcopy_keep_configuration():
    aug = RandomGaussianBlur(**STRONG, p=0.8, seed=3, reference_size=224)
    aug(_images(2))
    for clone in (pickle.loads(pickle.dumps(aug)), copy.deepcopy(aug)):
        assert repr(clone) == repr(aug)
        assert clone.sample_params(4, 8, 8)["sigma"].shape == (4,)


# -------------------------------------------------------------------------------- reference size
def test_reference_size_scaling():
    big = RandomGaussianBlur(**STRONG, reference_size=224, seed=0)
    small = RandomGaussianBlur(**STRONG, reference_size=224, seed=0)
    s_big = big.sample_params(64, 224, 224)["sigma"]
    s_small = small.sample_params(64, 28, 40)["sigma"]  # shorter side 28
    torch.testing.assert_close(s_small, s_big * 28 / 224)
    assert small.scale_for(28, 40) == 28 / 224 and RandomGaussianBlur().scale_for(5, 7) == 1.0
    y = RandomGaussianBlur(**STRONG, reference_size=224, seed=0)(_images(4, h=28, w=28))
    assert y.shape == (4, 3, 28, 28)


def test_reference_size_other_families():
    m = RandomMotionBlur(length=10.0, reference_size=100, seed=0).sample_params(3, 50, 60)
    torch.testing.assert_close(m["length"], torch.full((3,), 5.0))
    d = RandomDefocusBlur(radius=4.0, reference_size=200, seed=0).sample_params(3, 50, 50)
    torch.testing.assert_close(d["radius"], torch.full((3,), 1.0))
    b = RandomBoxBlur(size=9, reference_size=224, seed=0).sample_params(3, 112, 112)["size"]
    assert b.tolist() == [5.0, 5.0, 5.0]  # 9 * 0.5 = 4.5 -> nearest odd 5
    b1 = RandomBoxBlur(size=3, reference_size=224, seed=0).sample_params(2, 28, 28)["size"]
    assert b1.tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------ shapes/types
def test_single_image_and_dtypes():
    aug = RandomGaussianBlur(**STRONG, seed=0)
    x = _images(1)[0]
    y = aug(x)
    assert y.shape == x.shape and aug.last_params["sigma"].shape == (1,)
    xu = (torch.rand(4, 3, 20, 20) * 255).to(torch.uint8)
    yu = RandomBoxBlur(seed=0)(xu)
    assert yu.dtype == torch.uint8 and yu.shape == xu.shape
    xh = _images(3, dtype=torch.float64)
    assert RandomDefocusBlur(seed=0)(xh).dtype == torch.float64


def test_return_params_and_sequential():
    aug = RandomGaussianBlur(**STRONG, seed=0, return_params=True)
    y, params = aug(_images(4))
    assert y.shape == (4, 3, 40, 48) and params is aug.last_params
    net = torch.nn.Sequential(RandomGaussianBlur(**STRONG, seed=0), RandomMotionBlur(p=0.5, seed=1),
                              torch.nn.Conv2d(3, 2, 3))
    out = net(_images(4))
    assert out.shape == (4, 2, 38, 46)
    net.to(torch.float64)  # no parameters to move, but must not break
    assert net(_images(2).double()).dtype == torch.float64


def test_gradient_flows_to_images():
    x = _images(3).requires_grad_(True)
    y = RandomGaussianBlur(**STRONG, seed=0)(x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# -------------------------------------------------------------------------------------- RandomBlur
def test_random_blur_families_and_record():
    x = _images(24)
    aug = RandomBlur({"g": RandomGaussianBlur((1.0, 2.0)), "m": RandomMotionBlur((3.0, 7.0)),
                      "b": RandomBoxBlur(size=(3, 5))}, weights=[2, 1, 1], p=0.75, seed=0)
    y = aug(x)
    p = aug.last_params
    fam = p["family"]
    assert set(fam.tolist()) <= {-1, 0, 1, 2} and bool(((fam >= 0) == p["applied"]).all())
    for i in range(24):
        if int(fam[i]) == -1:
            assert torch.equal(y[i], x[i])
            assert all(math.isnan(p[key][i]) for key in ("g.sigma", "m.length", "b.size"))
    # one engine call per family on that family's images
    g, m, b = (torch.nonzero(fam == k).flatten() for k in range(3))
    assert len(g) and len(m) and len(b)
    torch.testing.assert_close(y[g], bk.gaussian_blur(x[g], p["g.sigma"][g]), rtol=0, atol=0)
    torch.testing.assert_close(y[m], bk.motion_blur(x[m], p["m.length"][m], p["m.angle"][m]), rtol=0, atol=0)
    torch.testing.assert_close(y[b], bk.box_blur(x[b], p["b.size"][b]), rtol=0, atol=0)
    big = aug.sample_params(20000, 8, 8)["family"]
    freq = [(big == k).float().mean().item() for k in (-1, 0, 1, 2)]
    np.testing.assert_allclose(freq, [0.25, 0.375, 0.1875, 0.1875], atol=0.015)
    assert torch.equal(aug.apply(x, p), y)


def test_random_blur_default_and_reproducible():
    x = _images(8)
    a, b = RandomBlur(seed=9), RandomBlur(seed=9)
    assert torch.equal(a(x), b(x))
    assert a.names == ("gaussian", "motion", "defocus", "box")
    assert "gaussian: 0.25" in repr(a)


# -------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(sigma=-1.0), ValueError, "sigma must be >= 0"),
    (dict(sigma=(2.0, 1.0)), ValueError, "low <= high"),
    (dict(sigma=(0.0, 1.0), distribution="log-uniform"), ValueError, "log-uniform"),
    (dict(sigma=(0.0, 1.0), distribution="normal"), ValueError, "distribution"),
    (dict(sigma="big"), TypeError, "sigma must be"),
    (dict(sigma=float("nan")), ValueError, "finite"),
    (dict(sigmas=[0, -1]), ValueError, "sigmas must be >= 0"),
    (dict(sigmas=[]), TypeError, "non-empty"),
    (dict(sigmas=[0, 1], weights=[1]), ValueError, "one entry per"),
    (dict(sigmas=[0, 1], weights=[0, 0]), ValueError, "all be zero"),
    (dict(sigmas=[0, 1], weights=[1, -1]), ValueError, ">= 0"),
    (dict(sigmas=[0, 1], sigma=1.0), ValueError, "not both"),
    (dict(weights=[1, 2]), ValueError, "needs sigmas"),
    (dict(p=1.5), ValueError, r"p must be a number in \[0, 1\]"),
    (dict(p=-0.1), ValueError, "p must be"),
    (dict(truncate=0), ValueError, "truncate"),
    (dict(border="mirror"), ValueError, "border"),
    (dict(angle=(0, 90)), ValueError, "needs sigma_y"),
    (dict(sigma_y=(-1.0, 1.0)), ValueError, "sigma_y"),
    (dict(reference_size=0), ValueError, "reference_size"),
    (dict(seed=1, generator=torch.Generator()), ValueError, "not both"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(generator=3), TypeError, "generator"),
    (dict(method="magic"), ValueError, "method"),
    (dict(exact_fraction=1), TypeError, "exact_fraction"),
])
def test_gaussian_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RandomGaussianBlur(**kwargs)


def test_other_validation():
    with pytest.raises(ValueError, match="length must be >= 0"):
        RandomMotionBlur(length=(-1.0, 2.0))
    with pytest.raises(ValueError, match="radius"):
        RandomDefocusBlur(radius=-2.0)
    with pytest.raises(ValueError, match="odd"):
        RandomBoxBlur(size=4)
    with pytest.raises(ValueError, match="odd"):
        RandomBoxBlur(sizes=[3, 6])
    with pytest.raises(ValueError, match="low <= high"):
        RandomBoxBlur(size=(9, 3))
    with pytest.raises(ValueError, match="one entry per"):
        RandomBlur([RandomGaussianBlur(), RandomBoxBlur()], weights=[1, 2, 3])
    with pytest.raises(TypeError, match="must be a RandomGaussianBlur"):
        RandomBlur([torch.nn.Identity()])
    with pytest.raises(ValueError, match="unique"):
        RandomBlur([RandomGaussianBlur(), RandomGaussianBlur()])
    with pytest.raises(TypeError, match="images"):
        RandomGaussianBlur()(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="batch_size"):
        RandomGaussianBlur().sample_params(0, 8, 8)


def test_repr_shows_configuration():
    r = repr(RandomGaussianBlur(**STRONG, p=0.5, reference_size=224, seed=3))
    for part in ("sigma={0: 0.2, 1: 0.2, 2: 0.2, 4: 0.2, 8: 0.2}", "truncate=2", "p=0.5",
                 "border='reflect'", "reference_size=224", "seed=3"):
        assert part in r, (part, r)
    assert "LogU(0.1, 10)" in repr(RandomGaussianBlur((0.1, 10), distribution="log-uniform"))
    assert "length=U(3, 15), angle=U(0, 180)" in repr(RandomMotionBlur())
    assert "radius=U(1, 4)" in repr(RandomDefocusBlur())


def test_inside_kornia_augmentation_sequential():
    KA = pytest.importorskip("kornia.augmentation")
    x = _images(4)
    blur = RandomGaussianBlur(**STRONG, seed=0)
    seq = KA.AugmentationSequential(KA.RandomHorizontalFlip(p=0.0), blur)
    y = seq(x)
    torch.testing.assert_close(y, bk.gaussian_blur(x, blur.last_params["sigma"], truncate=2.0), rtol=0, atol=0)


def test_rotated_random_gaussian_with_separable_method_is_refused_when_built():
    with pytest.raises(ValueError, match="method='separable' cannot apply rotated"):
        bk.augment.RandomGaussianBlur(sigma=(1, 2), sigma_y=(0.5, 1), angle=(0, 180), method="separable")
