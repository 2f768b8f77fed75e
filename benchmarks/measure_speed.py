"""Speed of blurkit.measure against the per-image reference implementations, one run, one table.

A batch of 64 RGB 224x224 float32 images (crops of the scikit-image photographs, blurred with
sigma 0-3): blurkit computes each metric for the whole batch in one call; scikit-image / OpenCV are
called once per image in a Python loop (how they are used). Run with
``flock /tmp/bench.lock python benchmarks/measure_speed.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data
from skimage.measure import blur_effect as sk_blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Timer, machine, table  # noqa: E402

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


def main() -> None:
    x = batch()
    ref = bk.gaussian_blur(x, 1.0)
    xs = [np.ascontiguousarray(im.permute(1, 2, 0).double().numpy()) for im in x]
    rs = [np.ascontiguousarray(im.permute(1, 2, 0).double().numpy()) for im in ref]
    x32 = [a.astype(np.float32) for a in xs]
    slow, fast = Timer(repeat=3, warmup=1), Timer(repeat=7, warmup=2)
    n = x.shape[0]
    cases = [
        ("blur_effect", lambda: M.blur_effect(x), "skimage.measure.blur_effect",
         lambda: [sk_blur_effect(a, channel_axis=-1) for a in xs]),
        ("ssim", lambda: M.ssim(x, ref), "skimage structural_similarity (gaussian)",
         lambda: [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1) for a, b in zip(xs, rs)]),
        ("laplacian_variance", lambda: M.laplacian_variance(x), "cv2.Laplacian(...).var()",
         lambda: [cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_32F, ksize=1).var() for a in x32]),
        ("psnr", lambda: M.psnr(x, ref), "skimage peak_signal_noise_ratio",
         lambda: [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(xs, rs)]),
    ]
    rows = []
    for name, ours, peer_name, peer in cases:
        t_ours = fast(ours)
        t_peer = slow(peer)
        rows.append([name, t_ours, n / t_ours * 1e3, peer_name, t_peer, n / t_peer * 1e3, t_peer / t_ours])
    for name, fn in (("high_frequency_ratio", lambda: M.high_frequency_ratio(x)),
                     ("edge_width", lambda: M.edge_width(x)),
                     ("estimate_sigma", lambda: M.estimate_sigma(x)),
                     ("estimate_motion", lambda: M.estimate_motion(x)),
                     ("gmsd", lambda: M.gmsd(x, ref))):
        t = slow(fn)
        rows.append([name, t, n / t * 1e3, "-", "-", "-", "-"])
    print(f"blurkit.measure, batch of {n} RGB 224x224 float32 images; {machine()}")
    print("one run; median of 7 (blurkit) / 3 (per-image loops, and the rows without a peer) calls\n")
    print(table(["blurkit", "ms", "img/s", "peer (per-image loop)", "peer ms", "peer img/s", "speed-up"], rows))


if __name__ == "__main__":
    main()
