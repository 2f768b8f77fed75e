"""Per-image full-reference quality (PSNR, SSIM) for robustness results.

``blurkit.measure.psnr`` / ``blurkit.measure.ssim`` are used when that module provides them with
per-image output; otherwise the small implementations here (same definitions) are used.
"""

from __future__ import annotations

import torch

from .. import filtering as _f

__all__ = ["psnr", "ssim"]


def _local_psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(data_range ** 2 / mse)).to(torch.float32)


def _local_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004): Gaussian window sigma 1.5 (11 taps), K1 .01, K2 .03.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)`` averaged over channels (borders of 5 px cropped).
    """
    wdt = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    x = x.to(wdt)
    y = y.to(wdt)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return _f.gaussian_blur(t, 1.5, truncate=5 / 1.5, border="symmetric")

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    H, W = s.shape[-2:]
    p = 5 if H > 10 and W > 10 else 0
    s = s[..., p:H - p, p:W - p]
    return s.flatten(1).mean(1).to(torch.float32)


def _from_measure(name: str, x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor | None:
    try:
        from .. import measure  # written alongside; optional
        fn = getattr(measure, name)
        out = fn(x, y, data_range=data_range)
    except Exception:  # noqa: BLE001 - any missing/incompatible implementation falls back to ours
        return None
    if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0],):
        return None
    return out.float()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of two batches ``(B, C, H, W)`` -> ``(B,)`` (inf where identical)."""
    out = _from_measure("psnr", x, y, data_range)
    return out if out is not None else _local_psnr(x, y, data_range)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image of two batches ``(B, C, H, W)`` -> ``(B,)`` (1 where identical)."""
    out = _from_measure("ssim", x, y, data_range)
    return out if out is not None else _local_ssim(x, y, data_range)
