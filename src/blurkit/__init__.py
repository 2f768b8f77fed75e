"""blurkit: blur for computer vision - make it, train with it, measure it, undo it.

Tensors are ``(B, C, H, W)`` or ``(C, H, W)``; per-image parameters are numbers or ``(B,)`` tensors.
The engine (:mod:`blurkit.filtering`, :mod:`blurkit.kernels`) is imported eagerly; the building
blocks above it (``augment``, ``losses``, ``measure``, ``corruptions``, ``robustness``, ``deblur``,
``train``, ``neural``, ...) are imported on first use, so ``import blurkit`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import kernels
from .filtering import (
    backend_info,
    box_blur,
    defocus_blur,
    filter2d,
    gaussian_blur,
    motion_blur,
    pad,
    sepfilter2d,
)

__version__ = "0.1.0"

_SUBMODULES = (
    "augment", "presets", "losses", "measure", "corruptions", "robustness", "deblur", "data",
    "models", "train", "neural", "experiment", "filtering", "kernels", "cli",
)

# Top-level names that live in lazily imported submodules: name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "RandomGaussianBlur": ("augment", "RandomGaussianBlur"),
    "RandomMotionBlur": ("augment", "RandomMotionBlur"),
    "RandomDefocusBlur": ("augment", "RandomDefocusBlur"),
    "RandomBoxBlur": ("augment", "RandomBoxBlur"),
    "RandomBlur": ("augment", "RandomBlur"),
    "GrayscaleBlurPipeline": ("presets", "GrayscaleBlurPipeline"),
    "BlurSim": ("losses", "BlurSim"),
    "AlphaSchedule": ("losses", "AlphaSchedule"),
    "BlurConsistencyLoss": ("losses", "BlurConsistencyLoss"),
    "DeblurFront": ("deblur", "DeblurFront"),
}

__all__ = [
    "__version__",
    "kernels",
    "filter2d",
    "sepfilter2d",
    "gaussian_blur",
    "box_blur",
    "defocus_blur",
    "motion_blur",
    "pad",
    "backend_info",
    *_SUBMODULES,
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'blurkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
