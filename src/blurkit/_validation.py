"""Argument checks shared by every blurkit module.

Every check raises ``ValueError`` or ``TypeError`` whose message names the parameter, the value
received and what is allowed, so that no torch-internal error reaches a user.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

BORDERS = ("reflect", "replicate", "circular", "constant", "symmetric")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

__all__ = [
    "BORDERS",
    "FLOAT_DTYPES",
    "check_border",
    "check_images",
    "per_sample",
    "restore_batch",
    "describe",
]


def describe(value: object) -> str:
    """Short human description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 6:
            return f"tensor({value.detach().cpu().tolist()}, dtype={value.dtype})"
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def check_border(border: str) -> str:
    """Validate a border mode name and return it."""
    if not isinstance(border, str) or border not in BORDERS:
        raise ValueError(f"border must be one of {', '.join(map(repr, BORDERS))}; got {border!r}")
    return border


def check_images(images: object, name: str = "images") -> tuple[torch.Tensor, bool]:
    """Validate an image tensor and return it as ``(B, C, H, W)``.

    Args:
        images: tensor of shape ``(B, C, H, W)`` or ``(C, H, W)``; float16, bfloat16, float32,
            float64 or uint8.
        name: parameter name used in error messages.

    Returns:
        ``(batch, squeezed)``: the 4-D tensor (a view, no copy) and whether a batch dimension was added.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W) or (C, H, W); "
                        f"got {type(images).__name__}")
    if images.dtype not in FLOAT_DTYPES and images.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype float16, bfloat16, float32, float64 or uint8; "
                        f"got {images.dtype}")
    if images.dim() == 3:
        images, squeezed = images.unsqueeze(0), True
    elif images.dim() == 4:
        squeezed = False
    else:
        raise ValueError(f"{name} must have shape (B, C, H, W) or (C, H, W); got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)}); "
                         "at least one image is needed")
    if images.shape[1] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} must have C, H, W >= 1; got shape {tuple(images.shape)}")
    return images, squeezed


def restore_batch(out: torch.Tensor, squeezed: bool) -> torch.Tensor:
    """Undo the batch dimension added by :func:`check_images`."""
    return out.squeeze(0) if squeezed else out


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Images as float values in [0, 1] units: uint8 ``v`` -> float32 ``v / 255``; float32/float64 as they
    are; other float dtypes (float16, bfloat16) -> float32."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def all_finite(t: torch.Tensor) -> bool:
    """True when no element of ``t`` is NaN or infinite (integer tensors always are). One sum first (a
    NaN or inf makes it non-finite); only when it is not finite (or overflowed) a full element scan:
    about 25x cheaper than ``torch.isfinite(t).all()`` on a finite batch."""
    if not (t.is_floating_point() or t.is_complex()):
        return True
    t = t.detach()
    if bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def from_unit(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Clip ``[0, 1]``-unit results to ``[0, 1]`` and return them in ``like``'s dtype (uint8: the floor of
    ``255 y``, numpy's ``np.uint8(y * 255)``). ``y`` is clipped in place when it is a fresh result (no
    autograd history, no memory shared with ``like``): a new batch-sized buffer costs more than the clip."""
    own = not y.requires_grad and y.untyped_storage().data_ptr() != like.untyped_storage().data_ptr()
    y = y.clamp_(0.0, 1.0) if own else y.clamp(0.0, 1.0)
    if like.dtype == torch.uint8:
        return (y * 255.0).floor_().clamp_(0, 255).to(torch.uint8)
    return y if y.dtype == like.dtype else y.to(like.dtype)


def per_sample(
    value: object,
    name: str,
    batch: int | None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    minimum: float | None = 0.0,
    strict: bool = False,
    maximum: float | None = None,
) -> torch.Tensor:
    """Turn a scalar or per-image parameter into a float tensor of shape ``(B,)``.

    Args:
        value: a Python number, a 0-d tensor, or a tensor/sequence of shape ``(B,)``.
        name: parameter name used in error messages.
        batch: the batch size ``B`` (``None``: take the length of ``value``; a scalar then gives ``(1,)``).
        device, dtype: where and how to return the values (float parameters keep autograd history).
        minimum: smallest allowed value (``None``: no bound).
        strict: if true, ``minimum`` itself is not allowed.
        maximum: largest allowed value (``None``: no bound).
    """
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name} must be a number or a tensor of shape (B,); got {value!r}")
    if isinstance(value, numbers.Number):
        t = torch.tensor(float(value), dtype=dtype, device=device)
    elif isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real-valued tensor; got dtype {value.dtype}")
        t = value.to(device=device if device is not None else value.device,
                     dtype=torch.float64 if value.dtype == torch.float64 else dtype)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        try:
            t = torch.tensor([float(v) for v in value], dtype=dtype, device=device)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a sequence of numbers; got {value!r}") from None
    else:
        raise TypeError(f"{name} must be a number or a tensor of shape (B,); got {type(value).__name__}")
    if t.dim() > 1:
        raise ValueError(f"{name} must be a number or have shape (B,); got shape {tuple(t.shape)}")
    if t.dim() == 1:
        if batch is not None and t.shape[0] != batch:
            if t.shape[0] == 1:
                t = t.expand(batch)
            else:
                raise ValueError(f"{name} has {t.shape[0]} values but the batch has {batch} images; "
                                 f"give one value or one per image")
    else:
        t = t.expand(batch if batch is not None else 1)
    with torch.no_grad():
        vals = t.detach()
        if not bool(torch.isfinite(vals).all()):
            raise ValueError(f"{name} must be finite; got {describe(value)}")
        if minimum is not None:
            bad = (vals <= minimum) if strict else (vals < minimum)
            if bool(bad.any()):
                op = ">" if strict else ">="
                raise ValueError(f"{name} must be {op} {minimum}; got {describe(value)}")
        if maximum is not None and bool((vals > maximum).any()):
            raise ValueError(f"{name} must be <= {maximum}; got {describe(value)}")
    return t


def odd_size(value: object, name: str, batch: int | None) -> torch.Tensor:
    """Validate kernel sizes: positive odd integers, scalar or ``(B,)``; returns a long tensor."""
    t = per_sample(value, name, batch, dtype=torch.float64, minimum=1.0)
    vals = t.detach()
    if bool((vals != torch.round(vals)).any()) or bool((vals.remainder(2) != 1).any()):
        raise ValueError(f"{name} must be a positive odd integer (1, 3, 5, ...); got {describe(value)}")
    return vals.round().long()


def radius_from(sigma: torch.Tensor, truncate: float) -> torch.Tensor:
    """Kernel radius ``ceil(truncate * sigma)`` as a long tensor (tolerant of rounding noise)."""
    r = torch.ceil(sigma.detach().double() * truncate - 1e-9)
    return r.clamp_min(0).long()


def check_value(value: object, name: str = "value") -> float:
    """Validate the fill value of a constant border: a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number (the constant border's fill value); got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number (the constant border's fill value); got {value!r}")
    return float(value)


def check_truncate(truncate: object) -> float:
    """Validate the Gaussian ``truncate`` factor (radius = ceil(truncate * sigma))."""
    if isinstance(truncate, bool) or not isinstance(truncate, numbers.Real) or not math.isfinite(truncate) \
            or truncate <= 0:
        raise ValueError(f"truncate must be a finite number > 0; got {truncate!r}")
    return float(truncate)
