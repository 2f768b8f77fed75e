"""Training throughput with blur: blurkit's batch blur on the training device vs per-image blur in the DataLoader.

Jang & Tong (2024) and Yoshihara et al. (2023) blur each image separately inside the data pipeline
(OpenCV / torchvision on one image at a time). blurkit draws one sigma per image and blurs the whole
batch on the training device in one call. All rows run the same model, optimizer and DataLoader
(uint8 images, default collation); only where and how the "strong" regime's blur happens differs
(sigma in {0, 1, 2, 4, 8} at 224 px, scaled to the image size, kernel 2*ceil(2*sigma)+1).

Rows:
  no blur                 the same loop without blur (upper bound)
  blurkit batch (loop)    bk.train regime "strong" on the batch, in the training loop
  cv2 per image (loader)  cv2.GaussianBlur in Dataset.__getitem__ (the papers' way), main process
  cv2 per image, 1 worker same with one DataLoader worker process
  blurkit per image       bk.gaussian_blur on each image in __getitem__

Two tables: the data + blur pipeline alone (where the blur's cost shows), and whole training steps.
Each number is the median of interleaved rounds, so load from other processes hits all rows alike.

Usage: flock /tmp/bench.lock python benchmarks/train_throughput.py [--sizes 28,112] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine, table  # noqa: E402

import blurkit as bk  # noqa: E402
from blurkit.train import StepRandom, build_regime  # noqa: E402

SIGMAS = np.array([0.0, 1.0, 2.0, 4.0, 8.0])


class Images(Dataset):
    """uint8 images (1, S, S); optional per-image blur in __getitem__ with one sigma per item."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, blur: str | None, size: int, seed: int = 0) -> None:
        self.x, self.y, self.blur, self.scale = x, y, blur, size / 224
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = self.x[i]
        if self.blur is None:
            return img, self.y[i]
        s = float(self.rng.choice(SIGMAS)) * self.scale
        if s == 0:
            return img, self.y[i]
        if self.blur == "cv2":
            r = math.ceil(2 * s)
            out = cv2.GaussianBlur(img[0].numpy(), (2 * r + 1, 2 * r + 1), s, borderType=cv2.BORDER_REFLECT_101)
            return torch.from_numpy(out)[None], self.y[i]
        return bk.gaussian_blur(img, s, truncate=2.0), self.y[i]


def run(size: int, mode: str, steps: int, batch: int, width: int, model_on: bool = True) -> float:
    """Images per second over ``steps`` batches (after 2 warm-up batches); without the model if not ``model_on``."""
    torch.manual_seed(0)
    n = batch * (steps + 2)
    base = _DATA.get(size)
    if base is None:
        base = _DATA[size] = bk.data.fashion_mnist("train", image_size=size, limit=n)
    blur_in_loader = {"cv2": "cv2", "cv2-w1": "cv2", "bk-item": "bk"}.get(mode)
    ds = Images(base.images[:n], base.labels[:n], blur_in_loader, size)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=1 if mode == "cv2-w1" else 0,
                        generator=torch.Generator().manual_seed(0))
    model = bk.models.build_model("small-cnn", 10, 1, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    regime = build_regime("strong", {}, image_size=size)
    done, t0 = 0, None
    for k, (xb, yb) in enumerate(loader):
        x = xb.float().div_(255)
        if mode == "batch":
            x = regime.blur(x, StepRandom(0, 0, k, 0, x.shape[0]))
        x = (x - 0.449) / 0.226
        if model_on:
            opt.zero_grad()
            F.cross_entropy(model(x), yb).backward()
            opt.step()
        if k >= 2:
            done += x.shape[0]
        if k == 1:  # the clock starts after two warm-up steps, before batch 2 is loaded (it is counted)
            t0 = time.perf_counter()
    return done / (time.perf_counter() - t0)


_DATA: dict[int, bk.data.TensorImageDataset] = {}

MODES = [("no blur", "none"), ("blurkit batch (training loop)", "batch"), ("cv2 per image (loader)", "cv2"),
         ("cv2 per image (loader, 1 worker)", "cv2-w1"), ("blurkit per image (loader)", "bk-item")]


def measure(sizes: list[int], steps: int, batch: int, width: int, rounds: int, model_on: bool) -> list[list]:
    """Median img/s per (size, mode) over ``rounds`` interleaved rounds (noise hits every mode alike)."""
    rows = []
    for size in sizes:
        rates: dict[str, list[float]] = {m: [] for _, m in MODES}
        for _ in range(rounds):
            for _, m in MODES:
                rates[m].append(run(size, m, steps, batch, width, model_on))
        med = {m: statistics.median(v) for m, v in rates.items()}
        for label, m in MODES:
            rows.append([f"{size}x{size}", label, med[m], med[m] / med["batch"]])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="28,112", help="image sides for the training table")
    ap.add_argument("--pipeline-sizes", default="28,112,224", help="image sides for the data+blur-only table")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    head = ["images", "where the blur happens", "img/s", "vs blurkit batch"]
    pipe = measure([int(s) for s in a.pipeline_sizes.split(",")], 3 * a.steps, a.batch, a.width, a.rounds, False)
    print(f"data + blur only (no model): DataLoader -> float -> strong-regime blur -> normalise; batch {a.batch}, "
          f"median of {a.rounds} interleaved rounds; {machine()}")
    print(table(head, pipe))
    train_rows = measure([int(s) for s in a.sizes.split(",")], a.steps, a.batch, a.width, a.rounds, True)
    print(f"\ntraining (small-cnn width {a.width}, SGD step), same pipeline; {a.steps} timed steps, median of "
          f"{a.rounds} rounds")
    print(table(head, train_rows))


if __name__ == "__main__":
    main()
