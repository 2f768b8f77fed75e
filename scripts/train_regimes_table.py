"""Train the Jang & Tong regimes (standard, weak, strong) on Fashion-MNIST and tabulate blur robustness.

Each regime trains the same small CNN on the same subset with the same seed; only the training blur
differs. Accuracy is then measured on test images blurred with sigma 0, 1, 2, 4, 8 in two units:
"scaled" (pixels at 224 x 224, multiplied by image_size / 224, the paper's units and the units the
regimes are defined in) and "unscaled" (pixels of the 28 x 28 images). Prints a markdown table and
writes it with the raw numbers to OUT/regimes_table.{md,json}.

Usage:
    python scripts/train_regimes_table.py --limit 12000 --epochs 4 --out runs/regimes
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import blurkit as bk
from blurkit.train import TrainConfig, evaluate, train
from blurkit.train.loop import Preprocess

SIGMAS = (0.0, 1.0, 2.0, 4.0, 8.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default="standard,weak,strong")
    ap.add_argument("--limit", type=int, default=12000, help="training images (first N of the train split)")
    ap.add_argument("--test-limit", type=int, default=4000, help="test images used for the table")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--width", type=int, default=16, help="small-cnn width")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/regimes")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    test = bk.data.fashion_mnist("test", image_size=a.image_size, limit=a.test_limit)
    out = Path(a.out)
    results = []
    for regime in a.regimes.split(","):
        cfg = TrainConfig(regime=regime, out=str(out / regime), image_size=a.image_size, limit=a.limit,
                          val_limit=1000, epochs=a.epochs, eval_every=a.epochs, batch_size=a.batch_size, lr=a.lr,
                          model_options={"width": a.width}, seed=a.seed, threads=a.threads, progress=False,
                          tensorboard=False)
        t0 = time.perf_counter()
        res = train(cfg)
        train_s = time.perf_counter() - t0
        prep = Preprocess(res.model_info["mean"], res.model_info["std"], res.model_info["in_channels"])
        scaled = evaluate(res.model, test, sigmas=SIGMAS, scale=a.image_size / 224, prep=prep)
        unscaled = evaluate(res.model, test, sigmas=SIGMAS, scale=1.0, prep=prep)
        row = {"regime": regime, "train_s": train_s, "images_per_s": sum(r["images_per_s"] for r in res.history)
               / len(res.history),
               "scaled": {f"{s:g}": scaled[f"acc_sigma_{s:g}"] for s in SIGMAS},
               "unscaled": {f"{s:g}": unscaled[f"acc_sigma_{s:g}"] for s in SIGMAS}}
        results.append(row)
        print(f"{regime}: trained in {train_s:.0f} s; scaled {row['scaled']}; unscaled {row['unscaled']}", flush=True)

    head = ("| regime | train time (s) | clean | " + " | ".join(f"σ{s:g}×{a.image_size}/224" for s in SIGMAS[1:])
            + " | " + " | ".join(f"σ{s:g} px" for s in SIGMAS[1:]) + " |")
    lines = [head, "|" + "---|" * (3 + 2 * (len(SIGMAS) - 1))]
    for r in results:
        cells = [r["regime"], f"{r['train_s']:.0f}", f"{100 * r['scaled']['0']:.1f}"]
        cells += [f"{100 * r['scaled'][f'{s:g}']:.1f}" for s in SIGMAS[1:]]
        cells += [f"{100 * r['unscaled'][f'{s:g}']:.1f}" for s in SIGMAS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    note = (f"Fashion-MNIST, {a.limit} training images at {a.image_size} px, {a.epochs} epochs, small-cnn width "
            f"{a.width}, batch {a.batch_size}, SGD lr {a.lr} cosine, seed {a.seed}; accuracy (%) on the first "
            f"{a.test_limit} test images; {platform.machine()} CPU, {torch.get_num_threads()} torch thread(s).")
    print(table)
    print(note)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regimes_table.md").write_text(table + "\n\n" + note + "\n")
    (out / "regimes_table.json").write_text(json.dumps({"args": vars(a), "results": results}, indent=2))


if __name__ == "__main__":
    main()
