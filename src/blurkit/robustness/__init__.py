"""Measure a classifier's robustness to blur.

Any ``nn.Module`` classifier (logits out) and any iterable of ``(images, labels)`` batches:

- :func:`accuracy_curve`: top-1/top-k accuracy per blur level (gaussian, motion, defocus, box),
  AUC and bootstrap intervals, several models in one pass.
- :func:`critical_sigma`: per image, the smallest blur that flips the decision (coarse scan +
  batched per-image bisection), its survival curve, and PSNR/SSIM at the flip.
- :func:`evaluate_corruptions` + :func:`corruption_errors`: ImageNet-C / CIFAR-10-C errors, CE, mCE,
  relative mCE against a baseline or the published AlexNet errors.
- :func:`worst_case_blur`: per-image blur parameters optimised by gradient to flip the decision at
  the smallest SSIM/PSNR cost.
- :func:`lowpass_evaluation`, :func:`shape_bias`: the Geirhos et al. human comparisons.
"""

from .corruption_errors import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    CorruptionErrors,
    corruption_errors,
    evaluate_corruptions,
)
from .critical import CriticalSigma, critical_sigma
from .curves import AccuracyCurve, accuracy_curve
from .human import (
    CATEGORIES_16,
    GEIRHOS_2018_LOWPASS,
    IMAGENET_16_CLASS_INDICES,
    LOWPASS_BORDER_VALUE,
    SixteenClassHead,
    imagenet_to_16,
    lowpass_evaluation,
    plot_lowpass,
    shape_bias,
)
from .quality import psnr, ssim
from .worst_case import WORST_CASE_FAMILIES, WorstCaseBlur, worst_case_blur

__all__ = [
    "AccuracyCurve", "accuracy_curve",
    "CriticalSigma", "critical_sigma",
    "ALEXNET_ERRORS", "ALEXNET_CLEAN_ERROR", "CorruptionErrors", "corruption_errors", "evaluate_corruptions",
    "WORST_CASE_FAMILIES", "WorstCaseBlur", "worst_case_blur",
    "CATEGORIES_16", "IMAGENET_16_CLASS_INDICES", "GEIRHOS_2018_LOWPASS", "LOWPASS_BORDER_VALUE",
    "SixteenClassHead", "imagenet_to_16", "lowpass_evaluation", "plot_lowpass", "shape_bias",
    "psnr", "ssim",
]
