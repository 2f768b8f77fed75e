"""Bad input to the blur engine: every case is a ValueError/TypeError that names the parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blurkit as bk

X = torch.rand(2, 3, 8, 9)
NAN, INF = float("nan"), float("inf")

CASES = [
    # (id, call, exception, message pattern)
    ("sigma-negative", lambda: bk.gaussian_blur(X, -1.0), ValueError, r"sigma.*>= 0.*-1"),
    ("sigma-negative-per-image", lambda: bk.gaussian_blur(X, torch.tensor([1.0, -0.5])), ValueError,
     r"sigma.*>= 0"),
    ("sigma-nan", lambda: bk.gaussian_blur(X, NAN), ValueError, r"sigma.*finite.*nan"),
    ("sigma-inf", lambda: bk.gaussian_blur(X, INF), ValueError, r"sigma.*finite.*inf"),
    ("sigma-nan-per-image", lambda: bk.gaussian_blur(X, torch.tensor([1.0, NAN])), ValueError,
     r"sigma.*finite"),
    ("sigma-length", lambda: bk.gaussian_blur(X, torch.tensor([1.0, 2.0, 3.0])), ValueError,
     r"sigma has 3 values.*batch has 2"),
    ("sigma-2d", lambda: bk.gaussian_blur(X, torch.ones(2, 2)), ValueError, r"sigma.*shape \(B,\)"),
    ("sigma-str", lambda: bk.gaussian_blur(X, "1.0"), TypeError, r"sigma.*number"),
    ("sigma-none", lambda: bk.gaussian_blur(X, None), TypeError, r"sigma.*number"),
    ("sigma-bool", lambda: bk.gaussian_blur(X, True), TypeError, r"sigma"),
    ("sigma_y-negative", lambda: bk.gaussian_blur(X, 1.0, sigma_y=-2.0), ValueError, r"sigma_y.*>= 0"),
    ("sigma_y-length", lambda: bk.gaussian_blur(X, 1.0, sigma_y=torch.ones(3)), ValueError,
     r"sigma_y has 3 values"),
    ("angle-nan", lambda: bk.gaussian_blur(X, 1.0, sigma_y=2.0, angle=NAN), ValueError, r"angle.*finite"),
    ("angle-length", lambda: bk.gaussian_blur(X, 1.0, sigma_y=2.0, angle=torch.ones(5)), ValueError,
     r"angle has 5 values"),
    ("truncate-zero", lambda: bk.gaussian_blur(X, 1.0, truncate=0), ValueError, r"truncate.*> 0.*0"),
    ("truncate-negative", lambda: bk.gaussian_blur(X, 1.0, truncate=-2.0), ValueError, r"truncate.*> 0"),
    ("truncate-nan", lambda: bk.gaussian_blur(X, 1.0, truncate=NAN), ValueError, r"truncate.*finite"),
    ("images-2d", lambda: bk.gaussian_blur(X[0, 0], 1.0), ValueError, r"images.*\(B, C, H, W\).*\(8, 9\)"),
    ("images-5d", lambda: bk.gaussian_blur(X[None], 1.0), ValueError, r"images.*shape"),
    ("images-empty-batch", lambda: bk.gaussian_blur(X[:0], 1.0), ValueError, r"images.*empty batch"),
    ("images-zero-height", lambda: bk.box_blur(X[:, :, :0], 3), ValueError, r"images.*H, W >= 1"),
    ("images-int32", lambda: bk.gaussian_blur(X.to(torch.int32), 1.0), TypeError, r"images.*dtype.*int32"),
    ("images-int64", lambda: bk.defocus_blur(X.to(torch.int64), 1.0), TypeError, r"images.*dtype.*int64"),
    ("images-bool", lambda: bk.motion_blur(X > 0.5, 3.0), TypeError, r"images.*dtype.*bool"),
    ("images-complex", lambda: bk.gaussian_blur(X.to(torch.complex64), 1.0), TypeError, r"images.*dtype"),
    ("images-numpy", lambda: bk.gaussian_blur(X.numpy(), 1.0), TypeError, r"images.*torch.Tensor.*ndarray"),
    ("images-list", lambda: bk.filter2d([[1.0]], torch.ones(3, 3)), TypeError, r"images.*torch.Tensor"),
    ("border-unknown", lambda: bk.gaussian_blur(X, 1.0, border="wrap"), ValueError,
     r"border must be one of.*'wrap'"),
    ("border-unknown-filter2d", lambda: bk.filter2d(X, torch.ones(3, 3), border="mirror"), ValueError,
     r"border.*'mirror'"),
    ("border-unknown-box", lambda: bk.box_blur(X, 3, border="nearest"), ValueError, r"border.*'nearest'"),
    ("method-unknown", lambda: bk.gaussian_blur(X, 1.0, method="fast"), ValueError,
     r"method must be one of.*'fast'"),
    ("method-unknown-filter2d", lambda: bk.filter2d(X, torch.ones(3, 3), method="cuda"), ValueError,
     r"method.*'cuda'"),
    ("method-separable-rotated", lambda: bk.gaussian_blur(X, 1.0, sigma_y=2.0, angle=30.0, method="separable"),
     ValueError, r"method='separable'.*rotated"),
    ("method-separable-filter2d", lambda: bk.filter2d(X, torch.ones(3, 3), method="separable"), ValueError,
     r"method='separable'"),
    ("method-separable-defocus", lambda: bk.defocus_blur(X, 2.0, method="separable"), ValueError,
     r"method='separable'"),
    ("box-size-even", lambda: bk.box_blur(X, 4), ValueError, r"size.*odd.*4"),
    ("box-size-zero", lambda: bk.box_blur(X, 0), ValueError, r"size"),
    ("box-size-negative", lambda: bk.box_blur(X, -3), ValueError, r"size"),
    ("box-size-fraction", lambda: bk.box_blur(X, 2.5), ValueError, r"size.*odd"),
    ("box-size-per-image-even", lambda: bk.box_blur(X, torch.tensor([3, 4])), ValueError, r"size.*odd"),
    ("box-size-length", lambda: bk.box_blur(X, torch.tensor([3, 5, 7])), ValueError, r"size has 3 values"),
    ("kernels-even", lambda: bk.filter2d(X, torch.ones(4, 4) / 16), ValueError, r"kernels.*odd.*4x4"),
    ("kernels-even-width", lambda: bk.filter2d(X, torch.ones(3, 4)), ValueError, r"kernels.*odd.*3x4"),
    ("kernels-zero-size", lambda: bk.filter2d(X, torch.ones(0, 3)), ValueError, r"kernels.*odd"),
    ("kernels-count", lambda: bk.filter2d(X, torch.ones(3, 3, 3)), ValueError,
     r"kernels has 3 kernels.*batch has 2"),
    ("kernels-4d", lambda: bk.filter2d(X, torch.ones(2, 1, 3, 3)), ValueError, r"kernels.*shape"),
    ("kernels-nan", lambda: bk.filter2d(X, torch.full((3, 3), NAN)), ValueError, r"kernels.*finite"),
    ("kernels-inf", lambda: bk.filter2d(X, torch.tensor([[0.0, INF, 0.0]] * 3)), ValueError,
     r"kernels.*finite"),
    ("kernels-int", lambda: bk.filter2d(X, torch.ones(3, 3, dtype=torch.int64)), TypeError,
     r"kernels.*floating"),
    ("kernels-numpy", lambda: bk.filter2d(X, np.ones((3, 3))), TypeError, r"kernels.*torch.Tensor"),
    ("kernel_x-even", lambda: bk.sepfilter2d(X, torch.ones(4), torch.ones(3)), ValueError, r"kernel_x.*odd"),
    ("kernel_y-shape", lambda: bk.sepfilter2d(X, torch.ones(3), torch.ones(2, 3, 3)), ValueError,
     r"kernel_y.*shape"),
    ("kernel_y-count", lambda: bk.sepfilter2d(X, torch.ones(3), torch.ones(5, 3)), ValueError,
     r"kernel_y has 5 kernels"),
    ("kernel_x-int", lambda: bk.sepfilter2d(X, torch.ones(3, dtype=torch.int32), torch.ones(3)), TypeError,
     r"kernel_x.*floating"),
    ("radius-negative", lambda: bk.defocus_blur(X, -0.5), ValueError, r"radius.*>= 0"),
    ("radius-nan", lambda: bk.defocus_blur(X, NAN), ValueError, r"radius.*finite"),
    ("radius-length", lambda: bk.defocus_blur(X, torch.ones(4)), ValueError, r"radius has 4 values"),
    ("length-negative", lambda: bk.motion_blur(X, -2.0, 0.0), ValueError, r"length.*>= 0"),
    ("length-inf", lambda: bk.motion_blur(X, INF, 0.0), ValueError, r"length.*finite"),
    ("motion-angle-inf", lambda: bk.motion_blur(X, 3.0, INF), ValueError, r"angle.*finite"),
    ("motion-angle-length", lambda: bk.motion_blur(X, 3.0, torch.ones(3)), ValueError, r"angle has 3 values"),
    ("pad-negative", lambda: bk.filtering.pad(X, (-1, 0, 0, 0)), ValueError, r"padding.*non-negative"),
    ("pad-border", lambda: bk.filtering.pad(X, (1, 0, 0, 0), "wrap"), ValueError, r"border.*'wrap'"),
    # kernel builders check their own arguments
    ("k-gaussian1d-sigma", lambda: bk.kernels.gaussian1d(-1.0), ValueError, r"sigma.*>= 0"),
    ("k-gaussian1d-truncate", lambda: bk.kernels.gaussian1d(1.0, truncate=0.0), ValueError, r"truncate"),
    ("k-gaussian-angle-length", lambda: bk.kernels.gaussian(1.0, torch.ones(2), torch.ones(3)), ValueError,
     r"angle has 3 values"),
    ("k-box-even", lambda: bk.kernels.box(4), ValueError, r"size.*odd"),
    ("k-disk-nan", lambda: bk.kernels.disk(NAN), ValueError, r"radius.*finite"),
    ("k-motion-nan", lambda: bk.kernels.motion(NAN), ValueError, r"length.*finite"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error_naming_the_parameter(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_no_torch_internal_padding_error_for_large_kernels():
    # torch's own reflect padding raises "Padding size should be less than ..."; blurkit must not
    x = torch.rand(1, 1, 3, 3)
    for border in ("reflect", "symmetric", "circular", "replicate", "constant"):
        for method in ("auto", "separable", "fft", "torch"):
            assert bk.gaussian_blur(x, 10.0, border=border, method=method).shape == x.shape


def test_sepfilter2d_rejects_non_finite_kernels():
    with pytest.raises(ValueError, match=r"kernel_y.*finite"):
        bk.sepfilter2d(X, torch.ones(3) / 3, torch.tensor([0.0, NAN, 0.0]))


@pytest.mark.parametrize("bad, exc", [("a", TypeError), (NAN, ValueError), (INF, ValueError)])
def test_value_must_be_a_finite_number(bad, exc):
    with pytest.raises(exc, match=r"value"):
        bk.gaussian_blur(X, 1.0, border="constant", value=bad)
    with pytest.raises(exc, match=r"value"):
        bk.filter2d(X, torch.ones(3, 3), border="constant", value=bad)
