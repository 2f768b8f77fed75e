"""Classifiers for training with blur (no torchvision): a small CNN, ResNet-18/50, AlexNet-style.

Every architecture has an anti-aliased variant (``blurpool=True``): Zhang, "Making convolutional
networks shift-invariant again", ICML 2019. Each down-sampling step is split into its dense
operation followed by :class:`BlurPool` (a binomial low-pass filter applied by the blurkit engine,
then subsampling):

- ``MaxPool(k, stride 2)``  ->  ``MaxPool(k, stride 1)`` + ``BlurPool``
- ``Conv(stride 2)`` + ReLU  ->  ``Conv(stride 1)`` + ReLU + ``BlurPool``
- a strided ``1x1`` projection (ResNet shortcut)  ->  ``BlurPool`` + ``Conv 1x1``

This is the "blur-invariant architecture" baseline that blur training is compared with.

Example:
    >>> import torch, blurkit as bk
    >>> net = bk.models.build_model("resnet18", num_classes=10, in_channels=3, blurpool=True)
    >>> net(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .errors import BlurkitError
from .filtering import sepfilter2d

__all__ = [
    "BlurPool",
    "binomial_filter",
    "SmallCNN",
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "AlexNet",
    "MODELS",
    "build_model",
    "register_model",
]


def binomial_filter(size: int = 3) -> torch.Tensor:
    """Normalised binomial (Pascal-triangle) 1-D filter of odd ``size``: 3 -> [1, 2, 1] / 4.

    Example:
        >>> binomial_filter(5)
        tensor([0.0625, 0.2500, 0.3750, 0.2500, 0.0625])
    """
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int; got {size!r}")
    k = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float32)
    return k / k.sum()


class BlurPool(nn.Module):
    """Anti-aliased down-sampling: binomial low-pass (via :func:`blurkit.sepfilter2d`), then stride.

    Args:
        channels: number of channels (kept for ``repr``; the filter is the same for every channel).
        filt_size: odd binomial filter length (Zhang 2019 uses 3 or 5; default 3).
        stride: subsampling factor (default 2).
        border: border mode for the filter (default ``"reflect"``, as Zhang's reflection padding).

    Shapes: ``(B, C, H, W)`` -> ``(B, C, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2, border: str = "reflect") -> None:
        super().__init__()
        self.channels, self.stride, self.border = channels, int(stride), border
        self.register_buffer("kernel", binomial_filter(filt_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(dtype=x.dtype if x.is_floating_point() else torch.float32)
        if min(x.shape[-2:]) > 1:
            x = sepfilter2d(x, k, k, border=self.border)
        return x[..., :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filt_size={self.kernel.numel()}, stride={self.stride}"


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(min(8, c), c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none'; got {kind!r}")


def _down_pool(c: int, blurpool: bool) -> list[nn.Module]:
    return [nn.MaxPool2d(2, 1), BlurPool(c)] if blurpool else [nn.MaxPool2d(2)]


# ------------------------------------------------------------------------------------ small CNN
class SmallCNN(nn.Module):
    """A compact CNN for 16-64 px images that trains in minutes on 2 CPU cores.

    Three stages ``conv3x3-norm-ReLU`` x2 (widths ``width, 2 width, 4 width``), each followed by a
    2x down-sampling (max-pool, or max-pool stride 1 + :class:`BlurPool`), global average pooling
    and a linear classifier.

    Args:
        num_classes: output logits.
        in_channels: input channels (1 grey, 3 RGB).
        width: channels of the first stage (default 32).
        norm: ``"batch"`` (default), ``"group"`` or ``"none"`` (BatchNorm-free, e.g. for exact DDP tests).
        blurpool: anti-aliased down-sampling.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, norm: str = "batch",
                 blurpool: bool = False) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer (channels of the first stage); got {width!r}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=norm == "none"), _norm(norm, c), nn.ReLU(inplace=True)]
            if i > 0:
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=norm == "none"), _norm(norm, c),
                           nn.ReLU(inplace=True)]
            layers += _down_pool(c, blurpool)
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int = 1, norm: str = "batch", blurpool: bool = False) -> None:
        super().__init__()
        if stride > 1 and blurpool:
            self.conv1 = nn.Sequential(nn.Conv2d(c_in, c, 3, 1, 1, bias=False), _norm(norm, c),
                                       nn.ReLU(inplace=True), BlurPool(c, stride=stride))
        else:
            self.conv1 = nn.Sequential(nn.Conv2d(c_in, c, 3, stride, 1, bias=False), _norm(norm, c),
                                       nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), _norm(norm, c))
        self.shortcut = _shortcut(c_in, c * self.expansion, stride, norm, blurpool)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int = 1, norm: str = "batch", blurpool: bool = False) -> None:
        super().__init__()
        out = c * self.expansion
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c, 1, bias=False), _norm(norm, c), nn.ReLU(inplace=True))
        if stride > 1 and blurpool:
            self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), _norm(norm, c),
                                       nn.ReLU(inplace=True), BlurPool(c, stride=stride))
        else:
            self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, bias=False), _norm(norm, c),
                                       nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv2d(c, out, 1, bias=False), _norm(norm, out))
        self.shortcut = _shortcut(c_in, out, stride, norm, blurpool)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int, norm: str, blurpool: bool) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if stride > 1 and blurpool:
        return nn.Sequential(BlurPool(c_in, stride=stride), nn.Conv2d(c_in, c_out, 1, bias=False),
                             _norm(norm, c_out))
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out))


class ResNet(nn.Module):
    """ResNet (He et al. 2016) with an ImageNet stem (7x7/2 conv + 3x3/2 max-pool) or a CIFAR stem (3x3/1).

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18, ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes, in_channels: output logits and input channels.
        stem: ``"imagenet"`` (for >= 128 px inputs) or ``"cifar"`` (for 16-64 px inputs).
        norm: ``"batch"``, ``"group"`` or ``"none"``.
        blurpool: anti-aliased down-sampling in the stem and every strided block (Zhang 2019).

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, num_classes)``.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], num_classes: int = 1000,
                 in_channels: int = 3, stem: str = "imagenet", norm: str = "batch", blurpool: bool = False) -> None:
        super().__init__()
        if stem == "imagenet":
            if blurpool:
                self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 1, 3, bias=False), _norm(norm, 64),
                                          nn.ReLU(inplace=True), BlurPool(64), *_pool3(64, True))
            else:
                self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), _norm(norm, 64),
                                          nn.ReLU(inplace=True), *_pool3(64, False))
        elif stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), _norm(norm, 64),
                                      nn.ReLU(inplace=True))
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar'; got {stem!r}")
        stages, c_in = [], 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, c, 2 if (j == 0 and i > 0) else 1, norm, blurpool))
                c_in = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def _pool3(c: int, blurpool: bool) -> list[nn.Module]:
    return [nn.MaxPool2d(3, 1, 1), BlurPool(c)] if blurpool else [nn.MaxPool2d(3, 2, 1)]


# -------------------------------------------------------------------------------------- AlexNet
class AlexNet(nn.Module):
    """AlexNet-style network (Krizhevsky 2012, the torchvision layout) that also runs on small inputs.

    Five conv layers (64-192-384-256-256; 11x11/4 first conv for ``>= 128`` px inputs, 3x3/1 for
    smaller ``small_input=True``), three max-pools, adaptive pooling to 6x6 (3x3 small) and a dropout MLP.

    Args:
        num_classes, in_channels: output logits and input channels.
        small_input: use the small-image first conv (default: decided by the caller; ``build_model``
            passes ``image_size < 128``).
        hidden: width of the two hidden fully-connected layers (4096 in the original).
        dropout: dropout probability in the classifier.
        blurpool: anti-aliased down-sampling (strided conv -> conv + BlurPool; max-pool -> max-pool
            stride 1 + BlurPool).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 hidden: int = 4096, dropout: float = 0.5, blurpool: bool = False) -> None:
        super().__init__()
        if small_input:
            first: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1), nn.ReLU(inplace=True)]
        elif blurpool:
            first = [nn.Conv2d(in_channels, 64, 11, 1, 2), nn.ReLU(inplace=True), BlurPool(64, stride=4, filt_size=5)]
        else:
            first = [nn.Conv2d(in_channels, 64, 11, 4, 2), nn.ReLU(inplace=True)]

        def pool(c: int) -> list[nn.Module]:
            return [nn.MaxPool2d(3, 1), BlurPool(c)] if blurpool else [nn.MaxPool2d(3, 2)]

        self.features = nn.Sequential(
            *first, *pool(64),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), *pool(192),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), *pool(256))
        side = 3 if small_input else 6
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"AlexNet needs inputs of at least 16x16 pixels; got {tuple(x.shape[-2:])}")
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# -------------------------------------------------------------------------------------- registry
ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {
    "small-cnn": lambda num_classes, in_channels, blurpool=False, norm="batch", width=32, **_: SmallCNN(
        num_classes, in_channels, width=width, norm=norm, blurpool=blurpool),
    "resnet18": lambda num_classes, in_channels, blurpool=False, norm="batch", stem="imagenet", **_: ResNet(
        BasicBlock, (2, 2, 2, 2), num_classes, in_channels, stem=stem, norm=norm, blurpool=blurpool),
    "resnet50": lambda num_classes, in_channels, blurpool=False, norm="batch", stem="imagenet", **_: ResNet(
        Bottleneck, (3, 4, 6, 3), num_classes, in_channels, stem=stem, norm=norm, blurpool=blurpool),
    "resnet18-cifar": lambda num_classes, in_channels, blurpool=False, norm="batch", **_: ResNet(
        BasicBlock, (2, 2, 2, 2), num_classes, in_channels, stem="cifar", norm=norm, blurpool=blurpool),
    "resnet50-cifar": lambda num_classes, in_channels, blurpool=False, norm="batch", **_: ResNet(
        Bottleneck, (3, 4, 6, 3), num_classes, in_channels, stem="cifar", norm=norm, blurpool=blurpool),
    "alexnet": lambda num_classes, in_channels, blurpool=False, image_size=224, **_: AlexNet(
        num_classes, in_channels, small_input=image_size < 128, hidden=4096 if image_size >= 128 else 512,
        blurpool=blurpool),
}
"""Name -> factory ``f(num_classes, in_channels, blurpool=False, **options)``."""

# Options each built-in model takes; ``image_size`` (the training image side, passed by the training
# loop) is accepted by every model and used by those that depend on it (alexnet).
_MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "small-cnn": ("width", "norm"), "resnet18": ("norm", "stem"), "resnet50": ("norm", "stem"),
    "resnet18-cifar": ("norm",), "resnet50-cifar": ("norm",), "alexnet": ("image_size",),
}


_BUILTIN = dict(MODELS)  # the built-in factories (a registered replacement takes its own options)


def register_model(name: str, factory: ModelFactory) -> None:
    """Add a model factory ``factory(num_classes, in_channels, blurpool=False, **options) -> nn.Module``."""
    MODELS[name] = factory


def build_model(name: str | nn.Module | ModelFactory, num_classes: int = 10, in_channels: int = 1, *,
                blurpool: bool = False, **options: object) -> nn.Module:
    """Build a classifier by name, from a ``module:function`` spec, or pass a user ``nn.Module`` through.

    Args:
        name: a key of :data:`MODELS` (``"small-cnn"``, ``"resnet18"``, ``"resnet50"``,
            ``"resnet18-cifar"``, ``"resnet50-cifar"``, ``"alexnet"``; a ``"-blurpool"`` suffix sets
            ``blurpool=True``), ``"module:function"`` (called with ``num_classes=, in_channels=`` and
            ``blurpool=`` when true), an ``nn.Module`` (returned as is) or a callable factory.
        num_classes: output logits.
        in_channels: input channels.
        blurpool: anti-aliased variant (Zhang 2019).
        **options: model options (``norm``, ``width``, ``stem``, ``image_size``).

    Returns:
        An ``nn.Module`` mapping ``(B, in_channels, H, W)`` to ``(B, num_classes)`` logits.

    Example:
        >>> net = build_model("small-cnn-blurpool", num_classes=10, in_channels=1)
    """
    if isinstance(name, nn.Module):
        return name
    if callable(name):
        return name(num_classes=num_classes, in_channels=in_channels, **({"blurpool": True} if blurpool else {}))
    if not isinstance(name, str):
        raise TypeError(f"model must be a name, 'module:function', an nn.Module or a factory; got {type(name)}")
    key = name.lower()
    if key.endswith("-blurpool"):
        key, blurpool = key[: -len("-blurpool")], True
    if key in MODELS:
        if key in _MODEL_OPTIONS and MODELS[key] is _BUILTIN[key]:
            unknown = sorted(set(options) - set(_MODEL_OPTIONS[key]) - {"image_size"})
            if unknown:
                allowed = ", ".join(_MODEL_OPTIONS[key]) or "none"
                raise ValueError(f"model {key!r} has no option(s) {', '.join(map(repr, unknown))}; "
                                 f"its options: {allowed}")
        return MODELS[key](num_classes, in_channels, blurpool=blurpool, **options)
    if ":" in name:
        import inspect

        from .data import resolve

        fn = resolve(name)
        kwargs: dict[str, object] = {"num_classes": num_classes, "in_channels": in_channels}
        if blurpool:
            kwargs["blurpool"] = True
        try:
            params = inspect.signature(fn).parameters
            takes = lambda k: k in params or any(p.kind is p.VAR_KEYWORD for p in params.values())  # noqa: E731
        except (TypeError, ValueError):  # no signature (a builtin): pass only what the user gave
            takes = lambda k: True  # noqa: E731
        # the user's own options go to the function; image_size (added by the training loop) only if
        # the function takes it
        kwargs.update({k: v for k, v in options.items() if k != "image_size" or takes(k)})
        try:
            model = fn(**kwargs)
        except TypeError as exc:
            if any(not takes(k) for k in kwargs):
                raise ValueError(f"{name} does not take the option(s) "
                                 f"{', '.join(repr(k) for k in kwargs if not takes(k))}: {exc}") from exc
            raise
        if not isinstance(model, nn.Module):
            raise BlurkitError(f"{name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    raise BlurkitError(f"unknown model {name!r}; choose one of {', '.join(MODELS)} (optionally with "
                       "'-blurpool'), or pass 'module:function' returning an nn.Module")
