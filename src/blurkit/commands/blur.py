"""``blurkit blur``: blur image files (one or many) with any blur family."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..errors import BlurkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

EXAMPLES = """examples:
  blurkit blur photo.png out.png --sigma 3
  blurkit blur photo.png out.png --sigma 4 --sigma-y 1 --angle 30 --border replicate
  blurkit blur photo.png out.png --family motion --length 12.5 --angle 20
  blurkit blur photo.png out.png --family defocus --radius 4
  blurkit blur photos/ blurred/ --sigma 2 --truncate 2     # a folder: every image in it
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("blur", help="blur image files", description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("output", help="output file (for one input file) or folder")
    p.add_argument("--family", choices=("gaussian", "motion", "defocus", "box"), default="gaussian")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian sigma in pixels")
    p.add_argument("--sigma-y", type=float, default=None, help="Gaussian sigma along y (anisotropic)")
    p.add_argument("--angle", type=float, default=0.0, help="rotation/direction in degrees (CCW)")
    p.add_argument("--truncate", type=float, default=3.0, help="Gaussian radius = ceil(truncate*sigma)")
    p.add_argument("--length", type=float, default=None, help="motion streak length in pixels")
    p.add_argument("--radius", type=float, default=None, help="defocus disk radius in pixels")
    p.add_argument("--size", type=int, default=None, help="box size (odd)")
    p.add_argument("--border", default="reflect",
                   choices=("reflect", "symmetric", "replicate", "circular", "constant"))
    p.set_defaults(func=run)


_HIGH_DEPTH = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I": np.int32, "F": np.float32}


def _read(path: Path) -> tuple[torch.Tensor, str]:
    """An image file as ``(C, H, W)`` and the mode it is written back in, turned upright by its EXIF
    orientation. uint8 for L, LA, RGB and RGBA (palette images become RGB, or RGBA when they have
    transparency; other modes RGB); 16-bit, 32-bit integer and float images as float32 in their own
    units, written back in their own depth."""
    from PIL import UnidentifiedImageError

    from .._io import open_upright

    try:
        im = open_upright(path)
        mode = im.mode
        if mode in _HIGH_DEPTH:
            arr = np.asarray(im).astype(np.float32)
        else:
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGB")
            mode = im.mode
            arr = np.array(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise BlurkitError(f"cannot read image {path}: {exc}") from None
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    return t.contiguous(), mode


def _write(t: torch.Tensor, mode: str, path: Path) -> None:
    """Write ``(C, H, W)`` atomically (full permissions as a plain write, synced) in ``mode``."""
    from PIL import Image

    from .._io import atomic_write

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise BlurkitError(f"output {path} needs an image file suffix (.png, .jpg, .tif, ...); to write into "
                           "a folder, create the folder first")
    arr = t.permute(1, 2, 0).numpy() if t.shape[0] > 1 else t[0].numpy()
    if mode in _HIGH_DEPTH:
        dt = _HIGH_DEPTH[mode]
        if dt is not np.float32:
            info = np.iinfo(dt)
            arr = np.clip(np.rint(arr), info.min, info.max)
        arr = arr.astype(dt)
    pil = Image.fromarray(np.ascontiguousarray(arr))  # uint16 -> I;16, int32 -> I, float32 -> F, (H, W, 2) -> LA
    try:
        atomic_write(path, lambda fh: pil.save(fh, format=fmt))
    except (OSError, ValueError, KeyError) as exc:  # e.g. a mode the format cannot hold (RGBA as JPEG)
        raise BlurkitError(f"cannot write {path} as {fmt} (image mode {mode}): {exc}") from None


def _blur_image(x: torch.Tensor, mode: str, args: argparse.Namespace) -> torch.Tensor:
    """Blur one image read by :func:`_read`. An alpha channel is blurred with the colour premultiplied
    by it (a transparent pixel adds no colour, so no dark fringe at a transparent edge)."""
    if mode not in ("LA", "RGBA"):
        return blur_tensor(x, args)
    c, a = x[:-1].float(), x[-1:].float() / 255.0
    both = blur_tensor(torch.cat([c * a, a]), args)  # one call: the same kernel for colour and alpha
    pc, pa = both[:-1], both[-1:]
    colour = torch.where(pa > 1e-6, pc / pa.clamp_min(1e-6), torch.zeros_like(pc))
    out = torch.cat([colour, pa * 255.0])
    return out.round_().clamp_(0, 255).to(torch.uint8)


def blur_tensor(x: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """Apply the blur described by the parsed arguments to a uint8 image ``(C, H, W)``."""
    import blurkit as bk

    if args.family == "gaussian":
        if args.sigma is None:
            raise BlurkitError("--sigma is required for --family gaussian")
        return bk.gaussian_blur(x, args.sigma, sigma_y=args.sigma_y, angle=args.angle, truncate=args.truncate,
                                border=args.border)
    if args.family == "motion":
        if args.length is None:
            raise BlurkitError("--length is required for --family motion")
        return bk.motion_blur(x, args.length, args.angle, border=args.border)
    if args.family == "defocus":
        if args.radius is None:
            raise BlurkitError("--radius is required for --family defocus")
        return bk.defocus_blur(x, args.radius, border=args.border)
    if args.size is None:
        raise BlurkitError("--size is required for --family box")
    return bk.box_blur(x, args.size, border=args.border)


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise BlurkitError(f"input {src} does not exist")
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BlurkitError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {src}")
        pairs = [(f, dst / f.relative_to(src)) for f in files]
    else:
        pairs = [(src, dst / src.name if dst.is_dir() else dst)]
    failed = 0
    for a, b in pairs:
        try:
            x, mode = _read(a)
            _write(_blur_image(x, mode, args), mode, b)
        except (BlurkitError, OSError, ValueError) as exc:
            if len(pairs) == 1:
                raise
            print(f"blurkit: skipped {a}: {exc}")
            failed += 1
    print(f"blurred {len(pairs) - failed} image(s) -> {dst}" + (f"; {failed} skipped" if failed else ""))
    return 1 if failed else 0
