"""Atomic file writes (a reader never sees a half-written checkpoint, report or table) and the one
image reader every command starts from.

Each writer puts the data in a temporary file in the target's folder, flushes it to disk, then
renames it over the target (``os.replace`` is atomic on POSIX and Windows); on any error the
temporary file is removed and the old target, if any, is left untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_torch_save", "atomic_savefig",
           "open_upright"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a temporary binary file, then rename it to ``path`` atomically.

    Args:
        path: the target file; its folder is created if missing.
        write: writes the content to the open binary file handle it is given.

    Returns:
        The target path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what a plain open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode(encoding)))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints)."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` (matplotlib) to ``path`` atomically; the format follows ``path``'s suffix."""
    fmt = kwargs.pop("format", None) or (Path(path).suffix.lstrip(".") or None)
    return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, **kwargs))


def open_upright(path: str | os.PathLike) -> Any:
    """Open and decode an image file with Pillow, turned upright by its EXIF orientation (as a viewer
    displays it: a phone photo stored sideways comes back upright). Returns a loaded ``PIL.Image``
    independent of the file; Pillow's own errors (``UnidentifiedImageError``, ``OSError``) propagate."""
    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        raw.load()
        if raw.getexif().get(0x0112, 1) in (None, 1):  # no rotation or mirroring: no copy
            return raw
        return ImageOps.exif_transpose(raw)
