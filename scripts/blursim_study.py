"""Evidence for docs/losses.md: BlurSim on photographs, and BlurSim vs MSE for training a deblurring CNN.

Part 1 (``--part pairs``): for grey 128 x 128 scikit-image photographs A, blurred copies A' (Gaussian,
several sigmas) and the other photographs B, print BlurSim (and its two terms), MSE and 1 - SSIM, and
how far apart each metric puts "A vs a different photograph" and "A vs its blurred copy".
Writes docs/img/losses_pairs.png.

Part 2 (``--part train``): a small residual CNN learns to deblur Fashion-MNIST (28 x 28, Gaussian
blur with sigma ~ U[0.5, 2.5] per image) with the MSE loss and with BlurSim (+ AlphaSchedule), the
same initial weights, batches and number of steps; PSNR / SSIM (scikit-image) on held-out test images.
Writes docs/img/losses_deblur.png.

Run from the repository root (CPU, a few minutes)::

    python scripts/blursim_study.py --part pairs
    python scripts/blursim_study.py --part train --steps 600

Needs scikit-image (dev extra) besides blurkit.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage import color, data, transform  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402
from torch import nn  # noqa: E402

import blurkit as bk  # noqa: E402
from blurkit import losses as L  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "clock")
SIGMAS = (0.5, 1.0, 2.0, 4.0)


def save_fig(fig: plt.Figure, name: str) -> Path:
    """Save a PNG atomically under docs/img."""
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / name
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------- part 1
def photo(name: str, size: int = 128) -> np.ndarray:
    im = getattr(data, name)()
    if im.ndim == 3:
        im = color.rgb2gray(im[..., :3])
    im = im.astype(np.float64)
    if im.max() > 1.0:
        im = im / 255.0
    return transform.resize(im, (size, size), anti_aliasing=True)


def metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    ta, tb = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
    return {
        "blursim": float(L.blursim(ta, tb, 0.8)),
        "general": float(L.general_term(ta, tb)),
        "specific": float(L.specific_term(ta, tb)),
        "mse": float(np.mean((a - b) ** 2)),
        "rmse": float(np.sqrt(np.mean((a - b) ** 2))),
        "1-ssim": 1.0 - float(structural_similarity(a, b, data_range=1.0)),
    }


def part_pairs() -> dict:
    ims = {n: photo(n) for n in PHOTOS}
    rows = []
    for a in PHOTOS:
        A = ims[a]
        tA = torch.from_numpy(A)[None, None]
        sig = torch.tensor(SIGMAS, dtype=torch.float64)
        blurred = bk.gaussian_blur(tA.expand(len(SIGMAS), 1, -1, -1), sig)
        close = {s: metrics(A, blurred[i, 0].numpy()) for i, s in enumerate(SIGMAS)}
        others = [metrics(A, ims[b]) for b in PHOTOS if b != a]
        far = {k: float(np.mean([o[k] for o in others])) for k in others[0]}
        far_min = {k: float(np.min([o[k] for o in others])) for k in others[0]}
        shifted = metrics(A, np.roll(A, (2, 2), axis=(0, 1)))
        rows.append({"A": a, "close": close, "shift2": shifted, "far_mean": far, "far_min": far_min})

    keys = ("blursim", "mse", "1-ssim")
    print("\n### A vs its blurred copy A' (Gaussian sigma in px) and vs the other photographs B "
          "(grey, 128 x 128, [0, 1])\n")
    head = ("| A | metric | " + " | ".join(f"A' sigma {s:g}" for s in SIGMAS)
            + " | A shifted 2 px | B (mean of 5) | B (closest) |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        for k in keys:
            vals = " | ".join(f"{r['close'][s][k]:.4g}" for s in SIGMAS)
            print(f"| {r['A']} | {k} | {vals} | {r['shift2'][k]:.4g} | {r['far_mean'][k]:.4g} | "
                  f"{r['far_min'][k]:.4g} |")

    print("\n### Separation: D(A, closest B) / D(A, A'), mean over the 6 photographs "
          "(higher = the blurred copy is ranked relatively closer)\n")
    print("| metric | " + " | ".join(f"sigma {s:g}" for s in SIGMAS) + " |")
    print("|---|" + "---|" * len(SIGMAS))
    sep: dict[str, dict[float, float]] = {}
    for k in ("blursim", "general", "specific", "mse", "rmse", "1-ssim"):
        sep[k] = {s: float(np.mean([r["far_min"][k] / max(r["close"][s][k], 1e-300) for r in rows]))
                  for s in SIGMAS}
        print(f"| {k} | " + " | ".join(f"{sep[k][s]:.3g}" for s in SIGMAS) + " |")
    # The README's own scenario: two differently blurred copies of one scene (left half vs right half
    # blurred, sigma 3), against the closest other photograph blurred the same way as the first copy.
    half = {k: [] for k in ("blursim", "general", "specific", "mse", "rmse", "1-ssim")}
    halves = {}
    for n in PHOTOS:
        img = torch.from_numpy(ims[n])[None, None]
        bl = bk.gaussian_blur(img, 3.0)[0, 0].numpy()
        left, right = ims[n].copy(), ims[n].copy()
        left[:, :64], right[:, 64:] = bl[:, :64], bl[:, 64:]
        halves[n] = (left, right)
    for a in PHOTOS:
        m = metrics(*halves[a])
        others = [metrics(halves[a][0], halves[b][0]) for b in PHOTOS if b != a]
        for k in half:
            half[k].append(min(o[k] for o in others) / m[k])
    print("\nTwo differently blurred copies of A (left half vs right half blurred, sigma 3): "
          "D(left-blurred A, closest left-blurred B) / D(left-blurred A, right-blurred A), mean: "
          + ", ".join(f"{k} {np.mean(v):.3g}" for k, v in half.items()))
    print("\nSame ratio for A shifted by 2 px (circular): " + ", ".join(
        f"{k} {np.mean([r['far_min'][k] / max(r['shift2'][k], 1e-300) for r in rows]):.3g}"
        for k in ("blursim", "specific", "mse", "rmse", "1-ssim")) + " (general: 0 for every shift)")

    # Figure: each metric vs sigma, divided by its mean distance to the other photographs.
    fine = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    for ax, k in zip(axes, ("blursim", "rmse", "1-ssim")):
        for a in PHOTOS:
            A = ims[a]
            tA = torch.from_numpy(A)[None, None]
            bl = bk.gaussian_blur(tA.expand(len(fine), 1, -1, -1), torch.from_numpy(fine))
            kk = "mse" if k == "rmse" else k
            vals = np.array([metrics(A, bl[i, 0].numpy())[kk] for i in range(len(fine))])
            far = np.mean([metrics(A, ims[b])[kk] for b in PHOTOS if b != a])
            if k == "rmse":
                vals, far = np.sqrt(vals), np.sqrt(far)
            ax.plot(fine, vals / far, marker="o", ms=3, label=a)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks([0.25, 0.5, 1, 2, 4, 8])
        ax.set_xticklabels(["0.25", "0.5", "1", "2", "4", "8"])
        ax.minorticks_off()
        ax.set_xlabel("Gaussian sigma of A' (px)")
        ax.set_title(f"{k}(A, A') / mean {k}(A, B)")
    axes[0].legend(fontsize=7)
    print("\nwrote", save_fig(fig, "losses_pairs.png"))
    return {"rows": rows, "separation": {k: {str(s): v for s, v in d.items()} for k, d in sep.items()}}


# ------------------------------------------------------------------------------------- part 2
def read_idx(path: Path) -> np.ndarray:
    """Minimal IDX reader (MNIST format), gzip or raw."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class TinyDeblur(nn.Module):
    """Residual image-to-image CNN: x + f(x), f = 4 conv layers of width ``w``."""

    def __init__(self, w: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def evaluate(model: nn.Module, xb: torch.Tensor, xs: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        out = torch.cat([model(xb[i: i + 500]) for i in range(0, len(xb), 500)]).clamp(0, 1)
    o, t = out[:, 0].double().numpy(), xs[:, 0].double().numpy()
    psnr = float(np.mean([peak_signal_noise_ratio(t[i], o[i], data_range=1.0) for i in range(len(o))]))
    ssim = float(np.mean([structural_similarity(t[i], o[i], data_range=1.0) for i in range(len(o))]))
    return {"psnr": psnr, "ssim": ssim, "blursim": float(L.blursim(out.double(), xs.double(), 0.5)),
            "mse": float(F.mse_loss(out, xs))}


def part_train(steps: int, n_train: int, n_test: int, batch: int, seed: int) -> dict:
    root = Path("/usr/share/datasets/fashion-mnist")
    tr = torch.from_numpy(read_idx(root / "train-images-idx3-ubyte.gz")[:n_train].copy())
    te = torch.from_numpy(read_idx(root / "t10k-images-idx3-ubyte.gz")[:n_test].copy())
    tr, te = tr.float()[:, None] / 255, te.float()[:, None] / 255
    g = torch.Generator().manual_seed(seed)
    te_sigma = torch.empty(n_test).uniform_(0.5, 2.5, generator=g)
    te_blur = bk.gaussian_blur(te, te_sigma)
    base = evaluate(nn.Identity(), te_blur, te)
    print(f"\nFashion-MNIST deblurring: {n_train} train / {n_test} test images, sigma ~ U[0.5, 2.5], "
          f"{steps} Adam steps of batch {batch}")
    print(f"blurred input (no model): PSNR {base['psnr']:.2f} dB, SSIM {base['ssim']:.4f}")

    # The same batches and blurs for every loss.
    order = torch.randint(0, n_train, (steps, batch), generator=g)
    sig = torch.empty(steps, batch).uniform_(0.5, 2.5, generator=g)

    torch.manual_seed(seed)
    init = TinyDeblur().state_dict()

    def run(name: str, make_loss) -> dict:
        model = TinyDeblur()
        model.load_state_dict(init)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched_lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        loss_fn, on_step = make_loss()
        t0 = time.perf_counter()
        for i in range(steps):
            x = tr[order[i]]
            xb = bk.gaussian_blur(x, sig[i])
            loss = loss_fn(model(xb), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched_lr.step()
            on_step()
        secs = time.perf_counter() - t0
        res = evaluate(model, te_blur, te)
        res["train_s"] = secs
        print(f"{name:28s} PSNR {res['psnr']:.2f} dB  SSIM {res['ssim']:.4f}  BlurSim {res['blursim']:.4f}  "
              f"({secs:.0f} s)")
        res["model"] = model
        return res

    def mse():
        return nn.MSELoss(), (lambda: None)

    def blursim_sched():
        s = bk.AlphaSchedule(0.9, 0.1, steps=steps, kind="cosine")
        return bk.BlurSim(alpha=s), s.step

    def blursim_fixed():
        return bk.BlurSim(alpha=0.5), (lambda: None)

    results = {"blurred input": base}
    results["MSE"] = run("MSE", mse)
    results["BlurSim + AlphaSchedule"] = run("BlurSim, alpha 0.9->0.1 cosine", blursim_sched)
    results["BlurSim alpha 0.5"] = run("BlurSim, alpha 0.5", blursim_fixed)

    print("\n| training loss | PSNR (dB) | SSIM | BlurSim(out, target) | train time (s) |")
    print("|---|---|---|---|---|")
    for k, r in results.items():
        t = f"{r['train_s']:.0f}" if "train_s" in r else "-"
        print(f"| {k} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['blursim']:.4f} | {t} |")

    clean = {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in results.items()}
    if seed != 0:
        print("(figure written for --seed 0 only)")
        return clean
    # Figure: examples.
    idx = [0, 1, 2, 3, 5, 8]
    rows = [("blurred", te_blur)] + [(k, None) for k in ("MSE", "BlurSim + AlphaSchedule")] + [("target", te)]
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(len(idx) * 1.1, len(rows) * 1.15))
    for r, (name, imgs) in enumerate(rows):
        if imgs is None:
            with torch.no_grad():
                imgs = results[name]["model"](te_blur[idx]).clamp(0, 1)
        else:
            imgs = imgs[idx]
        for c in range(len(idx)):
            axes[r, c].imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name.replace(" + ", "\n+ "), fontsize=7)
    for c, i in enumerate(idx):
        axes[0, c].set_title(f"sigma {float(te_sigma[i]):.1f}", fontsize=7)
    print("wrote", save_fig(fig, "losses_deblur.png"))
    return clean


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("pairs", "train", "all"), default="all")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    if args.part in ("pairs", "all"):
        out["pairs"] = part_pairs()
    if args.part in ("train", "all"):
        out["train"] = part_train(args.steps, args.n_train, args.n_test, args.batch, args.seed)
    if args.json is not None:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1, default=float))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
