"""Speed of blurkit.corruptions against the reference per-image algorithms (CPU).

The reference is make_imagenet_c.py as re-implemented in tests/test_corruptions.py (skimage gaussian,
cv2.filter2D disk, the imagecorruptions numpy motion blur, scipy zoom, the sequential glass loop with
np.random.randint per step, numpy noise), one image at a time, as the reference runs. Two pipelines:

* ``float``: the reference on float64 HxWx3 arrays in [0, 1]; blurkit on one float32 batch.
* ``uint8``: as ImageNet-C is made: the reference takes the uint8 image (``np.array(pil) / 255.``) and
  returns ``np.uint8`` of its clipped result times 255 (what is saved); blurkit takes the uint8
  batch and returns the uint8 batch.

blurkit runs one batch of 64 images (3x224x224) with torch's thread count (2 here). The two are timed
in interleaved rounds (``--rounds``, 5; glass blur: 2): each round times ``--ref-images`` reference
images one by one (4; glass blur: 1) and then one blurkit batch, so that both see the same machine
load. Each side's time is the median over all its timings (per image for the reference, per batch
for blurkit), and the speed-up is the ratio of the two medians.

Run: ``flock /tmp/bench.lock python benchmarks/corruptions_speed.py [--severity 1,3,5] [--batch 64]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from skimage import data as skdata
from skimage.transform import resize
from skimage.util import random_noise

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _timing import machine, table  # noqa: E402
from skimage.filters import gaussian as sk_gaussian  # noqa: E402
from test_corruptions import (  # noqa: E402
    ref_defocus_blur,
    ref_gaussian_blur,
    ref_motion_blur,
    ref_zoom_blur,
)

from blurkit import corruptions as C  # noqa: E402


def ref_glass_blur(x, sigma, delta, iterations):
    """The reference loop, drawing np.random.randint at every step as make_imagenet_c.py does."""
    x = np.uint8(sk_gaussian(x, sigma=sigma, channel_axis=-1) * 255)
    H, W = x.shape[:2]
    for _ in range(iterations):
        for h in range(H - delta, delta, -1):
            for w in range(W - delta, delta, -1):
                dx, dy = np.random.randint(-delta, delta, size=(2,))
                hp, wp = h + dy, w + dx
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]  # verbatim (two views: a copy, not a swap)
    return np.clip(sk_gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1)


def references(sev: int):
    p = C.PARAMS["imagenet"]
    s = sev - 1
    return {
        "gaussian_blur": lambda im: ref_gaussian_blur(im, p["gaussian_blur"][s]),
        "defocus_blur": lambda im: ref_defocus_blur(im, *p["defocus_blur"][s]),
        "motion_blur": lambda im: ref_motion_blur(im, *p["motion_blur"][s], np.random.uniform(-45, 45)),
        "zoom_blur": lambda im: ref_zoom_blur(im, C.zoom_factors(sev)),
        "glass_blur": lambda im: ref_glass_blur(im, *p["glass_blur"][s]),
        "gaussian_noise": lambda im: np.clip(im + np.random.normal(size=im.shape, scale=p["gaussian_noise"][s]),
                                             0, 1),
        "shot_noise": lambda im: np.clip(np.random.poisson(im * p["shot_noise"][s]) / p["shot_noise"][s], 0, 1),
        "impulse_noise": lambda im: random_noise(im, mode="s&p", amount=p["impulse_noise"][s]),
    }


def photos(n: int) -> np.ndarray:
    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "clock"]
    out = []
    for name in names:
        img = getattr(skdata, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        h, w = img.shape[:2]
        m = min(h, w)
        img = img[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
        out.append(resize(img, (224, 224), anti_aliasing=True))
    return np.stack([out[i % len(out)] for i in range(n)]).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--severity", default="3", help="severities, comma-separated (e.g. 1,3,5)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ref-images", type=int, default=4,
                    help="reference images timed one by one in each round (glass blur: 1)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (glass blur: at most 2)")
    ap.add_argument("--pipelines", default="float,uint8", help="float, uint8 or both")
    ap.add_argument("--only", default="", help="comma-separated corruption names (default: all)")
    args = ap.parse_args()
    try:
        sevs = [int(v) for v in args.severity.split(",")]
    except ValueError:
        ap.error(f"--severity takes comma-separated integers 1-5; got {args.severity!r}")
    if not all(1 <= v <= 5 for v in sevs):
        ap.error(f"--severity values must be 1-5; got {args.severity!r}")
    pipes = args.pipelines.split(",")
    if not pipes or any(p not in ("float", "uint8") for p in pipes):
        ap.error(f"--pipelines takes float, uint8 or float,uint8; got {args.pipelines!r}")
    wanted = [n for n in args.only.split(",") if n]
    unknown = [n for n in wanted if n not in C.CORRUPTIONS]
    if unknown:
        ap.error(f"--only: unknown corruption(s) {', '.join(unknown)}; choose from {', '.join(C.CORRUPTIONS)}")
    for name in ("batch", "ref_images", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    imgs = photos(args.batch)
    imgs_u8 = np.round(imgs * 255).astype(np.uint8)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().contiguous()
    xu = torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).contiguous()
    names = [n for n in C.CORRUPTIONS if not wanted or n in wanted]
    rows = []
    for sev in sevs:
        refs = references(sev)
        for pipe in pipes:
            for name in names:
                glass = name == "glass_blur"
                n_ref = 1 if glass else args.ref_images
                rounds = min(2, args.rounds) if glass else args.rounds
                ref = refs[name]
                if pipe == "uint8":
                    def run_ref(i, ref=ref):
                        return np.uint8(ref(np.array(imgs_u8[i]) / 255.0) * 255)
                    batch = xu
                else:
                    def run_ref(i, ref=ref):
                        return ref(imgs[i])
                    batch = x
                np.random.seed(0)
                g = torch.Generator().manual_seed(0)
                run_ref(0)  # warm-up, both sides
                C.corrupt(batch, name, sev, generator=g)
                ref_t, bk_t = [], []
                for k in range(rounds):
                    for i in range(n_ref):
                        t0 = time.perf_counter()
                        run_ref((k * n_ref + i) % args.batch)
                        ref_t.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    C.corrupt(batch, name, sev, generator=g)
                    bk_t.append(time.perf_counter() - t0)
                ref_ms = float(np.median(ref_t)) * 1e3
                bk_ms = float(np.median(bk_t)) * 1e3 / args.batch
                rows.append([name, sev, pipe, ref_ms, bk_ms, 1e3 / bk_ms, ref_ms / bk_ms])
    print(f"# corruptions, {args.batch} images 3x224x224, {torch.get_num_threads()} threads, {machine()}")
    print(f"# reference: per image (make_imagenet_c.py semantics); blurkit: one batch; {args.rounds} interleaved"
          " rounds, medians; ms per image")
    print(table(["corruption", "severity", "pipeline", "reference ms/img", "blurkit ms/img", "blurkit img/s",
                 "speed-up"], rows))


if __name__ == "__main__":
    main()
