"""Throughput of blur augmentation with the Jang & Tong "strong" regime: blurkit vs kornia.

The workload: one sigma per image from {0, 1, 2, 4, 8} (equal weights, 80% of images blurred),
Gaussian kernel size 2*ceil(2*sigma)+1 (truncate 2), reflect border, float32 batches
256x1x224x224 (grey, as in the paper) and 64x3x224x224.

Peers, side by side in one run:

* ``blurkit``: ``bk.presets.transform("strong")`` - a RandomGaussianBlur; the timing includes
  drawing the sigmas; each image's kernel has its own size (1, 5, 9, 17 or 33 taps).
* ``kornia RandomGaussianBlur``: ``kornia.augmentation.RandomGaussianBlur(kernel_size=33,
  sigma=(1, 8), p=0.8)``: kornia draws sigma per image from a range (it cannot draw from a weighted
  set, and a drawn 0 raises) and uses one kernel size for the whole batch, so 33 x 33 (separable)
  covers sigma 8 with truncate 2; p=0.8 blurs the same 80% of images.
* ``paper loop (kornia per image)``: the per-image loop of Jang & Tong's ``add_blur_with``:
  ``numpy.random.choice`` per image, then ``kornia.filters.gaussian_blur2d`` on that image with
  kernel ``2*ceil(2*sigma)+1`` (the normalisation step of their function is left out: blur only).

Usage::

    flock /tmp/bench.lock python benchmarks/augment_throughput.py            # CPU
    python benchmarks/augment_throughput.py --device cuda                    # GPU, when there is one
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import Timer, bandwidth_bound_ms, machine, table  # noqa: E402

import blurkit as bk  # noqa: E402

SIGMAS = [0.0, 1.0, 2.0, 4.0, 8.0]
WEIGHTS = [0.2] * 5


def paper_loop(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Jang & Tong's add_blur_with, blur part: one kornia call per image."""
    import kornia

    out = torch.zeros_like(images)
    w = np.asarray(WEIGHTS, dtype=np.float64)
    w = w / w.sum()
    for i in range(images.shape[0]):
        sigma = float(rng.choice(SIGMAS, 1, p=w)[0])
        k = 2 * math.ceil(2.0 * sigma) + 1
        if sigma == 0:
            out[i] = images[i]
        else:
            out[i] = kornia.filters.gaussian_blur2d(images[i:i + 1], (k, k), (sigma, sigma))[0]
    return out


def run_shape(shape: str, dev: torch.device, timer: Timer, loop_timer: Timer, sync: bool) -> list[list]:
    """Time every peer on one batch shape; rows of [shape, method, ms, img/s, ratio]."""
    import kornia.augmentation as KA

    B, C, H, W = (int(v) for v in shape.lower().split("x"))
    x = torch.rand(B, C, H, W, device=dev)
    ours = bk.presets.transform("strong", seed=0)
    korn = KA.RandomGaussianBlur(kernel_size=33, sigma=(1.0, 8.0), p=0.8)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        t_ours = timer(lambda: ours(x))
        t_korn = timer(lambda: korn(x))
        t_loop = loop_timer(lambda: paper_loop(x, rng))
    t_bw = bandwidth_bound_ms(x, Timer(repeat=5, sync=sync))
    rows = []
    for name, t in (("blurkit RandomGaussianBlur (strong preset)", t_ours),
                    ("kornia RandomGaussianBlur (33x33, p=0.8)", t_korn),
                    ("paper loop (kornia per image)", t_loop),
                    ("copy of the batch (memory bound)", t_bw)):
        rows.append([shape, name, t, B / (t / 1e3), t / t_ours])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions per method (median)")
    ap.add_argument("--loop-repeat", type=int, default=2, help="timed repetitions of the per-image loop")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default). On a machine shared with other jobs, 1 "
                         "avoids thread oversubscription, which slows many small calls (the per-image loop) most")
    ap.add_argument("--shapes", default="256x1x224x224,64x3x224x224",
                    help="comma-separated BxCxHxW batch shapes")
    args = ap.parse_args()
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        ap.error(f"--device must be cpu, or cuda on a machine with CUDA (torch.cuda.is_available() is "
                 f"{torch.cuda.is_available()}); got {args.device!r}")

    import kornia

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = dev.type == "cuda"
    timer = Timer(repeat=args.repeat, warmup=2, sync=sync)
    loop_timer = Timer(repeat=args.loop_repeat, warmup=1, sync=sync)
    print(f"# augment throughput - {machine()}, device {dev}, kornia {kornia.__version__}")
    print("# strong regime: sigma in {0,1,2,4,8} per image, truncate 2, reflect; median of repeats; "
          "one run (timings on a shared machine are noisy)\n")
    rows = []
    for shape in args.shapes.split(","):
        rows += run_shape(shape, dev, timer, loop_timer, sync)
    print(table(["batch", "method", "ms/batch", "img/s", "time / blurkit"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
