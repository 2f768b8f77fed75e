"""``blurkit measure``: how blurred is each image? No-reference blur metrics for image files.

For every image (files, or folders of images) the command prints one row: the variance of the
Laplacian (OpenCV idiom, 0-255 units), the blur effect of Crete et al. 2007 (0 sharp .. 1 blurred,
with its vertical and horizontal parts), the share of spectral energy above 0.1 cycles/pixel, the
mean edge width in pixels (Marziliano et al. 2002) and the estimated Gaussian sigma in pixels (Hu &
de Haan 2006); with ``--motion`` also the estimated motion-blur length and angle (cepstrum).
Unreadable files are reported by name on stderr and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_text
from ..errors import BlurkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
PROGRESS_MIN_FILES = 20  # show a progress bar from this many files on

EXAMPLES = """examples:
  blurkit measure photo.jpg
  blurkit measure photos/ --recursive            # every image below photos/
  blurkit measure photos/ --csv -o blur.csv      # CSV file (written atomically)
  blurkit measure a.png b.png --json --motion    # JSON, with motion length and angle
"""

COLUMNS = ("laplacian_variance", "blur_effect", "blur_effect_vertical", "blur_effect_horizontal",
           "high_frequency_ratio", "edge_width", "sigma")
MOTION_COLUMNS = ("motion_length", "motion_angle", "motion_score")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("measure", help="no-reference blur metrics of image files",
                              description=__doc__, epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images")
    p.add_argument("-r", "--recursive", action="store_true", help="also look into sub-folders")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--motion", action="store_true",
                   help="also estimate motion-blur length (px) and angle (degrees, CCW)")
    p.add_argument("-o", "--output", default=None, help="write the result to this file instead of stdout")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(func=run)


def find_images(paths: Iterable[str], recursive: bool) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into image files (sorted per folder); missing paths are reported."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.glob("*")
            found = sorted(f for f in pattern if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            files.extend(found)
        elif path.is_file():
            files.append(path)  # named explicitly: try it whatever its suffix
        else:
            missing.append((str(path), "no such file or folder"))
    return files, missing


def read_image(path: Path) -> torch.Tensor:
    """Read an image with Pillow as ``(C, H, W)``, turned upright by its EXIF orientation (as displayed):
    uint8 grey or RGB; 16-bit as float32 0-255 (divided by 257); 32-bit integer as float32, divided by
    257 when its maximum exceeds 255; 32-bit float as float32 in its own units."""
    from .._io import open_upright

    im = open_upright(path)
    if im.mode in ("I;16", "I;16B", "I;16L"):
        arr = np.asarray(im, dtype=np.float32) / 257.0
    elif im.mode == "I":
        arr = np.asarray(im, dtype=np.float32)
        arr = arr / 257.0 if arr.max(initial=0) > 255 else arr
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
    elif im.mode in ("L", "RGB"):
        arr = np.asarray(im)
    elif im.mode in ("LA", "1"):
        arr = np.asarray(im.convert("L"))
    else:
        arr = np.asarray(im.convert("RGB"))
    t = torch.from_numpy(np.array(arr, copy=True, order="C"))
    return (t[None] if t.dim() == 2 else t.permute(2, 0, 1)).contiguous()


def _safe(fn, *args, **kwargs):
    """Run one metric; ``None`` where the image is too small for it (ValueError)."""
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


def measure_image(x: torch.Tensor, motion: bool = False) -> dict[str, float | None]:
    """All no-reference metrics of one image ``(C, H, W)`` (a metric the image is too small for: None)."""
    from .. import measure as m

    x = x[None]
    row: dict[str, float | None] = {}
    lv = _safe(m.laplacian_variance, x)
    row["laplacian_variance"] = None if lv is None else float(lv[0])
    be = _safe(m.blur_effect, x, return_axes=True)
    row["blur_effect"] = None if be is None else float(be[0].max())
    row["blur_effect_vertical"] = None if be is None else float(be[0, 0])
    row["blur_effect_horizontal"] = None if be is None else float(be[0, 1])
    hf = _safe(m.high_frequency_ratio, x)
    row["high_frequency_ratio"] = None if hf is None else float(hf[0])
    ew = _safe(m.edge_width, x)
    row["edge_width"] = None if ew is None else float(ew[0])
    s = _safe(m.estimate_sigma, x)
    row["sigma"] = None if s is None else float(s[0])
    if motion:
        res = _safe(m.estimate_motion, x, return_score=True)
        for key, v in zip(MOTION_COLUMNS, res if res is not None else (None, None, None)):
            row[key] = None if v is None else float(v[0])
    return row


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.4e}"
    return str(v)


def format_table(rows: list[dict[str, object]], columns: tuple[str, ...]) -> str:
    headers = ("path", *columns)
    cells = [[_fmt(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    for c in cells:
        lines.append("  ".join([c[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(c[1:], widths[1:])]))
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict[str, object]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("path", *columns))
    for r in rows:
        w.writerow([r["path"], *("" if r.get(c) is None else repr(r[c]) for c in columns)])
    return buf.getvalue()


def format_json(rows: list[dict[str, object]], skipped: list[tuple[str, str]]) -> str:
    def clean(v: object) -> object:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    doc = {"images": [{k: clean(v) for k, v in r.items()} for r in rows],
           "skipped": [{"path": p, "error": e} for p, e in skipped]}
    return json.dumps(doc, indent=2) + "\n"


def run(args: argparse.Namespace) -> int:
    files, skipped = find_images(args.paths, args.recursive)
    if not files and not skipped:
        raise BlurkitError(f"no image files found in {', '.join(args.paths)}"
                           + ("" if args.recursive else " (use --recursive for sub-folders)"))
    from tqdm import tqdm

    disable = True if (args.no_progress or len(files) < PROGRESS_MIN_FILES) else None  # None: tty only
    rows: list[dict[str, object]] = []
    with torch.inference_mode():
        for path in tqdm(files, desc="measuring", unit="img", disable=disable, file=sys.stderr):
            try:
                x = read_image(path)
            except Exception as exc:  # Pillow raises many types for broken files
                skipped.append((str(path), f"{type(exc).__name__}: {exc}".strip()))
                continue
            rows.append({"path": str(path), "height": int(x.shape[-2]), "width": int(x.shape[-1]),
                         **measure_image(x, args.motion)})
    for path, err in skipped:
        print(f"blurkit measure: skipped {path}: {err}", file=sys.stderr)
    if not rows:
        raise BlurkitError(f"none of the {len(skipped)} input file(s) could be read as an image")
    columns = COLUMNS + (MOTION_COLUMNS if args.motion else ())
    if args.json:
        text = format_json(rows, skipped)
    elif args.csv:
        text = format_csv(rows, columns)
    else:
        text = format_table(rows, columns)
    if args.output:
        atomic_write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 1 if skipped else 0
