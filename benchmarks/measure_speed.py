"""Speed of blurkit.measure against the per-image reference implementations, one run, one table.

A batch of 64 RGB 224x224 float32 images (crops of the scikit-image photographs, blurred with
sigma 0-3): blurkit computes each metric for the whole batch in one call; scikit-image / OpenCV are
called once per image in a Python loop (how they are used). Both sides run on one thread
(``torch.set_num_threads(1)``; the peers are single-threaded), and both the process CPU time and the
wall time are reported: on a shared machine the wall time includes waiting for a core, the CPU time
does not. Run with ``flock /tmp/bench.lock python benchmarks/measure_speed.py [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data
from skimage.measure import blur_effect as sk_blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, table  # noqa: E402

import blurkit as bk  # noqa: E402
from blurkit import measure as M  # noqa: E402


def batch(n: int = 64, size: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    photos = [getattr(data, k)() for k in ("astronaut", "coffee", "chelsea", "rocket")]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y = int(torch.randint(0, p.shape[0] - size + 1, (1,), generator=g))
        x = int(torch.randint(0, p.shape[1] - size + 1, (1,), generator=g))
        out.append(torch.from_numpy(p[y:y + size, x:x + size].astype(np.float32) / 255).permute(2, 0, 1))
    sig = torch.rand(n, generator=g) * 3
    return bk.gaussian_blur(torch.stack(out).contiguous(), sig)


def clock(fn, repeat: int, warmup: int = 1) -> tuple[float, float]:
    """Median (CPU ms, wall ms) of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for blurkit (default 1)")
    torch.set_num_threads(ap.parse_args().threads)
    x = batch()
    ref = bk.gaussian_blur(x, 1.0)
    # the peers get the same float32 images as blurkit (scikit-image and OpenCV keep float32 as float32)
    xs = [np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in x]
    rs = [np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in ref]
    x32 = xs
    cv2.setNumThreads(1)  # single-threaded like the torch side
    n = x.shape[0]
    cases = [
        ("blur_effect", lambda: M.blur_effect(x), "skimage.measure.blur_effect",
         lambda: [sk_blur_effect(a, channel_axis=-1) for a in xs]),
        ("ssim", lambda: M.ssim(x, ref), "skimage structural_similarity",
         lambda: [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1) for a, b in zip(xs, rs)]),
        ("laplacian_variance", lambda: M.laplacian_variance(x), "cv2.Laplacian(...).var()",
         lambda: [cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_32F, ksize=1).var() for a in x32]),
        ("psnr", lambda: M.psnr(x, ref), "skimage peak_signal_noise_ratio",
         lambda: [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(xs, rs)]),
    ]
    rows = []
    for name, ours, peer_name, peer in cases:
        c_ours, w_ours = clock(ours, 5)
        c_peer, w_peer = clock(peer, 3)
        rows.append([name, c_ours, w_ours, peer_name, c_peer, w_peer, c_peer / c_ours, w_peer / w_ours])
    for name, fn in (("high_frequency_ratio", lambda: M.high_frequency_ratio(x)),
                     ("edge_width", lambda: M.edge_width(x)),
                     ("estimate_sigma", lambda: M.estimate_sigma(x)),
                     ("estimate_motion", lambda: M.estimate_motion(x)),
                     ("ms_ssim", lambda: M.ms_ssim(x[..., :176, :176],
                                                   ref[..., :176, :176])),
                     ("gmsd", lambda: M.gmsd(x, ref))):
        c, w = clock(fn, 3)
        rows.append([name, c, w, "-", "-", "-", "-", "-"])
    print(f"blurkit.measure, batch of {n} RGB 224x224 float32 images (ms_ssim: 176x176 crops); {machine()}")
    print("one run; median of 5 (blurkit) / 3 (per-image loops and rows without a peer) calls; "
          "CPU = process CPU time, wall = elapsed\n")
    print(table(["blurkit", "CPU ms", "wall ms", "peer (per-image loop)", "peer CPU ms", "peer wall ms",
                 "speed-up (CPU)", "speed-up (wall)"], rows))


if __name__ == "__main__":
    main()
