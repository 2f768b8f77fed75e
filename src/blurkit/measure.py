"""Measure blur: how blurred an image is, how it was blurred, and how far apart two images are.

Every function takes a batch ``(B, C, H, W)`` (or one image ``(C, H, W)``) on any device and returns
one value per image, a tensor ``(B,)`` (0-d for a single ``(C, H, W)`` image), computed without
Python loops over the images.

No-reference metrics (one image):

=========================  ==============================================  =======================
function                   what                                            sharp -> blurred
=========================  ==============================================  =======================
:func:`laplacian_variance` variance of the 3x3 Laplacian (OpenCV idiom)     large -> small
:func:`blur_effect`        Crete et al. 2007 (= ``skimage.measure``)       0 -> 1
:func:`high_frequency_ratio` share of spectral energy above a cut-off      large -> 0
:func:`edge_width`         mean edge width, Marziliano et al. 2002 (px)    small -> large
:func:`estimate_sigma`     the Gaussian sigma an image was blurred with    0 -> sigma (px)
:func:`estimate_motion`    length (px) and angle (deg) of linear motion     -
=========================  ==============================================  =======================

Full-reference metrics (two images of the same shape): :func:`psnr`, :func:`ssim` (Wang et al.
2004), :func:`ms_ssim` (Wang et al. 2003), :func:`gmsd` (Xue et al. 2014) and :func:`blursim`
(from :mod:`blurkit.losses`).

Units: integer (``uint8``) images are used in their 0-255 units (so :func:`laplacian_variance` gives
the familiar OpenCV numbers) and get ``data_range=255`` by default; float images get
``data_range=1``. Grey conversion of RGB follows the reference each metric is defined against
(named in each docstring). Images must have 1 (grey) or 3 (RGB) channels for the no-reference
metrics; the full-reference ones accept any channel count.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import torch
import torch.nn.functional as F

from . import filtering as _f
from . import kernels as _k
from ._validation import all_finite, check_images, restore_batch

__all__ = [
    "laplacian_variance",
    "blur_effect",
    "high_frequency_ratio",
    "edge_width",
    "estimate_sigma",
    "estimate_motion",
    "psnr",
    "ssim",
    "ms_ssim",
    "gmsd",
    "blursim",
    "to_grey",
]

# Grey weights of the references each metric is matched against.
_REC601 = (0.299, 0.587, 0.114)  # OpenCV cvtColor RGB2GRAY
_SKIMAGE = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray (Rec. 709)
_MATLAB = (0.2989, 0.5870, 0.1140)  # MATLAB rgb2gray (GMSD reference code)
_EPSILON = 2.220446049250313e-16  # numpy float64 eps, as skimage.measure.blur_effect


# ------------------------------------------------------------------------------------ helpers
def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _prep(images: object, name: str = "images", finite: bool = False) -> tuple[torch.Tensor, bool]:
    """Validate and return ``(float batch, squeezed)``; uint8 keeps its 0-255 units. ``finite``: reject
    NaN / inf values (metrics that would otherwise turn them into a plausible number)."""
    x4, squeezed = check_images(images, name)
    if finite and not all_finite(x4):
        raise ValueError(f"{name} contain NaN or infinite values; this metric needs finite pixels")
    return x4.to(_work_dtype(x4)), squeezed


def _number(v: object, name: str, what: str, *, low: float | None = None, low_open: bool = False,
            high: float | None = None) -> float:
    """``v`` as a finite float (numpy scalars and 0-d tensors accepted), within the given bounds."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.dtype.is_complex:
        v = v.item()
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok and low is not None:
        ok = float(v) > low if low_open else float(v) >= low
    if ok and high is not None:
        ok = float(v) <= high
    if not ok:
        raise ValueError(f"{name} must be {what}; got {v!r}")
    return float(v)


def _grey_weights(weights: object) -> tuple[float, float, float]:
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (tuple, list)) or len(weights) != 3:
        raise ValueError(f"weights must be three numbers (the R, G, B weights); got {weights!r}")
    return tuple(_number(w, "weights", "three finite numbers (the R, G, B weights)") for w in weights)  # type: ignore[return-value]


def to_grey(images: torch.Tensor, weights: tuple[float, float, float] = _REC601) -> torch.Tensor:
    """Grey version ``(B, 1, H, W)`` of a batch with 1 or 3 (RGB) channels.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` with ``C`` 1 or 3 (RGB order).
        weights: the R, G, B weights (default Rec. 601, as OpenCV ``cvtColor(RGB2GRAY)``).

    Returns:
        Float tensor ``(B, 1, H, W)`` (``(1, H, W)`` for 3-D input), in the input's units.

    Example:
        >>> g = to_grey(torch.rand(2, 3, 8, 8))   # (2, 1, 8, 8)
    """
    x4, squeezed = _prep(images)
    return restore_batch(_grey(x4, _grey_weights(weights), "images"), squeezed)


_CHUNK_ELEMS = 1 << 20  # CPU work is done in batch chunks of about this many values (4 MB float32)


def _chunks(x: torch.Tensor) -> list[slice]:
    """Batch slices for CPU work: intermediates of a few MB stay in cache and are recycled by the
    allocator instead of faulting in fresh batch-sized buffers (which can cost more than the
    arithmetic on CPU). On other devices the whole batch is one chunk."""
    n = x.shape[0]
    if x.device.type != "cpu":
        return [slice(0, n)]
    step = max(1, _CHUNK_ELEMS // max(1, x[0].numel()))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _grey(x: torch.Tensor, weights: tuple[float, float, float], name: str,
          out: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted channel sum ``(B, 1, H, W)`` of grey or RGB images (grey: ``x`` itself, or copied into ``out``)."""
    C = x.shape[1]
    if C == 1:
        return x if out is None else out.copy_(x)
    if C == 3:
        g = torch.mul(x[:, 0:1], weights[0], out=out) if out is not None else x[:, 0:1] * weights[0]
        g.add_(x[:, 1:2], alpha=weights[1]).add_(x[:, 2:3], alpha=weights[2])
        return g
    raise ValueError(f"{name} must have 1 (grey) or 3 (RGB) channels for this metric; got C={C} "
                     f"(shape {tuple(x.shape)}); drop an alpha channel or pass channels one by one")


def _check_min_size(x: torch.Tensor, minimum: int, name: str, what: str) -> None:
    H, W = x.shape[-2:]
    if H < minimum or W < minimum:
        raise ValueError(f"{name} must be at least {minimum}x{minimum} pixels for {what}; "
                         f"got {H}x{W}")


def _pair(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate a pair of batches of the same shape; return float tensors of a common dtype."""
    x4, sx = check_images(x, "x")
    y4, sy = check_images(y, "y")
    if x4.shape != y4.shape or sx != sy:
        raise ValueError(f"x and y must have the same shape; got {tuple(x.shape)} and "  # type: ignore[union-attr]
                         f"{tuple(y.shape)}")  # type: ignore[union-attr]
    if x4.device != y4.device:
        raise ValueError(f"x and y must be on the same device; got {x4.device} and {y4.device}")
    if (x4.dtype == torch.uint8) != (y4.dtype == torch.uint8):
        other = y4.dtype if x4.dtype == torch.uint8 else x4.dtype
        raise ValueError(f"x and y must be in the same units: one is uint8 (0-255) and the other {other}; "
                         "convert both to uint8 or both to float")
    dt = torch.float64 if torch.float64 in (x4.dtype, y4.dtype) else torch.float32
    return x4.to(dt), y4.to(dt), sx


def _data_range(data_range: object, x: torch.Tensor, y: torch.Tensor) -> float:
    if data_range is None:
        return 255.0 if (getattr(x, "dtype", None) == torch.uint8 or getattr(y, "dtype", None) == torch.uint8) \
            else 1.0
    return _number(data_range, "data_range", "a finite number > 0 (the span of possible values, e.g. 1.0 or 255)",
                   low=0.0, low_open=True)


def _out(v: torch.Tensor, squeezed: bool) -> torch.Tensor:
    return v.squeeze(0) if squeezed else v


# ------------------------------------------------------------------------------ no-reference
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Variance of the Laplacian of the grey image (Pech-Pacheco et al. 2000; the OpenCV idiom).

    ``cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var()``: the 4-neighbour Laplacian
    ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` with OpenCV's default border (``BORDER_REFLECT_101``),
    then the population variance over all pixels. Larger is sharper; it falls quickly with blur.
    RGB is converted with OpenCV's weights (0.299, 0.587, 0.114).

    Reference: J. L. Pech-Pacheco, G. Cristobal, J. Chamorro-Martinez, J. Fernandez-Valdivia,
    "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3; uint8 images are used in 0-255 units
            (the OpenCV numbers), float images in their own units (``[0, 1]`` images give values
            ``255**2`` times smaller).

    Returns:
        ``(B,)`` (0-d for one image), float32 (float64 for float64 input). A constant image gives 0.

    Example:
        >>> x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
        >>> laplacian_variance(x).shape
        torch.Size([4])
    """
    x4, squeezed = _prep(images)
    k = torch.tensor(_LAPLACIAN, dtype=x4.dtype, device=x4.device)

    def part(x: torch.Tensor) -> torch.Tensor:
        lap = _f.filter2d(_grey(x, _REC601, "images"), k, border="reflect")
        return lap.flatten(1).var(dim=1, unbiased=False)

    return _out(torch.cat([part(x4[c]) for c in _chunks(x4)]), squeezed)


def _uniform1d(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """scipy.ndimage.uniform_filter1d window as an odd correlation kernel (even sizes included)."""
    r = n // 2
    k = torch.zeros(2 * r + 1, dtype=dtype, device=device)
    k[: n] = 1.0 / n  # scipy: window [i - n//2, i - n//2 + n - 1]
    return k


def blur_effect(images: torch.Tensor, h_size: int = 11, *, return_axes: bool = False) -> torch.Tensor:
    """The blur effect of Crete et al. (2007): 0 for a sharp image, towards 1 for a blurred one.

    The same definition and defaults as ``skimage.measure.blur_effect(image, h_size=11,
    channel_axis=..., reduce_func=np.max)``: RGB is converted to grey (``skimage.color.rgb2gray``
    weights 0.2125, 0.7154, 0.0721; uint8 is scaled to ``[0, 1]``), the image is re-blurred with a
    ``h_size`` moving average along each axis, and the metric per axis is the share of the Sobel
    gradient variation that the re-blur removes *not*: ``|M1 - M2| / M1`` with ``M1`` the sum of the
    absolute Sobel response and ``M2`` the sum of its decrease (``skimage`` borders: scipy
    ``"reflect"``, a 2-pixel margin left out).

    Reference: F. Crete, T. Dolmiere, P. Ladret, M. Nicolas, "The blur effect: perception and
    estimation with a new no-reference perceptual blur metric", Proc. SPIE 6492, Human Vision and
    Electronic Imaging XII, 64920I (2007), doi:10.1117/12.702790.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3, at least 4x4 pixels.
        h_size: size of the re-blurring moving average (default 11, as scikit-image).
        return_axes: if true, return the per-axis values ``(B, 2)``: column 0 along the rows axis
            (vertical blur, ``axis=0`` in scikit-image), column 1 along the columns (horizontal
            blur). Their difference shows the direction of a motion blur.

    Returns:
        ``(B,)`` (the maximum of the two axes, scikit-image's ``reduce_func=np.max``) or ``(B, 2)``;
        a leading batch dimension is dropped for 3-D input. A constant image gives 1 (no edge
        survives: maximally blurred), as in scikit-image.

    Example:
        >>> x = torch.rand(8, 3, 64, 64)
        >>> blur_effect(bk.gaussian_blur(x, 2.0)) > blur_effect(x)
        tensor([True, True, True, True, True, True, True, True])
    """
    x4, squeezed = _prep(images, finite=True)
    if isinstance(h_size, bool) or not isinstance(h_size, numbers.Integral) or h_size < 1:
        raise ValueError(f"h_size must be a positive integer (the re-blur window in pixels); got {h_size!r}")
    h_size = int(h_size)
    _check_min_size(x4, 4, "images", "blur_effect (a 2-pixel margin is left out)")
    _grey(x4[:1, :, :1, :1], _SKIMAGE, "images")  # channel check before any work
    scale = 1 / 255.0 if images.dtype == torch.uint8 else 1.0
    fused = _blur_effect_fused(x4, scale, h_size)
    if fused is not None:
        out = fused if return_axes else fused.amax(dim=1)
        return _out(out, squeezed)
    kx, ky = _blur_effect_kernels(h_size, x4.dtype, x4.device)
    if x4.requires_grad and torch.is_grad_enabled():  # differentiable, out of place, one chunk
        axes = _blur_effect_axes(x4, scale, kx, ky, None)
        return _out(axes if return_axes else axes.amax(dim=1), squeezed)
    chunks = _chunks(x4)
    n = chunks[0].stop - chunks[0].start
    H, W = x4.shape[-2:]
    buf = torch.empty(4, n, 1, H, W, dtype=x4.dtype, device=x4.device)  # reused by every chunk
    axes = torch.cat([_blur_effect_axes(x4[c], scale, kx, ky, buf) for c in chunks])
    out = axes if return_axes else axes.amax(dim=1)
    return _out(out, squeezed)


@lru_cache(maxsize=16)
def _blur_effect_taps(h_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(smooth, edge, both) float64 taps of the blur effect, built once per ``h_size``.

    ``skimage.filters.sobel(axis=a)`` is ``[1, 0, -1]`` along ``a`` times ``[1, 2, 1] / 4`` across;
    the re-blur is scipy's ``uniform_filter1d(h_size)``. Sobel after the re-blur is one filter whose
    taps along ``a`` (``both``) are the composition of the two (correlations compose by convolving
    the taps). Inside the 2-pixel margin that the metric keeps, it only reads real rows/columns of
    the re-blurred image, so it equals filtering twice with mirrored borders there.
    """
    box = _uniform1d(h_size, torch.float64, torch.device("cpu"))
    edge = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)  # correlation form, sign irrelevant
    smooth = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    both = F.conv1d(F.pad(edge, (box.numel() - 1, box.numel() - 1))[None, None], box.flip(0)[None, None])[0, 0]
    return smooth, edge, both


def _blur_effect_ratio(m1: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Crete's per-axis value from ``M1 = sum sharp`` and ``sum min(sharp, blur)`` (float64).

    scikit-image clamps both maps to >= eps (2.2e-16) first: a relative 1e-16 except where the
    Sobel response is 0 everywhere, where its value is exactly 1 (as here).
    """
    return torch.where(m1 > 0, kept / m1.clamp_min(_EPSILON), torch.ones_like(m1))


def _blur_effect_fused(x: torch.Tensor, scale: float, h_size: int) -> torch.Tensor | None:
    """Per-axis blur effect ``(B, 2)`` from the engine's fused compiled sums, or ``None`` (no compiled
    path: CPU float32 without gradient only)."""
    if x.requires_grad and torch.is_grad_enabled():
        return None
    smooth, edge, both = _blur_effect_taps(h_size)
    w = torch.tensor(_SKIMAGE if x.shape[1] == 3 else (1.0,), dtype=torch.float64) * scale
    sums = _f.blur_effect_sums(x, w, smooth, edge, both)
    if sums is None:
        return None
    return _blur_effect_ratio(sums[:, 0::2], sums[:, 1::2]).to(x.dtype)


def _blur_effect_kernels(h_size: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(kernel_x, kernel_y), each (4, k): Sobel along y of the image and of its y re-blur, then along x
    (the taps of :func:`_blur_effect_taps`, zero-padded to one length)."""
    smooth, edge, both = _blur_effect_taps(h_size)
    k = both.numel()
    pad3 = lambda t: F.pad(t, ((k - 3) // 2, (k - 3) // 2))  # noqa: E731
    kx = torch.stack([pad3(smooth), pad3(smooth), pad3(edge), both])
    ky = torch.stack([pad3(edge), both, pad3(smooth), pad3(smooth)])
    return kx.to(dtype=dtype, device=device), ky.to(dtype=dtype, device=device)


def _blur_effect_axes(x: torch.Tensor, scale: float, kx: torch.Tensor, ky: torch.Tensor,
                      buf: torch.Tensor | None) -> torch.Tensor:
    """Per-axis blur effect ``(B, 2)`` of a chunk (see :func:`blur_effect`); ``buf`` is scratch space
    (``None``: out-of-place arithmetic, differentiable)."""
    B, _, H, W = x.shape
    if buf is None:
        g = _grey(x, _SKIMAGE, "images") * scale
        stack = g.expand(4, *g.shape)
    else:
        stack = buf[:, :B]
        g = _grey(x, _SKIMAGE, "images", out=stack[0])
        if scale != 1.0:
            g.mul_(scale)
        stack[1:].copy_(g.expand(3, *g.shape))
    sob = _f.sepfilter2d(stack.reshape(4 * B, 1, H, W), kx.repeat_interleave(B, dim=0),
                         ky.repeat_interleave(B, dim=0), border="symmetric")
    sob = (sob.abs() if buf is None else sob.abs_()).view(2, 2, B, H, W)[..., 2:H - 1, 2:W - 1]  # axis, sharp/blur
    sharp, blur = sob[:, 0], sob[:, 1]
    # Crete: |M1 - M2| / M1 with M2 = sum max(0, sharp - blur), i.e. M1 - M2 = sum min(sharp, blur).
    m1 = sharp.sum(dim=(-2, -1)).double()
    kept = (torch.minimum(sharp, blur) if buf is None else torch.minimum(sharp, blur, out=blur))
    kept = kept.sum(dim=(-2, -1)).double()
    return _blur_effect_ratio(m1, kept).to(x.dtype).T.contiguous()


def high_frequency_ratio(images: torch.Tensor, cutoff: float = 0.1, *, window: bool = True) -> torch.Tensor:
    """Share of the grey image's spectral energy above a cut-off frequency.

    ``sum_{|f| > cutoff} |F(f)|^2 / sum_{f != 0} |F(f)|^2`` where ``F`` is the 2-D DFT of the grey
    image minus its mean, multiplied by a 2-D Hann window (``window=True``, so that the image borders
    add no spurious high frequencies), and ``|f| = sqrt(fx^2 + fy^2)`` is the radial frequency in
    cycles per pixel (Nyquist is 0.5). A Gaussian blur of sigma multiplies the power by
    ``exp(-4 pi^2 sigma^2 |f|^2)``, so the ratio falls fast with blur (the spectral
    blur measure family, e.g. Marichal, Ma & Zhang, "Blur determination in the compressed domain
    using DCT information", ICIP 1999; here on the DFT).

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3 (Rec. 601 grey).
        cutoff: radial frequency in cycles per pixel, ``0 < cutoff < 0.5`` (default 0.1, a fifth of
            the Nyquist frequency; sharp photographs give a few percent above it).
        window: apply a Hann window before the DFT (default true).

    Returns:
        ``(B,)`` in ``[0, 1]``; a constant image (no energy at all) gives 0.

    Example:
        >>> x = torch.rand(2, 1, 64, 64)
        >>> high_frequency_ratio(bk.gaussian_blur(x, 2.0)) < high_frequency_ratio(x)
        tensor([True, True])
    """
    x4, squeezed = _prep(images, finite=True)
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0 < float(cutoff) < 0.5:
        raise ValueError(f"cutoff must be a radial frequency in cycles per pixel with 0 < cutoff < 0.5; "
                         f"got {cutoff!r}")
    g = _grey(x4, _REC601, "images")[:, 0]
    H, W = g.shape[-2:]
    g = g - g.mean(dim=(-2, -1), keepdim=True)
    if window:
        g = g * (torch.hann_window(H, periodic=False, dtype=g.dtype, device=g.device)[:, None]
                 * torch.hann_window(W, periodic=False, dtype=g.dtype, device=g.device)[None, :])
    p = torch.fft.rfft2(g).abs().square()
    fy = torch.fft.fftfreq(H, dtype=g.dtype, device=g.device)[:, None]
    fx = torch.fft.rfftfreq(W, dtype=g.dtype, device=g.device)[None, :]
    # rfft2 keeps half of the spectrum: count the mirrored columns twice
    wcol = torch.full((fx.shape[1],), 2.0, dtype=g.dtype, device=g.device)
    wcol[0] = 1.0
    if W % 2 == 0:
        wcol[-1] = 1.0
    p = p * wcol
    p[:, 0, 0] = 0.0
    total = p.sum(dim=(-2, -1))
    high = (p * ((fx.square() + fy.square()) > float(cutoff) ** 2)).sum(dim=(-2, -1))
    ratio = torch.where(total > 0, high / total.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(total))
    return _out(ratio, squeezed)


def _widths_along_rows(g: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of Marziliano widths of the vertical edges of ``g`` (B, H, W), per image."""
    B, H, W = g.shape
    d = g[..., 1:] - g[..., :-1]  # d[j] = g[j + 1] - g[j], (B, H, W - 1)
    # horizontal gradient at pixel j (central, one-sided at the ends) and edge pixels: local maxima
    # of |gradient| along the row above threshold * the image's largest |gradient|
    grad = torch.zeros_like(g)
    grad[..., 1:-1] = (g[..., 2:] - g[..., :-2]) / 2
    grad[..., 0], grad[..., -1] = d[..., 0], d[..., -1]
    a = grad.abs()
    left = F.pad(a[..., :-1], (1, 0), value=-1.0)
    right = F.pad(a[..., 1:], (0, 1), value=-1.0)
    peak = a.flatten(1).amax(dim=1).view(B, 1, 1)
    edge = (a >= left) & (a > right) & (a > threshold * peak) & (a > 0)
    j = torch.arange(W, device=g.device)
    big = torch.full_like(j, W - 1)
    # For a rising edge the start is the nearest pixel on the left where the slope stops being
    # positive (a local minimum of the profile), the end the nearest on the right where it stops
    # (a local maximum); falling edges the same with signs swapped. Positions come from running
    # minima / maxima of marked indices.
    out_sum = torch.zeros(B, dtype=g.dtype, device=g.device)
    out_cnt = torch.zeros(B, dtype=g.dtype, device=g.device)
    for sign in (1.0, -1.0):
        stop = (sign * d) <= 0  # slope of the edge's sign has stopped between j and j + 1
        # end: first k >= j with stop[k] (pixel k is the extremum); else the last pixel
        mark_end = torch.where(F.pad(stop, (0, 1), value=True), j, big)
        end = torch.flip(torch.cummin(torch.flip(mark_end, [-1]), dim=-1).values, [-1])
        # start: last k <= j with stop[k - 1] (pixel k is the extremum); else the first pixel
        mark_start = torch.where(F.pad(stop, (1, 0), value=True), j, torch.zeros_like(j))
        start = torch.cummax(mark_start, dim=-1).values
        sel = edge & ((sign * grad) > 0)
        width = (end - start).to(g.dtype)
        out_sum = out_sum + (width * sel).sum(dim=(1, 2))
        out_cnt = out_cnt + sel.sum(dim=(1, 2)).to(g.dtype)
    return out_sum, out_cnt


def edge_width(images: torch.Tensor, *, threshold: float = 0.1, empty: float = 0.0) -> torch.Tensor:
    """Mean edge width in pixels, the perceptual blur metric of Marziliano et al. (2002).

    For every edge pixel (a local maximum of the gradient magnitude along the scan line, larger than
    ``threshold`` times the image's largest gradient) the width is the distance between the local
    extrema of the intensity profile on both sides of it (the start and end of the edge); the
    metric is the mean width over all edge pixels. Marziliano et al. measure vertical edges along
    rows; here horizontal edges along columns are measured too and both are pooled, so the value
    does not depend on the direction of the blur. A step edge has width 1; a Gaussian blur of sigma
    widens an isolated edge to roughly ``2.5 sigma`` or more.

    Reference: P. Marziliano, F. Dufaux, S. Winkler, T. Ebrahimi, "A no-reference perceptual blur
    metric", Proc. ICIP 2002, vol. 3, pp. 57-60.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3 (Rec. 601 grey), at least 3x3.
        threshold: edges weaker than this fraction of the strongest gradient are ignored.
        empty: value returned for an image without any edge (e.g. constant); default 0.

    Returns:
        ``(B,)`` mean width in pixels (larger is more blurred).

    Example:
        >>> x = torch.rand(2, 1, 64, 64)
        >>> edge_width(bk.gaussian_blur(x, 3.0)) > edge_width(x)
        tensor([True, True])
    """
    x4, squeezed = _prep(images, finite=True)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a number in [0, 1) (a fraction of the strongest gradient); "
                         f"got {threshold!r}")
    empty = _number(empty, "empty", "a finite number (the value for an image without edges)")
    _check_min_size(x4, 3, "images", "edge_width")
    def part(x: torch.Tensor) -> torch.Tensor:
        g = _grey(x, _REC601, "images")[:, 0]
        s1, c1 = _widths_along_rows(g, float(threshold))
        s2, c2 = _widths_along_rows(g.transpose(-1, -2), float(threshold))
        cnt = c1 + c2
        return torch.where(cnt > 0, (s1 + s2) / cnt.clamp_min(1), torch.full_like(cnt, float(empty)))

    return _out(torch.cat([part(x4[c]) for c in _chunks(x4)]), squeezed)


# ----------------------------------------------------------------------------- sigma estimation
_SIGMA_GRID = (0.02, 40.0, 400)  # model table: log-spaced true sigmas
_DERIV_SIGMA = 0.5  # Gaussian pre-smoothing of the gradient (noise / quantisation)


def _gradient_magnitude(g: torch.Tensor, smooth: float) -> torch.Tensor:
    if smooth > 0:
        g = _f.gaussian_blur(g, smooth, truncate=4.0)
    k = torch.zeros(3, 3, dtype=g.dtype, device=g.device)
    k[1, 0], k[1, 2] = -0.5, 0.5
    gx = _f.filter2d(g, k)
    gy = _f.filter2d(g, k.T.contiguous())
    return torch.sqrt(gx.square() + gy.square())


_MODEL_FFT = 1024  # > the longest sigma kernel (2 * ceil(4 * 40) + 1) + re-blur + smoothing supports
_MAX_REBLUR = 8.0


@lru_cache(maxsize=4)
def _model_base(smooth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas, spectra (3 phases, n, F)) of the differenced anti-aliased step, smoothed and blurred."""
    lo, hi, n = _SIGMA_GRID
    sig = torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64)
    k_sig = _k.gaussian1d(sig, truncate=4.0, dtype=torch.float64)
    k_sm = _k.gaussian1d(float(smooth), truncate=4.0, dtype=torch.float64)
    N = _MODEL_FFT
    pos = torch.arange(-4, 5, dtype=torch.float64)
    spectra = []
    for phase in (0.0, 0.25, 0.5):
        step = (pos + 0.5 - phase).clamp(0.0, 1.0)
        pulse = torch.zeros(9, dtype=torch.float64)
        pulse[1:-1] = (step[2:] - step[:-2]) / 2  # central difference of the step
        spectra.append((torch.fft.rfft(pulse, N) * torch.fft.rfft(k_sm[0], N))[None] * torch.fft.rfft(k_sig, N))
    return sig, torch.stack(spectra)


@lru_cache(maxsize=64)
def _reblur_model(sa: float, smooth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ratio of an ideal step edge blurred by sigma, re-blurred by ``sa``: (sigmas, ratios).

    The step is anti-aliased at three sub-pixel phases and passed through exactly the sampled
    kernels that :func:`estimate_sigma` applies (``bk.kernels.gaussian1d`` with ``truncate=4``,
    pre-smoothing, central differences), so the inversion has no free parameter fitted to any
    photograph. All operators are linear and shift-invariant across the edge, so the gradient
    profile is the differenced step convolved with the kernels (exact, by FFT of compact supports).
    """
    sig, base = _model_base(smooth)
    k_sa = _k.gaussian1d(float(sa), truncate=4.0, dtype=torch.float64)
    d1 = torch.fft.irfft(base, _MODEL_FFT).abs().amax(dim=-1)
    d2 = torch.fft.irfft(base * torch.fft.rfft(k_sa[0], _MODEL_FFT), _MODEL_FFT).abs().amax(dim=-1)
    r = (d1 / d2).mean(dim=0)
    r = torch.cummin(r, dim=0).values  # the model decreases with sigma; guard against float ties
    return sig, r


def _invert_model(r: torch.Tensor, sa: float, smooth: float) -> torch.Tensor:
    """Sigma whose model ratio is ``r`` (linear interpolation in the table; clamped to its ends)."""
    sig, rt = _reblur_model(sa, smooth)
    rt, sig = rt.flip(0).to(r.device), sig.flip(0).to(r.device)  # ascending ratio
    rr = r.double().clamp(float(rt[0]), float(rt[-1]))
    i = torch.searchsorted(rt, rr).clamp(1, len(rt) - 1)
    t = (rr - rt[i - 1]) / (rt[i] - rt[i - 1]).clamp_min(1e-300)
    return sig[i - 1] + t * (sig[i] - sig[i - 1])


def _masked_quantile(values: torch.Tensor, mask: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row ``q``-quantile of ``values[mask]`` (B, N) -> (B,), linear interpolation as
    ``torch.nanquantile``, without its 16M-element limit; NaN for a row without any value."""
    v = torch.where(mask, values, torch.full_like(values, float("inf"))).sort(dim=1).values
    n = mask.sum(dim=1)
    pos = (q * (n - 1).clamp_min(0).to(torch.float64))
    lo = pos.floor().long()
    hi = pos.ceil().long()
    a = v.gather(1, lo[:, None])[:, 0]
    b = v.gather(1, hi[:, None])[:, 0]
    out = a + (pos - lo).to(v.dtype) * (b - a)
    return torch.where(n > 0, out, torch.full_like(out, float("nan")))


def _sigma_pass(g: torch.Tensor, sa: torch.Tensor, smooth: float, fraction: float) -> torch.Tensor:
    """One re-blur pass for a batch of grey images (B, 1, H, W) with per-image re-blur ``sa`` (B,)."""
    B, _, H, W = g.shape
    m = _gradient_magnitude(g, smooth)
    mb = _gradient_magnitude(_f.gaussian_blur(g, sa, truncate=4.0), smooth)
    # edge points: 3x3 local maxima of the gradient magnitude, away from the border
    nms = (m >= F.max_pool2d(m, 3, 1, 1)) & (m > 0)
    margin = min(8, (min(H, W) - 1) // 4)
    inner = torch.zeros_like(nms)
    inner[..., margin:H - margin, margin:W - margin] = True
    nms = (nms & inner).flatten(1)
    mf, mbf = m.flatten(1), mb.flatten(1)
    # keep the edge points whose gradient is strongest AFTER the re-blur: wide, isolated edges,
    # not fine texture or thin lines (whose gradient a re-blur cancels)
    thr = _masked_quantile(mbf, nms, 1.0 - fraction)
    sel = nms & (mbf >= thr[:, None])
    ratio = mf / mbf.clamp_min(torch.finfo(m.dtype).tiny)
    # a ratio above the sharpest step edge's is no single edge (a thin line, fine texture): leave it out
    rmax = torch.stack([_reblur_model(float(v), smooth)[1][0] for v in sa.tolist()]).to(ratio)
    sel = sel & (ratio <= rmax[:, None] * 1.02)
    ratio = torch.where(sel, ratio, torch.full_like(mf, float("nan")))
    r = torch.nanmedian(ratio, dim=1).values
    valid = torch.isfinite(r)
    r = torch.where(valid, r, torch.ones_like(r))
    out = torch.empty(B, dtype=torch.float64, device=g.device)
    for value in torch.unique(sa).tolist():  # one model table per distinct re-blur (a handful)
        idx = (sa == value)
        out[idx] = _invert_model(r[idx], float(value), smooth)
    return torch.where(valid, out, torch.full_like(out, float("nan"))).to(g.dtype)


def estimate_sigma(images: torch.Tensor, *, iterations: int = 2, fraction: float = 0.01) -> torch.Tensor:
    """Estimate the Gaussian sigma (pixels) an image was blurred with, without a reference.

    The re-blur gradient ratio of Hu & de Haan (2006): re-blurring an edge that is already blurred
    by ``sigma`` with a known Gaussian ``sa`` lowers its gradient maximum by
    ``r = sqrt(sigma^2 + sa^2) / sigma`` (continuous ideal step), so the ratio at edges gives
    ``sigma = sa / sqrt(r^2 - 1)``. Here:

    1. Grey image (Rec. 601); gradient magnitude by central differences after a light Gaussian
       pre-smoothing (0.5 px, against noise and 8-bit quantisation).
    2. Edge points: 3x3 local maxima of the gradient; of these, the ``fraction`` (1%) with the
       strongest gradient *after* re-blurring (isolated, wide edges; fine texture and thin lines,
       which a re-blur cancels, are left out), and of these the ones whose ratio a single step edge
       can produce (at most the sharpest step's ratio, +2%). ``r`` is the median ratio over them.
    3. ``r`` is inverted through the exact discrete model: an anti-aliased step edge passed
       through the same sampled operators, tabulated for sigma 0.02-40 px (no parameter fitted to
       photographs). Below about 0.3 px the model saturates (a sampled step is as sharp as it
       gets): such images read as 0.1-0.3 px (0 if no edge point is left).
    4. ``iterations`` refinements re-blur with ``sa = clamp(estimate, 1, 4)`` (rounded to 0.25 px),
       where the ratio is most sensitive (a fixed small ``sa`` gives ratios near 1 for large
       sigma, swamped by quantisation).

    A sharp photograph has some blur of its own (optics, demosaicing), so a photograph blurred with
    sigma reads about ``sqrt(sigma^2 + s0^2)`` with ``s0`` typically 0.3-0.8 px: the relative error is
    largest for small sigma. Measured accuracy on the scikit-image photographs: docs/measure.md.

    Reference: H. Hu, G. de Haan, "Low cost robust blur estimator", Proc. ICIP 2006, pp. 617-620.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3, at least 16x16; any range or uint8.
        iterations: number of refinement passes (``0``: one pass with ``sa = 1``).
        fraction: share of the edge points used, ``0 < fraction <= 1``.

    Returns:
        ``(B,)`` estimated sigma in pixels, float32 (float64 for float64 input). An image without any
        usable edge (e.g. constant) gives 0.

    Example:
        >>> from skimage import data
        >>> x = torch.from_numpy(data.camera()).float().div(255)[None, None]
        >>> estimate_sigma(bk.gaussian_blur(x, 3.0))   # about 3
    """
    x4, squeezed = _prep(images, finite=True)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer; got {iterations!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1]; got {fraction!r}")
    _check_min_size(x4, 16, "images", "estimate_sigma")
    g = _grey(x4, _REC601, "images").detach()
    flat = g.flatten(1)
    constant = (flat.amax(dim=1) - flat.amin(dim=1)) <= 0
    B = g.shape[0]
    sa = torch.ones(B, dtype=g.dtype, device=g.device)
    s = _sigma_pass(g, sa, _DERIV_SIGMA, float(fraction))
    for _ in range(iterations):
        sa = (torch.nan_to_num(s, nan=1.0).clamp(1.0, 4.0) * 4).round() / 4
        s = _sigma_pass(g, sa, _DERIV_SIGMA, float(fraction))
    s = torch.where(constant | ~torch.isfinite(s), torch.zeros_like(s), s)
    return _out(s, squeezed)


# ---------------------------------------------------------------------------- motion estimation
def _log_cepstrum(g: torch.Tensor) -> torch.Tensor:
    """Centred real cepstrum ``IDFT(log |DFT(hann * (g - mean))|^2)`` of grey images (B, H, W)."""
    H, W = g.shape[-2:]
    g = g - g.mean(dim=(-2, -1), keepdim=True)
    g = g * (torch.hann_window(H, periodic=False, dtype=g.dtype, device=g.device)[:, None]
             * torch.hann_window(W, periodic=False, dtype=g.dtype, device=g.device)[None, :])
    p = torch.fft.fft2(g).abs().square()
    # a floor relative to the mean power keeps log() finite and damps the (noisy) deepest zeros
    floor = 1e-3 * p.mean(dim=(-2, -1), keepdim=True) + torch.finfo(g.dtype).tiny
    c = torch.fft.ifft2(torch.log(p + floor)).real
    return torch.fft.fftshift(c, dim=(-2, -1))


def estimate_motion(images: torch.Tensor, *, min_length: float = 3.0, max_length: float | None = None,
                    angle_step: float = 0.5, return_score: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimate the length (px) and angle (degrees) of a linear motion blur, without a reference.

    A uniform motion blur of length ``L`` along direction ``theta`` multiplies the spectrum by a sinc
    whose zeros are lines perpendicular to ``theta``, ``1 / L`` cycles per pixel apart. In the
    cepstrum (the inverse DFT of the log power spectrum; Cannon 1976) this periodic pattern becomes
    a pair of sharp negative peaks at ``+-L (cos theta, -sin theta)`` pixels from the origin, while
    the image's own (smooth) log spectrum stays near the origin. The estimator:

    1. grey image (Rec. 601), mean removed, 2-D Hann window (no border artefacts along the axes);
    2. log power spectrum with a floor of 1e-3 times the mean power, inverse DFT (real cepstrum);
    3. the cepstrum sampled bilinearly on a polar grid (``angle_step`` degrees, 0.25 px in radius,
       radii ``min_length .. max_length``); the most negative sample gives both the angle (the
       direction of the peak) and the length (its distance from the origin).

    Angles follow :func:`blurkit.motion_blur`: counter-clockwise as displayed, in ``[0, 180)`` (a
    line has no sign). Measured accuracy on the scikit-image photographs: docs/measure.md.

    References: M. Cannon, "Blind deconvolution of spatially invariant image blurs with phase",
    IEEE Trans. ASSP 24(1):58-63, 1976; R. Rom, "On the cepstrum of two-dimensional functions",
    IEEE Trans. Information Theory 21(2):214-217, 1975.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``, ``C`` 1 or 3, at least 32x32; any range or uint8.
        min_length, max_length: the search range in pixels (default ``max_length``: a third of the
            smaller image side). Blur shorter than about 3 px is not measurable this way.
        angle_step: angular resolution of the search in degrees.
        return_score: also return the depth of the cepstral peak (the negated cepstrum value, larger
            is more certain; measured on the scikit-image camera man: sharp 0.019, Gaussian-blurred
            0.007-0.012, motion-blurred by 5-21 px 0.06-0.07).

    Returns:
        ``(length, angle)``, each ``(B,)`` (0-d for one image), plus ``score`` ``(B,)`` if asked. A
        constant image gives length 0 and angle 0.

    Example:
        >>> x = torch.rand(2, 1, 128, 128)
        >>> length, angle = estimate_motion(bk.motion_blur(x, 15.0, 30.0))   # about 15 px, 30 deg
    """
    x4, squeezed = _prep(images, finite=True)
    _check_min_size(x4, 32, "images", "estimate_motion")
    H, W = x4.shape[-2:]
    lo = _number(min_length, "min_length", "a finite number of pixels >= 1", low=1.0)
    hi = _number(max_length, "max_length", "a finite number of pixels or None") if max_length is not None \
        else min(H, W) / 3
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 1 or hi <= lo or hi > min(H, W) / 2:
        raise ValueError(f"need 1 <= min_length < max_length <= {min(H, W) / 2:g} (half the smaller image side); "
                         f"got min_length={min_length!r}, max_length={max_length!r}")
    if isinstance(angle_step, bool) or not isinstance(angle_step, (int, float)) or not 0 < angle_step <= 10:
        raise ValueError(f"angle_step must be a number of degrees in (0, 10]; got {angle_step!r}")
    g = _grey(x4, _REC601, "images")[:, 0].detach()
    B = g.shape[0]
    c = _log_cepstrum(g)
    dt, dev = g.dtype, g.device
    th = torch.arange(0.0, 180.0, float(angle_step), dtype=dt, device=dev)
    rr = torch.arange(lo, hi + 1e-9, 0.25, dtype=dt, device=dev)
    t, r = torch.meshgrid(torch.deg2rad(th), rr, indexing="ij")
    px = W // 2 + r * torch.cos(t)  # fftshift puts the origin at (H // 2, W // 2)
    py = H // 2 - r * torch.sin(t)  # rows grow downwards: counter-clockwise as displayed
    grid = torch.stack([px / (W - 1) * 2 - 1, py / (H - 1) * 2 - 1], dim=-1)
    samples = F.grid_sample(c[:, None], grid[None].expand(B, -1, -1, -1), mode="bilinear",
                            align_corners=True)[:, 0].flatten(1)
    best = samples.argmin(dim=1)
    length = rr[best % rr.numel()]
    angle = th[best // rr.numel()]
    score = -samples.gather(1, best[:, None])[:, 0]
    flat = g.flatten(1)
    constant = (flat.amax(dim=1) - flat.amin(dim=1)) <= 0
    zero = torch.zeros_like(length)
    length, angle = torch.where(constant, zero, length), torch.where(constant, zero, angle)
    score = torch.where(constant, zero, score)
    if return_score:
        return _out(length, squeezed), _out(angle, squeezed), _out(score, squeezed)
    return _out(length, squeezed), _out(angle, squeezed)


# ------------------------------------------------------------------------------ full reference
def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image: ``10 log10(data_range^2 / MSE)``.

    The MSE is taken over all channels and pixels of each image (as
    ``skimage.metrics.peak_signal_noise_ratio`` on one image).

    Args:
        x, y: ``(B, C, H, W)`` or ``(C, H, W)``, the same shape; any dtype the engine accepts.
        data_range: span of possible values (default 255 for uint8, 1.0 for float images).

    Returns:
        ``(B,)`` in dB (float32; float64 if an input is float64). Identical images give ``inf``
        (as scikit-image); clamp with ``.clamp(max=...)`` if a finite cap is wanted.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> psnr(x, bk.gaussian_blur(x, 1.0))   # two values in dB
    """
    a, b, squeezed = _pair(x, y)  # validates x and y first
    R = _data_range(data_range, x, y)
    mse = torch.cat([(a[c] - b[c]).square_().flatten(1).mean(dim=1) for c in _chunks(a)])
    val = 10 * torch.log10(R * R / mse)  # mse 0 -> inf
    return _out(val, squeezed)


def _ssim_window(dtype: torch.dtype, device: torch.device, sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    r = size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _ssim_parts(a: torch.Tensor, b: torch.Tensor, R: float, k1: float, k2: float,
                win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and mean contrast-structure term, cropped by the window radius: (B, C) each."""
    B = a.shape[0]
    grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if grad:  # out-of-place: autograd cannot go through out= or overwritten intermediates
        stack = torch.cat([a, b, a * a, b * b, a * b])
    else:  # one buffer, updated in place (no batch-sized temporaries)
        stack = torch.empty((5 * B, *a.shape[1:]), dtype=a.dtype, device=a.device)
        stack[:B], stack[B:2 * B] = a, b
        torch.mul(a, a, out=stack[2 * B:3 * B])
        torch.mul(b, b, out=stack[3 * B:4 * B])
        torch.mul(a, b, out=stack[4 * B:])
    f = _f.sepfilter2d(stack, win, win, border="symmetric")  # skimage/scipy mode "reflect"
    p = win.shape[0] // 2
    H, W = a.shape[-2:]
    f = f[..., p:H - p, p:W - p]  # only the kept pixels (skimage crops the window radius)
    ux, uy, uxx, uyy, uxy = f.split(B)
    c1, c2 = (k1 * R) ** 2, (k2 * R) ** 2
    if grad:  # the same arithmetic in the same order as the in-place lines below
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        cs = (vxy * 2 + c2) / (vx + vy + c2)
        lum = ((ux * uy) * 2 + c1) / (ux.square() + uy.square() + c1)
        return (lum * cs).mean(dim=(-2, -1)), cs.mean(dim=(-2, -1))
    vx = uxx.sub_(ux * ux)
    vy = uyy.sub_(uy * uy)
    vxy = uxy.sub_(ux * uy)
    cs = vxy.mul_(2).add_(c2).div_(vx.add_(vy).add_(c2))  # (2 vxy + c2) / (vx + vy + c2)
    cs_mean = cs.mean(dim=(-2, -1))
    lum = (ux * uy).mul_(2).add_(c1).div_(ux.square_().add_(uy.square_()).add_(c1))
    s_mean = lum.mul_(cs).mean(dim=(-2, -1))
    return s_mean, cs_mean


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None, *, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), averaged over pixels and channels, per image.

    Gaussian window of 11 taps, sigma 1.5 (truncate 3.5), population covariances, a 5-pixel margin
    left out, mirror borders: the same as ``skimage.metrics.structural_similarity(x, y,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=..., channel_axis=0)``.

    Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
    error visibility to structural similarity", IEEE Trans. Image Processing 13(4):600-612, 2004.

    Args:
        x, y: ``(B, C, H, W)`` or ``(C, H, W)``, the same shape, at least 11x11.
        data_range: span of possible values (default 255 for uint8, 1.0 for float images).
        k1, k2: the stabilising constants of the paper.

    Returns:
        ``(B,)`` in ``[-1, 1]``; identical images give 1 (also constant ones).

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    a, b, squeezed = _pair(x, y)  # validates x and y first
    R = _data_range(data_range, x, y)
    k1 = _number(k1, "k1", "a finite number > 0 (0.01 in the paper)", low=0.0, low_open=True)
    k2 = _number(k2, "k2", "a finite number > 0 (0.03 in the paper)", low=0.0, low_open=True)
    _check_min_size(a, 11, "x and y", "ssim (11x11 window)")
    win = _ssim_window(a.dtype, a.device)
    s = torch.cat([_ssim_parts(a[c], b[c], R, k1, k2, win)[0] for c in _chunks(a)])
    return _out(s.mean(dim=1), squeezed)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None, *,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale structural similarity (Wang, Simoncelli & Bovik 2003), per image.

    ``prod_j cs_j^w_j * l_M^w_M``: the contrast-structure term at each of ``M`` scales (the image
    halved by 2x2 averaging between scales) and the luminance term at the coarsest, each with the
    same Gaussian window as :func:`ssim`; negative terms are clamped to 0 (as the common
    implementations), per channel, then averaged over channels.

    Reference: Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multi-scale structural similarity for image
    quality assessment", Proc. 37th Asilomar Conference on Signals, Systems and Computers, 2003
    (weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333).

    Args:
        x, y: ``(B, C, H, W)`` or ``(C, H, W)``, the same shape, at least ``11 * 2**(M-1)`` pixels a
            side (176 for the 5 default scales).
        data_range: as :func:`ssim`.
        weights: one exponent per scale (fewer scales for small images).

    Returns:
        ``(B,)`` in ``[0, 1]``; identical images give 1.

    Example:
        >>> x = torch.rand(2, 1, 192, 192)
        >>> ms_ssim(x, bk.gaussian_blur(x, 2.0)) < 1
        tensor([True, True])
    """
    a, b, squeezed = _pair(x, y)  # validates x and y first
    R = _data_range(data_range, x, y)
    what = "a non-empty sequence of non-negative numbers, one per scale, not all 0"
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (tuple, list, torch.Tensor)):
        raise ValueError(f"weights must be {what}; got {weights!r}")
    w = [_number(v, "weights", what, low=0.0) for v in (weights.tolist() if isinstance(weights, torch.Tensor)
                                                        else weights)]
    if not w or sum(w) <= 0:
        raise ValueError(f"weights must be {what}; got {weights!r}")
    need = 11 * 2 ** (len(w) - 1)
    _check_min_size(a, need, "x and y", f"ms_ssim with {len(w)} scales (use fewer weights for small images)")
    win = _ssim_window(a.dtype, a.device)
    total = torch.ones(a.shape[:2], dtype=a.dtype, device=a.device)
    for j, wj in enumerate(w):
        s, cs = _ssim_parts(a, b, R, 0.01, 0.03, win)
        term = s if j == len(w) - 1 else cs
        total = total * term.clamp_min(0.0) ** wj
        if j < len(w) - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return _out(total.mean(dim=1), squeezed)


def gmsd(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None, *, c: float = 170.0) -> torch.Tensor:
    """Gradient magnitude similarity deviation (Xue, Zhang, Mou & Bovik 2014), per image.

    As the authors' MATLAB code: grey images (RGB with MATLAB ``rgb2gray`` weights) in 0-255 units
    (``data_range`` is mapped to 255), 2x2 average and 2x downsampling, Prewitt gradients
    ``[1 0 -1; 1 0 -1; 1 0 -1] / 3`` with zero borders, the similarity map
    ``(2 m1 m2 + c) / (m1^2 + m2^2 + c)`` with ``c = 170`` (0-255 units; 0.0026 in ``[0, 1]`` units),
    and its standard deviation (``std2``, N - 1).

    Reference: W. Xue, L. Zhang, X. Mou, A. C. Bovik, "Gradient magnitude similarity deviation: a
    highly efficient perceptual image quality index", IEEE Trans. Image Processing 23(2):684-695, 2014.

    Args:
        x, y: reference and distorted, ``(B, C, H, W)`` or ``(C, H, W)``, the same shape, ``C`` 1 or 3,
            at least 4x4.
        data_range: span of possible values (default 255 for uint8, 1.0 for float images).
        c: the stabilising constant in 0-255 units (the paper's 170).

    Returns:
        ``(B,)``, 0 for identical images, larger is worse (a standard deviation of similarities in
        ``[0, 1]``: at most 0.5; strong distortions of photographs give about 0.2-0.35).

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> gmsd(x, x)
        tensor([0., 0.])
    """
    a, b, squeezed = _pair(x, y)  # validates x and y first
    R = _data_range(data_range, x, y)
    c = _number(c, "c", "a finite number > 0 (170 in 0-255 units, as the paper)", low=0.0, low_open=True)
    _check_min_size(a, 4, "x and y", "gmsd")
    B = a.shape[0]
    g = _grey(torch.cat([a, b]), _MATLAB, "x and y") * (255.0 / R)
    H, W = g.shape[-2:]
    g = F.pad(g, (0, W % 2, 0, H % 2))  # MATLAB conv2 'same' with a 2x2 kernel: zeros beyond the edge
    g = F.avg_pool2d(g, 2)
    k = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=g.dtype, device=g.device) / 3
    gx = _f.filter2d(g, k, border="constant", value=0.0)
    gy = _f.filter2d(g, k.T.contiguous(), border="constant", value=0.0)
    m = torch.sqrt(gx.square() + gy.square())
    m1, m2 = m[:B], m[B:]
    q = (2 * m1 * m2 + c) / (m1.square() + m2.square() + c)
    return _out(q.flatten(1).std(dim=1), squeezed)


def blursim(x: torch.Tensor, y: torch.Tensor, alpha: float | torch.Tensor = 0.8, **kwargs: object) -> torch.Tensor:
    """BlurSim distance per image, ``(1 - alpha) * spectral + alpha * edge`` term: :func:`blurkit.losses.blursim`.

    A thin wrapper returning the ``(B,)`` values (``reduction="none"``); other keyword arguments go
    to :func:`blurkit.losses.blursim`. Reference: the BlurSim method
    (github.com/amirhossein-razlighi/BlurSim) as implemented by blurkit.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> blursim(x, bk.gaussian_blur(x, 2.0))   # two values in [0, 1]
    """
    from . import losses  # imported here: measure works without the losses module

    kwargs.setdefault("reduction", "none")
    a, b, _ = _pair(x, y)  # uint8 as its 0-255 values (the distance does not depend on the scale)
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        a, b = a[0], b[0]
    return losses.blursim(a, b, alpha, **kwargs)  # type: ignore[arg-type]
