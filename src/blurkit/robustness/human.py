"""Comparison with human observers: the Geirhos et al. (2018) low-pass protocol and shape bias.

Geirhos, Temme, Rauber, Schütt, Bethge & Wichmann, "Generalisation in humans and deep neural
networks", NeurIPS 2018 (low-pass experiment: greyscale images, Gaussian low-pass filter with sigma
in px at 224 px, the border filled with the constant 0.4423 so contrast is preserved; 16 entry-level
categories). Shape bias: Geirhos et al., "ImageNet-trained CNNs are biased towards texture", ICLR
2019 (cue-conflict images; an ImageNet model's 16-class decision averages the softmax probabilities
of the ImageNet classes of each category, as in bethgelab/model-vs-human).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from . import _common as _c
from .curves import AccuracyCurve, accuracy_curve

__all__ = [
    "CATEGORIES_16",
    "IMAGENET_16_CLASS_INDICES",
    "GEIRHOS_2018_LOWPASS",
    "GREY_WEIGHTS",
    "LOWPASS_BORDER_VALUE",
    "SixteenClassHead",
    "imagenet_to_16",
    "lowpass_evaluation",
    "plot_lowpass",
    "shape_bias",
]

LOWPASS_BORDER_VALUE = 0.4423

# The 16 categories in the sorted order used by model-vs-human (class index = position).
CATEGORIES_16 = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock",
                 "dog", "elephant", "keyboard", "knife", "oven", "truck")

# ImageNet-1k class indices per category (bethgelab/model-vs-human, helper/human_categories.py).
IMAGENET_16_CLASS_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89, 90, 91, 92, 93,
             94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135, 136, 137, 138, 139, 140, 141, 142,
             143, 144, 145),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171,
            172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
            193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 205, 206, 207, 208, 209, 210, 211, 212, 213,
            214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234,
            235, 236, 237, 238, 239, 240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256,
            257, 259, 261, 262, 263, 265, 266, 267, 268),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}

# Published 16-class accuracies in the low-pass experiment (blurkit docs/REFERENCE.md).
GEIRHOS_2018_LOWPASS: dict[str, Any] = {
    "sigmas": [0.0, 3.0, 5.0, 10.0],
    "human": [0.859, 0.718, 0.583, 0.312],
    "resnet50": [0.966, 0.613, 0.320, 0.135],
    "chance": 1.0 / 16.0,
    "source": "Geirhos et al. 2018, NeurIPS, low-pass experiment (16 classes, greyscale, sigma px at 224)",
}


def _mapping(mapping: Mapping[str, Sequence[int]] | None) -> tuple[tuple[str, ...], list[torch.Tensor]]:
    m = IMAGENET_16_CLASS_INDICES if mapping is None else mapping
    if not isinstance(m, Mapping) or not m:
        raise TypeError(f"mapping must be a dict category -> ImageNet class indices; got {mapping!r}")
    names = tuple(m)
    idx = []
    for k in names:
        vals = m[k].tolist() if isinstance(m[k], torch.Tensor) else m[k]
        if (isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or not vals
                or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0 for i in vals)):
            raise ValueError(f"mapping[{k!r}] must be a non-empty list of ImageNet class indices (integers "
                             f">= 0); got {vals!r}")
        v = torch.as_tensor(list(vals), dtype=torch.long)
        idx.append(v)
    return names, idx


def imagenet_to_16(probabilities: torch.Tensor, mapping: Mapping[str, Sequence[int]] | None = None
                   ) -> torch.Tensor:
    """Average ImageNet class probabilities within each category -> ``(N, 16)``.

    Args:
        probabilities: ``(N, 1000)`` softmax probabilities of an ImageNet classifier.
        mapping: ``{category: [ImageNet indices]}`` (default :data:`IMAGENET_16_CLASS_INDICES`);
            the output columns follow its order (default :data:`CATEGORIES_16`).

    Returns:
        ``(N, len(mapping))`` mean probability per category (not renormalised).
    """
    if not isinstance(probabilities, torch.Tensor) or probabilities.dim() != 2:
        raise ValueError(f"probabilities must be a tensor (N, classes); got {probabilities!r}")
    _, idx = _mapping(mapping)
    top = max(int(i.max()) for i in idx)
    if probabilities.shape[1] <= top:
        raise ValueError(f"probabilities has {probabilities.shape[1]} classes but the mapping uses index {top}")
    return torch.stack([probabilities.index_select(1, i.to(probabilities.device)).mean(1) for i in idx], dim=1)


class SixteenClassHead(nn.Module):
    """Wrap an ImageNet classifier so it outputs 16-class scores (log of the mean probabilities)."""

    def __init__(self, model: nn.Module, mapping: Mapping[str, Sequence[int]] | None = None) -> None:
        super().__init__()
        self.model = model
        self.mapping = mapping

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.model(x).float(), dim=1)
        return torch.log(imagenet_to_16(p, self.mapping).clamp_min(1e-30))


# skimage.color.rgb2gray (ITU-R BT.709 luma), which the experiment's code used (rgb2grey)
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3 or 1, H, W)`` float images in [0, 1] -> ``(B, 1, H, W)`` grey (as ``skimage.color.rgb2gray``)."""
    if x.shape[1] == 3:
        w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device)
        return (x * w[None, :, None, None]).sum(1, keepdim=True)
    if x.shape[1] == 1:
        return x
    raise ValueError(f"images must have 1 or 3 channels for the greyscale protocol; got {x.shape[1]} "
                     f"(images of shape {tuple(x.shape)}, expected (B, C, H, W))")


class _GreyData:
    """``data`` as validated float ``(grey images, labels)`` batches (uint8 scaled to [0, 1] first)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        n = _c.count_batches(self.data)
        if n is None:
            raise TypeError("data has no length")
        return n

    def __iter__(self):
        for x, y in _c.pairs(self.data):
            yield _grey(x), y


def lowpass_evaluation(
    model: nn.Module,
    data: Any,
    sigmas: Sequence[float] = (0, 1, 3, 5, 7, 10, 15, 40),
    *,
    sixteen_class: bool = True,
    mapping: Mapping[str, Sequence[int]] | None = None,
    channels: int = 3,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    truncate: float = 4.0,
    **kwargs: Any,
) -> AccuracyCurve:
    """The Geirhos et al. (2018) low-pass experiment as a ready :func:`accuracy_curve`.

    Images are converted to greyscale as the experiment's code did (``skimage.color.rgb2gray``,
    weights :data:`GREY_WEIGHTS`), low-pass filtered with a Gaussian of ``sigma`` px (at 224 px;
    ``truncate`` 4 as ``scipy.ndimage.gaussian_filter``) with the constant border
    :data:`LOWPASS_BORDER_VALUE` (0.4423), repeated to ``channels`` channels, passed through
    ``transform`` (e.g. ImageNet normalisation) and classified. With ``sixteen_class`` the model's
    ImageNet probabilities are averaged per category (:class:`SixteenClassHead`), and labels must be
    16-class indices in :data:`CATEGORIES_16` order.

    Args:
        model: ImageNet classifier (or a 16-class one with ``sixteen_class=False``).
        data: iterable of ``(images, labels)`` batches, or one such tuple; images
            ``(B, 3 or 1, 224, 224)``, float in ``[0, 1]`` or uint8.
        sigmas: low-pass sigmas in px (default: the experiment's levels).
        sixteen_class, mapping: the 16-class decision and its ImageNet index mapping.
        channels: channels the model expects (the grey image is repeated).
        transform: after the blur and channel repeat, before the model.
        truncate: Gaussian truncation (radius ``ceil(truncate sigma)``).
        **kwargs: passed to :func:`accuracy_curve` (``device``, ``amp``, ``n_bootstrap``, ...).

    Returns:
        :class:`AccuracyCurve` (compare with :data:`GEIRHOS_2018_LOWPASS`, see :func:`plot_lowpass`).
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer (the channels the model expects); got {channels!r}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a callable (images -> images) or None; got {transform!r}")
    if sixteen_class:
        _mapping(mapping)  # validated before any image is evaluated
    net: nn.Module = SixteenClassHead(model, mapping) if sixteen_class else model

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, channels, -1, -1) if x.shape[1] == 1 else x
        return transform(x) if transform is not None else x

    blur_kwargs = {"border": "constant", "value": LOWPASS_BORDER_VALUE, "truncate": truncate}
    kwargs.setdefault("k", 5)
    return accuracy_curve(net, _GreyData(data), sigmas, "gaussian", transform=prep, blur_kwargs=blur_kwargs,
                          **kwargs)


def plot_lowpass(curves: Mapping[str, AccuracyCurve] | AccuracyCurve | None = None, ax=None,
                 reference: bool = True):
    """Plot low-pass curves with the published human (and ResNet-50) accuracies; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    ref = GEIRHOS_2018_LOWPASS
    if reference:
        ax.plot(ref["sigmas"], ref["human"], "k-s", lw=2, label="humans (Geirhos et al. 2018)")
        ax.plot(ref["sigmas"], ref["resnet50"], "k--^", label="ResNet-50 (Geirhos et al. 2018)")
        ax.axhline(ref["chance"], color="grey", lw=0.8, ls=":", label="chance")
    if isinstance(curves, AccuracyCurve):
        curves = {curves.model: curves}
    for name, cv in (curves or {}).items():
        cv.plot(ax=ax, label=name)
    ax.set_xlabel("low-pass sigma (px at 224 px)")
    ax.set_ylabel("16-class accuracy")
    ax.legend()
    return ax


def _labels(v: object, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be integer class indices; got {v!r}") from None
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be integer class indices; got {t.dtype} values")
    return t.long().flatten()


def shape_bias(
    scores: torch.Tensor,
    shape_labels: torch.Tensor | Sequence[int],
    texture_labels: torch.Tensor | Sequence[int],
    *,
    imagenet: bool = True,
    from_logits: bool = False,
    mapping: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Shape bias on cue-conflict stimuli: ``shape hits / (shape hits + texture hits)``.

    The decision is the argmax of the 16-class scores (for an ImageNet model: the mean softmax
    probability of each category's ImageNet classes). Stimuli whose shape and texture category
    agree are excluded, as in model-vs-human; decisions that match neither cue count in neither.

    Args:
        scores: ``(N, 1000)`` ImageNet probabilities (``imagenet=True``) or ``(N, 16)`` scores.
        shape_labels, texture_labels: ``(N,)`` 16-class indices (:data:`CATEGORIES_16` order).
        imagenet: map 1000-class scores to 16 classes first.
        from_logits: ``scores`` are logits: apply a softmax first.
        mapping: custom category -> ImageNet indices mapping.

    Returns:
        ``{"shape_bias", "shape_fraction", "texture_fraction", "n", "per_category"}``: fractions of
        the kept stimuli decided by shape / texture, and the shape bias per shape category (``nan``
        where a category has no cue hits).

    Example:
        >>> shape_bias(probs, shape_labels, texture_labels)["shape_bias"]
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a float tensor (N, classes); got {scores!r}")
    scores = scores.detach()  # counts only: no graph needed
    s = torch.softmax(scores.float(), 1) if from_logits else scores.float()
    if imagenet and not from_logits and s.numel() and (
            bool((s < 0).any()) or float((s.sum(1) - 1).abs().max()) > 1e-3):
        raise ValueError("scores must be softmax probabilities (non-negative, rows summing to 1) for "
                         "imagenet=True; pass from_logits=True for logits")
    if imagenet:
        s = imagenet_to_16(s, mapping)
    names, _ = _mapping(mapping) if imagenet else (CATEGORIES_16, None)
    ys, yt = _labels(shape_labels, "shape_labels"), _labels(texture_labels, "texture_labels")
    n = s.shape[0]
    if ys.shape[0] != n or yt.shape[0] != n:
        raise ValueError(f"shape_labels and texture_labels need {n} entries (one per row of scores); got "
                         f"{ys.shape[0]} and {yt.shape[0]}")
    k = s.shape[1]
    if bool(((ys < 0) | (ys >= k) | (yt < 0) | (yt >= k)).any()):
        raise ValueError(f"labels must be class indices in [0, {k})")
    keep = ys != yt
    pred = s.argmax(1)
    sh = (pred == ys) & keep
    tx = (pred == yt) & keep
    nk = int(keep.sum())
    hits = int(sh.sum()) + int(tx.sum())
    per = {}
    for i in range(k):
        m = ys == i
        a, b = int((sh & m).sum()), int((tx & m).sum())
        per[names[i] if i < len(names) else str(i)] = a / (a + b) if a + b else float("nan")
    return {"shape_bias": int(sh.sum()) / hits if hits else float("nan"),
            "shape_fraction": int(sh.sum()) / nk if nk else float("nan"),
            "texture_fraction": int(tx.sum()) / nk if nk else float("nan"), "n": nk, "per_category": per}
