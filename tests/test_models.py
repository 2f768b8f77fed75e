"""Tests for blurkit.models: output shapes, BlurPool against scipy, the registry and user models."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from torch import nn

from blurkit.errors import BlurkitError
from blurkit.models import MODELS, BlurPool, binomial_filter, build_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny convolutions: one thread avoids OpenMP overhead (and stalls on a shared, busy machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name,size", [("small-cnn", 16), ("resnet18-cifar", 16), ("resnet18", 32),
                                       ("resnet50-cifar", 16), ("alexnet", 32)])
@pytest.mark.parametrize("blurpool", [False, True])
def test_forward_shapes(name, size, blurpool):
    torch.manual_seed(0)
    net = build_model(name, num_classes=7, in_channels=3, blurpool=blurpool, image_size=size)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert any(isinstance(m, BlurPool) for m in net.modules()) == blurpool


def test_resnet50_imagenet_stem_and_backward():
    net = build_model("resnet50-blurpool", num_classes=5, in_channels=1)
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    net.train()
    net(torch.cat([x, x])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_binomial_filter_is_pascal_row():
    np.testing.assert_allclose(binomial_filter(5).numpy(), np.array([1, 4, 6, 4, 1]) / 16)
    with pytest.raises(ValueError, match="odd"):
        binomial_filter(4)


@pytest.mark.parametrize("filt", [3, 5])
@pytest.mark.parametrize("hw", [(9, 12), (8, 8)])
def test_blurpool_matches_scipy_then_subsample(filt, hw):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, *hw)).astype(np.float64)
    from math import comb
    k = np.array([comb(filt - 1, i) for i in range(filt)], dtype=np.float64)
    k /= k.sum()
    ref = ndi.correlate1d(ndi.correlate1d(x, k, axis=-1, mode="mirror"), k, axis=-2, mode="mirror")[..., ::2, ::2]
    got = BlurPool(3, filt_size=filt)(torch.from_numpy(x))
    assert got.shape == (2, 3, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)


def test_blurpool_is_more_shift_stable_than_maxpool():
    # Zhang 2019: a one-pixel shift of the input changes anti-aliased features less
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    xs = torch.roll(x, 1, dims=-1)
    plain = nn.MaxPool2d(2)
    aa = nn.Sequential(nn.MaxPool2d(2, 1), BlurPool(1))
    d_plain = (plain(x) - plain(xs)).abs().mean()
    d_aa = (aa(x)[..., :-1] - aa(xs)[..., :-1]).abs().mean()
    assert d_aa < d_plain


def test_registry_user_modules_and_errors(tmp_path):
    user = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert build_model(user) is user
    mod = tmp_path / "mymodel.py"
    mod.write_text("from torch import nn\n"
                   "def make(num_classes, in_channels, blurpool=False):\n"
                   "    return nn.Sequential(nn.Conv2d(in_channels, num_classes, 1), nn.AdaptiveAvgPool2d(1),"
                   " nn.Flatten())\n")
    net = build_model(f"{mod}:make", num_classes=4, in_channels=2)
    assert net(torch.rand(3, 2, 5, 5)).shape == (3, 4)
    with pytest.raises(BlurkitError, match="unknown model 'vgg99'"):
        build_model("vgg99")
    assert set(MODELS) >= {"small-cnn", "resnet18", "resnet50", "alexnet"}
    with pytest.raises(ValueError, match="norm"):
        build_model("small-cnn", norm="layer")
    with pytest.raises(ValueError, match="16x16"):
        build_model("alexnet", image_size=32)(torch.rand(1, 1, 8, 8))


def test_unknown_model_options_are_refused_and_user_functions_get_theirs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"'small-cnn' has no option\(s\) 'widht'; its options: width, norm"):
        build_model("small-cnn", widht=4)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        build_model("small-cnn", width=0)
    with pytest.raises(ValueError, match="'resnet18-cifar' has no option"):
        build_model("resnet18-cifar", stem="imagenet")
    # image_size (passed by the training loop) is accepted by every model
    assert build_model("small-cnn", width=4, image_size=28).features[0].out_channels == 4
    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def net(num_classes, in_channels, hidden=3):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(hidden),\n"
        "                               torch.nn.Linear(hidden, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model("usermodels:net", 5, 1, hidden=7, image_size=28)  # image_size dropped: net does not take it
    assert m[2].in_features == 7 and m[2].out_features == 5
    with pytest.raises(ValueError, match="does not take the option"):
        build_model("usermodels:net", 5, 1, depth=2)
