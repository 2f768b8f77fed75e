"""Datasets and loaders for training with blur: Fashion-MNIST (IDX), image folders, user datasets.

No torchvision: the IDX reader, the image-folder reader (Pillow) and the resizing (``torch``
interpolation with anti-aliasing) are here. Images are kept as ``uint8`` tensors ``(N, C, H, W)``;
the training loop turns a batch into floats in ``[0, 1]``, blurs it on the training device and
normalises it (the Jang & Tong 2024 order: blur the grey ``[0, 1]`` image, normalise with mean
``.449`` and std ``.226``, repeat to 3 channels).

Example:
    >>> import blurkit as bk
    >>> train = bk.data.fashion_mnist("train", image_size=32, limit=1000)
    >>> train.images.shape, train.images.dtype
    (torch.Size([1000, 1, 32, 32]), torch.uint8)
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .errors import BlurkitError

__all__ = [
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "read_idx",
    "resize_images",
    "TensorImageDataset",
    "fashion_mnist",
    "ImageFolder",
    "resolve",
    "load_dataset",
    "seed_worker",
    "make_loader",
]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# IDX type codes (LeCun's MNIST format): code -> numpy big-endian dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ----------------------------------------------------------------------------------------- IDX
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

    The header is two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes; the data follow in C order.

    Args:
        path: file path; a name ending in ``.gz`` (or starting with the gzip magic bytes) is decompressed.

    Returns:
        A numpy array of the stored shape, in native byte order (e.g. ``(60000, 28, 28)`` uint8).

    Raises:
        BlurkitError: the file is missing, truncated or not an IDX file (the message names the file).

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape
        (10000, 28, 28)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BlurkitError(f"IDX file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BlurkitError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise BlurkitError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise BlurkitError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise BlurkitError(f"{path}: IDX header says shape {shape} ({count * dtype.itemsize} bytes of "
                           f"data) but the file holds {len(raw) - header} bytes")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


# ------------------------------------------------------------------------------------ resizing
def resize_images(images: torch.Tensor, size: int | tuple[int, int], *, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 or float batch ``(N, C, H, W)`` to ``size`` with anti-aliased bilinear interpolation.

    Downsampling uses ``antialias=True`` (a triangle filter widened by the scale factor, as PIL), so
    shrinking does not alias. uint8 input is computed in float32, rounded and clamped back to uint8.

    Args:
        images: ``(N, C, H, W)`` tensor.
        size: output side (square) or ``(height, width)`` in pixels.
        chunk: images processed at a time (bounds the float32 working memory).

    Returns:
        ``(N, C, size_h, size_w)`` tensor of the input dtype.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or any((not isinstance(s, int)) or s < 1 for s in hw):
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    if tuple(images.shape[-2:]) == hw:
        return images
    out = []
    for part in images.split(chunk):
        y = F.interpolate(part.float(), size=hw, mode="bilinear", align_corners=False, antialias=True)
        if images.dtype == torch.uint8:
            y = y.round_().clamp_(0, 255).to(torch.uint8)
        else:
            y = y.to(images.dtype)
        out.append(y)
    return torch.cat(out)


# ------------------------------------------------------------------------------------ datasets
class TensorImageDataset(Dataset):
    """Images and labels held in memory as tensors.

    Args:
        images: ``(N, C, H, W)`` uint8 (0..255) or float (any range) tensor.
        labels: ``(N,)`` int64 class indices.
        channels: channels returned per image; a 1-channel store is repeated to 3 when ``channels=3``
            (the stored tensor stays 1-channel, so memory is not tripled).
        classes: class names (optional).

    The training loop indexes ``images``/``labels`` directly with a batch of indices (no per-item
    collation), which is how a Fashion-MNIST epoch runs in a fraction of a second of data time.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, channels: int | None = None,
                 classes: Sequence[str] | None = None) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must have shape (N, C, H, W); got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},); got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.channels = int(channels or images.shape[1])
        if self.channels not in (images.shape[1], 3) or (self.channels == 3 and images.shape[1] not in (1, 3)):
            raise ValueError(f"channels={channels} is not available from a {images.shape[1]}-channel store")
        self.classes = list(classes) if classes is not None else [str(i) for i in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(b, channels, H, W)`` and labels ``(b,)`` for a tensor of indices."""
        x = self.images[index]
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        return x, self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if x.shape[0] != self.channels:
            x = x.expand(self.channels, -1, -1)
        return x, int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *, image_size: int | None = None,
                  channels: int = 1, limit: int | None = None) -> TensorImageDataset:
    """Fashion-MNIST (Xiao et al. 2017) as a :class:`TensorImageDataset` of uint8 images.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: folder with the four IDX files (``train-images-idx3-ubyte.gz`` ...; gzip or raw).
            Default: ``$BLURKIT_FASHION_MNIST`` or Debian's ``/usr/share/datasets/fashion-mnist``.
        image_size: resize the 28x28 images to this side (anti-aliased bilinear); ``None`` keeps 28.
        channels: 1 (grey) or 3 (grey repeated, as Jang & Tong feed ImageNet CNNs).
        limit: keep only the first ``limit`` images (for quick runs and tests).

    Returns:
        Dataset with ``images`` ``(N, 1, S, S)`` uint8, ``labels`` ``(N,)`` int64, ``classes`` (the
        Fashion-MNIST names; ``"0"``, ``"1"``, ... for IDX files with labels of 10 and above).

    Raises:
        BlurkitError: the files are not there; the message says to install the Debian package
        ``dataset-fashion-mnist`` or to pass ``--data`` / ``root``.

    Example:
        >>> ds = fashion_mnist("test", image_size=64, channels=3, limit=256)
        >>> x, y = ds[0]; x.shape
        torch.Size([3, 64, 64])
    """
    if split not in _FMNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None; got {limit!r}")
    root = Path(root or os.environ.get("BLURKIT_FASHION_MNIST") or FASHION_MNIST_ROOT)
    paths = [_find(root, stem) for stem in _FMNIST_FILES[split]]
    if None in paths:
        missing = [s for s, p in zip(_FMNIST_FILES[split], paths) if p is None]
        raise BlurkitError(
            f"Fashion-MNIST {split} files not found in {root} (missing {', '.join(m + '[.gz]' for m in missing)}); "
            "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
            "or pass --data / root= pointing to a folder with the IDX files")
    images = read_idx(paths[0])
    labels = read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise BlurkitError(f"{paths[0]} / {paths[1]}: unexpected shapes {images.shape} and {labels.shape}")
    # Fashion-MNIST's ten names; another IDX dataset with more labels (e.g. EMNIST) gets "0", "1", ...
    top = int(labels.max(initial=0))
    classes = FASHION_MNIST_CLASSES if top < len(FASHION_MNIST_CLASSES) else [str(i) for i in range(top + 1)]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1)
    if image_size is not None:
        x = resize_images(x, int(image_size))
    return TensorImageDataset(x, torch.from_numpy(labels.astype(np.int64)), channels=channels, classes=classes)


# --------------------------------------------------------------------------------- image folder
class ImageFolder(Dataset):
    """A tree ``root/<class>/<image>`` of JPEG/PNG/... files, decoded with Pillow (class = subfolder).

    Args:
        root: folder whose sub-folders are the classes (sorted by name -> index 0, 1, ...).
        image_size: resize every image to ``image_size x image_size`` (no crop, as Jang & Tong);
            ``None`` keeps the file's size (then all files must share one size to be batched).
        channels: 1 (``"L"``) or 3 (``"RGB"``).
        skip_bad: ``False`` (default): a file Pillow cannot decode raises :class:`BlurkitError` naming
            it. ``True``: every file is decoded once at construction and unreadable ones are dropped;
            their paths are in ``skipped`` (and ``len(skipped)`` is the count).
        verify: decode every file at construction (default: ``skip_bad``), so errors surface before
            training starts rather than mid-epoch.

    Items are ``(uint8 tensor (channels, H, W), class index)``.

    Example:
        >>> ds = ImageFolder("photos/", image_size=64, channels=3, skip_bad=True)
        >>> print(len(ds), "images,", len(ds.skipped), "skipped")
    """

    def __init__(self, root: str | os.PathLike, image_size: int | None = None, channels: int = 3, *,
                 skip_bad: bool = False, verify: bool | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BlurkitError(f"image folder not found: {self.root}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels!r}")
        self.image_size, self.channels, self.skip_bad = image_size, channels, skip_bad
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise BlurkitError(f"{self.root} has no class sub-folders (expected root/<class>/<image files>)")
        samples: list[tuple[Path, int]] = []
        for ci, name in enumerate(self.classes):
            for dirpath, _dirs, files in os.walk(self.root / name):
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        samples.append((Path(dirpath) / f, ci))
        if not samples:
            raise BlurkitError(f"{self.root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
        self.skipped: list[Path] = []
        if verify if verify is not None else skip_bad:
            good = []
            for path, ci in samples:
                try:
                    self._load(path)
                    good.append((path, ci))
                except BlurkitError:
                    if not skip_bad:
                        raise
                    self.skipped.append(path)
            samples = good
            if not samples:
                raise BlurkitError(f"{self.root}: all {len(self.skipped)} image files are unreadable")
        self.samples = samples
        self.labels = torch.tensor([c for _, c in samples], dtype=torch.long)

    def _load(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        from ._io import open_upright

        try:
            im = open_upright(path).convert("L" if self.channels == 1 else "RGB")  # EXIF-upright, as shown
            if self.image_size is not None:
                im = im.resize((self.image_size, self.image_size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise BlurkitError(f"cannot decode image file {path}: {exc} "
                               "(remove it, or pass --skip-bad / skip_bad=True to skip unreadable files)") from None
        t = torch.from_numpy(arr.copy())
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, ci = self.samples[i]
        return self._load(path), ci

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ------------------------------------------------------------------------------- user callables
def resolve(spec: str) -> Callable[..., Any]:
    """Resolve ``"package.module:function"`` or ``"path/to/file.py:function"`` to the named callable.

    Args:
        spec: module (importable name or ``.py`` path), a colon, then an attribute (dots allowed).

    Raises:
        BlurkitError: bad spec, module not importable, attribute missing or not callable.

    Example:
        >>> fn = resolve("blurkit.data:fashion_mnist")
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise BlurkitError(f"expected 'module:function' (or 'file.py:function'); got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise BlurkitError(f"expected 'module:function' (or 'file.py:function'); got {spec!r}")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise BlurkitError(f"{spec!r}: file {path} not found")
            name = f"_blurkit_user_{path.stem}_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                sp = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(sp)
                sys.modules[name] = module
                sp.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise BlurkitError(f"{spec!r}: cannot import module {mod_name!r} ({exc})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BlurkitError(f"{spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BlurkitError(f"{spec!r} is not callable")
    return obj


def _limited(ds: Dataset, limit: int | None) -> Dataset:
    """``limit`` images of ``ds`` drawn at random (a fixed seed: the same subset every run), in index
    order. Not the first ``limit``: an image tree lists its classes one after the other, so the first
    images would be the first few classes only."""
    n = len(ds)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return ds
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values
    return torch.utils.data.Subset(ds, idx.tolist())


def load_dataset(spec: str | None, split: str, *, image_size: int | None = None, channels: int = 1,
                 limit: int | None = None, skip_bad: bool = False) -> Dataset:
    """Build a dataset from a command-line spec.

    ``spec`` is one of: ``None`` or ``"fashion-mnist"`` (Debian's copy), ``"fashion-mnist:/path"`` (IDX
    files elsewhere), a folder (an IDX folder if it holds the Fashion-MNIST files, else an image tree
    ``root/<class>/...``; a ``train``/``val``/``test`` sub-folder is used for the split when present),
    or ``"module:function"`` called as ``function(split=..., image_size=..., channels=...)`` and
    returning a ``Dataset`` of ``(image, label)`` pairs. ``limit`` keeps the first ``limit`` images of
    Fashion-MNIST (its files are not sorted by class) and a fixed random subset (seed 0) of an image
    tree or a ``module:function`` dataset.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1; got {limit}")
    if spec is None or spec in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return fashion_mnist(split, image_size=image_size, channels=channels, limit=limit)
    if spec.startswith(("fashion-mnist:", "fashion_mnist:")):
        return fashion_mnist(split, spec.split(":", 1)[1], image_size=image_size, channels=channels, limit=limit)
    path = Path(spec)
    if path.is_dir():
        if _find(path, _FMNIST_FILES["train"][0]) or _find(path, _FMNIST_FILES["test"][0]):
            return fashion_mnist(split, path, image_size=image_size, channels=channels, limit=limit)
        names = {"train": ("train",), "test": ("test", "val", "validation")}[split if split == "train" else "test"]
        for n in names:
            if (path / n).is_dir():
                path = path / n
                break
        else:
            if split != "train":
                raise BlurkitError(f"{spec}: no test/ or val/ sub-folder (of class folders) for evaluation; "
                                   "add one, or give the evaluation data separately where the command "
                                   "allows it (blurkit train --val-data)")
        ds: Dataset = ImageFolder(path, image_size=image_size, channels=channels, skip_bad=skip_bad)
        return _limited(ds, limit)
    if ":" in spec and not path.exists():
        fn = resolve(spec)
        ds = fn(split=split, image_size=image_size, channels=channels)
        if not isinstance(ds, Dataset) and not hasattr(ds, "__getitem__"):
            raise BlurkitError(f"{spec!r} returned {type(ds).__name__}, not a Dataset of (image, label) pairs")
        return _limited(ds, limit)
    raise BlurkitError(f"dataset {spec!r} not found: pass 'fashion-mnist', a folder of IDX files or of "
                       "class sub-folders with images, or 'module:function'")


# ------------------------------------------------------------------------------------ loaders
def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, sampler: torch.utils.data.Sampler | None = None,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` whose shuffling and worker seeds come from ``seed`` (reproducible).

    Args:
        dataset: any map-style dataset of ``(image, label)``.
        batch_size: images per batch.
        shuffle: shuffle with a ``torch.Generator`` seeded by ``seed`` (ignored if ``sampler`` given).
        num_workers: worker processes; each seeds numpy/``random`` via :func:`seed_worker`.

    Example:
        >>> loader = make_loader(fashion_mnist("test", limit=512), 128, shuffle=True, seed=1)
    """
    g = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=num_workers, worker_init_fn=seed_worker, generator=g,
                      drop_last=drop_last, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)
