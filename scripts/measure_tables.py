"""Accuracy tables of blurkit.measure.estimate_sigma / estimate_motion on the scikit-image photographs.

Each photograph (grey and colour versions, float in [0, 1]) is blurred with ``bk.gaussian_blur``
(sigma 0.5-6 px) or ``bk.motion_blur`` (length 9-31 px, several angles), then the estimators are run
on the whole batch. Prints markdown tables (pasted into docs/measure.md). Needs scikit-image.

    python scripts/measure_tables.py [--sigma] [--motion] [--quantise]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from skimage import data

import blurkit as bk

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket")
SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
LENGTHS = (9, 15, 21, 31)
ANGLES = (0.0, 30.0, 75.0, 120.0, 160.0)


def photographs() -> list[tuple[str, torch.Tensor]]:
    """(name, (1, C, H, W) float32 in [0, 1]) for the grey and colour versions of each photograph."""
    out = []
    for name in PHOTOS:
        a = getattr(data, name)().astype(np.float32) / 255.0
        if a.ndim == 2:
            out.append((f"{name} (grey)", torch.from_numpy(a)[None, None]))
            continue
        rgb = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        out.append((f"{name} (colour)", rgb))
        grey = (0.2125 * rgb[:, :1] + 0.7154 * rgb[:, 1:2] + 0.0721 * rgb[:, 2:]).contiguous()
        out.append((f"{name} (grey)", grey))
    return out


def _q(x: torch.Tensor, quantise: bool) -> torch.Tensor:
    return (x * 255).round() / 255 if quantise else x


def sigma_table(quantise: bool = False) -> tuple[str, list[float]]:
    rows, errors = [], []
    header = "| image | " + " | ".join(f"{s:g}" for s in SIGMAS) + " | median rel. error |"
    sep = "|---|" + "---|" * (len(SIGMAS) + 1)
    for name, x in photographs():
        batch = _q(bk.gaussian_blur(x.expand(len(SIGMAS), -1, -1, -1), torch.tensor(SIGMAS)), quantise)
        est = bk.measure.estimate_sigma(batch).tolist()
        rel = [abs(e - s) / s for e, s in zip(est, SIGMAS)]
        errors += rel
        mono = all(b > a for a, b in zip(est, est[1:]))
        rows.append(f"| {name}{'' if mono else ' (not monotonic)'} | "
                    + " | ".join(f"{e:.2f}" for e in est) + f" | {100 * statistics.median(rel):.1f}% |")
    return "\n".join([header, sep, *rows]), errors


def motion_table(quantise: bool = False) -> tuple[str, list[float], list[float]]:
    rows, ang_err, len_err = [], [], []
    header = "| image | length | angle errors (deg) at " + ", ".join(f"{a:g}" for a in ANGLES) \
        + " | estimated lengths |"
    sep = "|---|---|---|---|"
    for name, x in photographs():
        for L in LENGTHS:
            n = len(ANGLES)
            batch = _q(bk.motion_blur(x.expand(n, -1, -1, -1), float(L), torch.tensor(ANGLES)), quantise)
            length, angle = bk.measure.estimate_motion(batch)
            d = [abs((a - t + 90) % 180 - 90) for a, t in zip(angle.tolist(), ANGLES)]
            ang_err += d
            len_err += [abs(v - L) / L for v in length.tolist()]
            rows.append(f"| {name} | {L} | " + ", ".join(f"{v:.1f}" for v in d) + " | "
                        + ", ".join(f"{v:.1f}" for v in length.tolist()) + " |")
    return "\n".join([header, sep, *rows]), ang_err, len_err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sigma", action="store_true")
    p.add_argument("--motion", action="store_true")
    p.add_argument("--quantise", action="store_true", help="round the blurred images to 8 bits first")
    a = p.parse_args()
    both = not (a.sigma or a.motion)
    if a.sigma or both:
        t0 = time.perf_counter()
        table, err = sigma_table(a.quantise)
        print(table)
        print(f"\nestimate_sigma: median relative error {100 * statistics.median(err):.1f}%, "
              f"mean {100 * statistics.mean(err):.1f}%, {len(err)} cases, "
              f"{time.perf_counter() - t0:.1f} s\n")
    if a.motion or both:
        t0 = time.perf_counter()
        table, ae, le = motion_table(a.quantise)
        print(table)
        ok = sum(1 for x, y in zip(ae, le) if x <= 10 and y <= 0.2)
        print(f"\nestimate_motion: angle error median {statistics.median(ae):.1f} deg "
              f"(<= 10 deg in {sum(v <= 10 for v in ae)}/{len(ae)}), length error median "
              f"{100 * statistics.median(le):.1f}% (<= 20% in {sum(v <= 0.2 for v in le)}/{len(le)}); "
              f"both within the floor in {ok}/{len(ae)}; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
