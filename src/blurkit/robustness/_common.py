"""Shared plumbing of blurkit.robustness: models, data batches, blur families, prediction, output."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .. import filtering as _f
from .._io import atomic_write_text
from .._validation import describe

FAMILIES = ("gaussian", "motion", "defocus", "box")

Transform = Callable[[torch.Tensor], torch.Tensor]


def as_models(model: object) -> tuple[dict[str, nn.Module], bool]:
    """Normalise ``model`` to ``{name: module}``; the flag says whether a single module was given."""
    if isinstance(model, nn.Module) or (callable(model) and not isinstance(model, (Mapping, Sequence))):
        return {"model": model}, True  # type: ignore[dict-item]
    if isinstance(model, Mapping):
        models = dict(model)
    elif isinstance(model, Sequence) and not isinstance(model, (str, bytes)):
        models = {f"model{i}": m for i, m in enumerate(model)}
    else:
        raise TypeError(f"model must be an nn.Module, a sequence of them or a dict name -> nn.Module; "
                        f"got {type(model).__name__}")
    if not models:
        raise ValueError("model: at least one model is needed; got an empty collection")
    for name, m in models.items():
        if not isinstance(m, nn.Module) and not callable(m):
            raise TypeError(f"model {name!r} must be an nn.Module (logits out); got {type(m).__name__}")
    return models, False


def resolve_device(device: object, models: Mapping[str, nn.Module]) -> torch.device:
    """``device`` as a ``torch.device`` (default: the first model's parameters' device, else CPU)."""
    if device is not None:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a torch.device or a string such as 'cpu' or 'cuda:0'; got {device!r}")
        try:
            return torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0'; got {device!r}") from None
    for m in models.values():
        if isinstance(m, nn.Module):
            for p in m.parameters():
                return p.device
    return torch.device("cpu")


def model_dtype(model: object) -> torch.dtype | None:
    """The floating dtype of a module's first floating parameter (or buffer); ``None`` if it has none."""
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                return t.dtype
    return None


def check_max_batches(max_batches: object) -> int | None:
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None; got {max_batches!r}")
    return max_batches


def check_options(*, transform: object = None, seed: object = 0, ci: object = None,
                  data_range: object = None) -> None:
    """Validate the options shared by the robustness functions (each named in its error)."""
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a callable (images -> images) or None; got {transform!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    if ci is not None and (isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1):
        raise ValueError(f"ci must be a number in (0, 1) (0.95: a 95 % interval); got {ci!r}")
    if data_range is not None and (isinstance(data_range, bool) or not isinstance(data_range, (int, float))
                                   or not math.isfinite(data_range) or data_range <= 0):
        raise ValueError(f"data_range must be a finite number > 0 (1.0 for images in [0, 1]); got {data_range!r}")


def check_labels(labels: torch.Tensor, n_classes: int) -> None:
    """Labels must be class indices of the model's output: ``0 <= label < n_classes``."""
    if labels.numel() and bool(((labels < 0) | (labels >= n_classes)).any()):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ValueError(f"labels must be class indices in [0, {n_classes}) for a model with {n_classes} "
                         f"outputs; got {int(bad)}")


def _single_batch(data: object) -> bool:
    return (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor)
            and isinstance(data[1], (torch.Tensor, list)))


def pairs(data: object, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validated ``(images, labels)`` pairs of ``data``, where they are (no device move).

    ``data`` is any iterable of pairs (a DataLoader, a list, a generator) or one ``(images, labels)``
    tuple. Images must be ``(B, C, H, W)``; labels ``(B,)`` integer class indices (a tensor or a
    list). uint8 images are scaled to float32 in ``[0, 1]`` (blur is then not quantised).
    """
    if _single_batch(data):
        data = [data]
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, torch.Tensor)):
        raise TypeError(f"data must be an iterable of (images, labels) batches or one such tuple; got "
                        f"{describe(data)}")
    for i, item in enumerate(data):
        if max_batches is not None and i >= max_batches:
            return
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"data must yield (images, labels) pairs; batch {i} is {describe(item)}")
        x, y = item[0], item[1]
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"images of batch {i} must be a tensor (B, C, H, W); got {describe(x)}")
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            raise TypeError(f"images of batch {i} must be float (values in [0, 1]) or uint8; got {x.dtype}")
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"labels of batch {i} must be integer class indices; got {describe(y)}") from None
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"labels of batch {i} must be integer class indices of shape ({x.shape[0]},); "
                             f"got {describe(y)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        yield x, y.long()


def batches(data: object, device: torch.device, max_batches: int | None = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`pairs` moved to ``device``."""
    for x, y in pairs(data, max_batches):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def count_batches(data: object) -> int | None:
    if _single_batch(data):
        return 1
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(total: int | None, desc: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return contextlib.nullcontext(None)
    return tqdm(total=total, desc=desc, leave=False)


def check_family(family: str) -> str:
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(map(repr, FAMILIES))}; got {family!r}")
    return family


_BLUR_FN = {"gaussian": ("gaussian_blur", "sigma"), "motion": ("motion_blur", "length"),
            "defocus": ("defocus_blur", "radius"), "box": ("box_blur", "size")}


def check_blur_kwargs(family: str, blur_kwargs: object) -> dict[str, Any]:
    """``blur_kwargs`` as a dict of keyword arguments the family's blur function accepts."""
    if blur_kwargs is None:
        return {}
    if not isinstance(blur_kwargs, Mapping):
        raise TypeError(f"blur_kwargs must be a dict of blur arguments or None; got {blur_kwargs!r}")
    fn_name, level = _BLUR_FN[family]
    params = inspect.signature(getattr(_f, fn_name)).parameters
    allowed = sorted(k for k, p in params.items() if k not in ("images", level))
    bad = [k for k in blur_kwargs if k not in allowed]
    if bad:
        raise ValueError(f"blur_kwargs: {fn_name} takes no argument {bad[0]!r} (family {family!r}); "
                         f"allowed: {', '.join(allowed)}")
    return dict(blur_kwargs)


def apply_blur(images: torch.Tensor, family: str, level: float | torch.Tensor,
               blur_kwargs: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Blur ``images`` with one level (number or ``(B,)``) of a family.

    Levels: ``gaussian`` sigma (px), ``motion`` streak length (px), ``defocus`` disk radius (px),
    ``box`` radius ``r`` (px) of a ``(2 round(r) + 1)``-wide box.
    """
    kw = dict(blur_kwargs or {})
    if family == "gaussian":
        return _f.gaussian_blur(images, level, **kw)
    if family == "motion":
        return _f.motion_blur(images, level, kw.pop("angle", 0.0), **kw)
    if family == "defocus":
        return _f.defocus_blur(images, level, **kw)
    if family == "box":
        lv = torch.as_tensor(level, dtype=torch.float64)
        size = (2 * torch.round(lv) + 1).to(torch.int64)
        if size.dim() == 0:
            size = int(size)
        return _f.box_blur(images, size, **kw)
    raise ValueError(f"unknown family {family!r}")  # pragma: no cover - validated by callers


def autocast(device: torch.device, amp: bool):
    """``torch.autocast`` on CUDA (float16) or CPU (bfloat16) when ``amp``; a no-op otherwise."""
    if not amp:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def logits_of(model: Callable, images: torch.Tensor, transform: Transform | None, device: torch.device,
              amp: bool) -> torch.Tensor:
    x = transform(images) if transform is not None else images
    md = model_dtype(model)
    if md is not None and isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != md and not amp:
        x = x.to(md)  # e.g. float32 images into a float64 model
    with autocast(device, amp):
        out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"the model must return logits of shape (B, classes); got {describe(out)}")
    return out.float()


def check_levels(levels: object, name: str = "sigmas") -> list[float]:
    if isinstance(levels, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers; got {levels!r}")
    if isinstance(levels, torch.Tensor):
        levels = levels.detach().cpu().flatten().tolist()
    if isinstance(levels, (int, float)):
        levels = [levels]
    try:
        vals = [float(v) for v in levels]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers; got {levels!r}") from None
    if not vals:
        raise ValueError(f"{name} must hold at least one level; got {levels!r}")
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{name} must be finite and >= 0; got {vals}")
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"{name} must be strictly increasing; got {vals}")
    return vals


def jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else
                                                    ("inf" if value > 0 else "-inf"))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json(obj: Mapping[str, Any], path: str | os.PathLike | None, indent: int = 2) -> str:
    """Serialise ``obj``; if ``path`` is given, write it atomically (temp file + os.replace)."""
    text = json.dumps(jsonable(obj), indent=indent)
    if path is not None:
        atomic_write_text(path, text)
    return text


def to_dataframe(records: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("to_dataframe() needs pandas (pip install pandas); to_dict()/to_json() do not") \
            from exc
    return pd.DataFrame.from_records(records)


def bootstrap_indices_counts(n: int, n_boot: int, generator: torch.Generator, chunk: int = 256
                             ) -> Iterator[torch.Tensor]:
    """Bootstrap resamples of ``n`` items as count matrices ``(k, n)`` (chunks of at most ``chunk``)."""
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        idx = torch.randint(0, n, (k, n), generator=generator)
        counts = torch.zeros(k, n, dtype=torch.float64)
        counts.scatter_add_(1, idx, torch.ones(k, n, dtype=torch.float64))
        yield counts
        done += k
