"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a ``dict`` of tensors, numbers, strings, lists and dicts only (no pickled
classes), so it loads with ``weights_only=True``:

=====================  ============================================================================
key                    content
=====================  ============================================================================
``format``             ``"blurkit-checkpoint"``; ``version``: 1
``epoch``              completed epochs (resume starts at this epoch)
``step_in_epoch``      optimizer steps already done inside ``epoch`` (0 at an epoch boundary)
``global_step``        optimizer steps since the start
``model``              ``state_dict`` of the bare model (no ``module.``/``_orig_mod.`` prefixes)
``optimizer``          optimizer ``state_dict``; ``scheduler``: LR scheduler ``state_dict``
``scaler``             fp16 ``GradScaler`` state (empty dict otherwise)
``rng``                ``torch`` CPU RNG state (uint8 tensor), ``cuda`` states (list), ``python``
                       (``random.getstate()`` as lists), ``numpy`` (``get_state`` as lists)
``config``             the :class:`~blurkit.train.TrainConfig` as a dict
``model_info``         ``name``, ``num_classes``, ``in_channels``, ``image_size``, ``blurpool``,
                       ``options``, ``classes``, ``mean``, ``std`` (how to rebuild and feed the model)
``metrics``            the metrics-log rows written so far (list of dicts)
=====================  ============================================================================
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_torch_save
from ..errors import BlurkitError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "load_model", "FORMAT", "VERSION"]

FORMAT = "blurkit-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``state`` with ``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``.

    A reader (or a run killed mid-write) sees either the previous complete file or the new one, never a
    partial file; no temporary file is left behind on error.
    """
    return atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a blurkit checkpoint with ``weights_only=True`` (no arbitrary code runs).

    Args:
        path: a checkpoint file, or a run folder (then ``<folder>/last.pt``).

    Raises:
        BlurkitError: missing file or not a blurkit checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise BlurkitError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise BlurkitError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BlurkitError(f"{path} is not a blurkit checkpoint (no format={FORMAT!r} entry)")
    if state.get("version", 0) > VERSION:
        raise BlurkitError(f"{path}: checkpoint version {state['version']} is newer than this blurkit ({VERSION})")
    return state


def _to_lists(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_to_lists(o) for o in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(o) for o in obj) if isinstance(obj, list) else obj


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, Python ``random``, numpy) in a weights-only-safe form."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *[_to_lists(s) for s in np_state[2:]]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("python"):
        random.setstate(_to_tuples(state["python"]))
    if state.get("numpy"):
        n = state["numpy"]
        np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
               ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint (or a run folder) and load its weights.

    Returns:
        ``(model, model_info)``: the model in eval mode, and the ``model_info`` dict (``num_classes``,
        ``in_channels``, ``image_size``, ``mean``, ``std``, ``classes``, ...) that says how to feed it:
        float images in ``[0, 1]``, normalised with ``mean``/``std``.

    Example:
        >>> model, info = load_model("runs/strong")
    """
    from ..models import build_model

    state = load_checkpoint(path, map_location)
    info = state["model_info"]
    opts = dict(info.get("options", {}))
    if info.get("image_size") is not None:
        opts.setdefault("image_size", info["image_size"])
    model = build_model(info["name"], info["num_classes"], info["in_channels"], blurpool=info.get("blurpool", False),
                        **opts)
    if info.get("deblur_front"):
        from .regimes import FrontModel, deblur_front

        model = FrontModel(deblur_front(state["config"].get("regime_options", {})), model, info["mean"], info["std"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, info
