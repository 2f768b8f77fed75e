"""Synthetic-brain evidence for blurkit.neural, and the figures of docs/neural.md.

Without real recordings, the tools are checked on simulated "brains" whose units are noisy linear
read-outs of one known layer of a known network (a small random CNN with a fixed seed) for 400
Fashion-MNIST test images:

A. ridge predictivity: is the source layer ranked first? is the simulated noise ceiling (0.8)
   inside the estimated ceiling's 95% bootstrap interval?
B. RSA (Euclidean RDMs, Spearman): is the source layer ranked first?
C. shuffled stimuli: are scores at chance (0)?
D. noise-ceiling recovery for several ceilings and repetition counts.
E. a model comparison (the source network against two other random networks) as the CLI would
   draw it, and the same comparison through ``blurkit neural`` on files (``--cli``).

Run:  python scripts/neural_demo.py            (about 2-4 minutes on 2 CPU cores)
      python scripts/neural_demo.py --quick    (fewer repeats)
Writes docs/img/neural_layers.png, docs/img/neural_models.png and prints the tables quoted in
docs/neural.md. BLAS is pinned to one thread (small matrices; the machine is shared).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from blurkit import neural as nu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
LAYERS = ["relu1", "relu2", "relu3", "fc"]


def network(seed: int) -> nn.Sequential:
    """A small random CNN (weights from ``seed``) with named layers."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(16, 32, 3, padding=1)), ("relu3", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(2)), ("flatten", nn.Flatten()), ("fc", nn.Linear(128, 32)),
    ]))


def load_images(n: int) -> torch.Tensor:
    with gzip.open(FMNIST, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    return torch.from_numpy(data[:n].astype(np.float32) / 255.0)[:, None]


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one network seed instead of three")
    parser.add_argument("--cli", action="store_true", help="also run the blurkit neural CLI on files")
    parser.add_argument("--n", type=int, default=400, help="stimuli (default 400)")
    args = parser.parse_args()
    t_start = time.perf_counter()
    images = load_images(args.n)
    seeds = [0] if args.quick else [0, 1, 2]
    pool = 4
    print(f"{args.n} Fashion-MNIST stimuli, layers {LAYERS}, adaptive average pooling to {pool}x{pool}\n")

    # ---------------------------------------------------------------- A + B: ranking and ceiling
    rows_a, rows_b = [], []
    layer_plot = nu.NeuralResults()
    for seed in seeds:
        feats = nu.activations(network(seed), images, LAYERS, pool=pool)
        if seed == seeds[0]:
            print("features per layer: " + ", ".join(f"{k} {v.shape[1]}" for k, v in feats.items()) + "\n")
        for src in LAYERS:
            sim = nu.synthetic_responses(feats[src], n_units=60, repetitions=4, ceiling=0.8, seed=100 + seed)
            t0 = time.perf_counter()
            res = nu.score_layers(feats, sim.responses, model=f"brain reading {src}", metrics=["predictivity"],
                                  seed=seed, predictivity_options={"bootstrap": 1000})
            dt = (time.perf_counter() - t0) / len(LAYERS)
            if seed == seeds[0]:
                layer_plot = layer_plot + res
            row = {r.layer: r for r in res.rows}[src]
            best = res.best("predictivity")[res.rows[0].model]
            rows_a.append([str(seed), src, best, "yes" if best == src else "NO",
                           " ".join(f"{r.predictivity:.3f}" for r in res.rows),
                           f"{row.ceiling:.3f} [{row.ceiling_ci_low:.3f}, {row.ceiling_ci_high:.3f}]",
                           "yes" if row.ceiling_ci_low <= 0.8 <= row.ceiling_ci_high else "NO",
                           f"{row.normalized:.3f}", f"{dt:.2f}"])
            sim_e = nu.synthetic_responses(feats[src], n_units=60, repetitions=4, ceiling=0.8, standardize=False,
                                           seed=200 + seed)
            res_b = nu.score_layers(feats, sim_e.responses, metrics=["rsa"], seed=seed,
                                    rsa_options={"bootstrap": 200, "rdm": "euclidean"})
            best_b = res_b.best("rsa")["model"]
            rows_b.append([str(seed), src, best_b, "yes" if best_b == src else "NO",
                           " ".join(f"{r.rsa:.3f}" for r in res_b.rows)])
    print("A. ridge predictivity (60 units, 4 repetitions, simulated ceiling 0.8; 5 outer folds, "
          "leave-one-out alpha per unit, 1000 bootstraps)")
    table(["net seed", "source", "best layer", "ok", f"mean r per layer ({' '.join(LAYERS)})",
           "ceiling [95% CI]", "0.8 in CI", "normalised (source)", "s/layer"], rows_a)
    print(f"   source ranked first {sum(r[3] == 'yes' for r in rows_a)}/{len(rows_a)}, "
          f"ceiling CI covers 0.8 {sum(r[6] == 'yes' for r in rows_a)}/{len(rows_a)}\n")
    print("B. RSA, Euclidean RDMs compared by Spearman (units read out the centred features)")
    table(["net seed", "source", "best layer", "ok", f"RSA per layer ({' '.join(LAYERS)})"], rows_b)
    print(f"   source ranked first {sum(r[3] == 'yes' for r in rows_b)}/{len(rows_b)}\n")

    # ---------------------------------------------------------------- C: shuffled stimuli
    feats = nu.activations(network(seeds[0]), images, LAYERS, pool=pool)
    sim = nu.synthetic_responses(feats["relu2"], n_units=60, repetitions=4, ceiling=0.8, seed=100)
    n_perm = 10 if args.quick else 30
    pm, pc, rm, rc, km = [], 0, [], 0, []
    for k in range(n_perm):
        perm = np.random.default_rng(1000 + k).permutation(args.n)
        p = nu.predictivity(feats["relu2"], sim.responses[perm], bootstrap=300, seed=k)
        r = nu.rsa(feats["relu2"], sim.responses[perm], bootstrap=200, seed=k)
        kt = nu.rsa(feats["relu2"], sim.responses[perm], bootstrap=0, compare="kendall_tau_a")
        pm.append(p.mean)
        pc += p.ci[0] <= 0 <= p.ci[1]
        rm.append(r.score)
        rc += r.ci[0] <= 0 <= r.ci[1]
        km.append(kt.score)
    intact = nu.predictivity(feats["relu2"], sim.responses, bootstrap=0).mean
    print(f"C. shuffled stimuli ({n_perm} permutations of the relu2 brain; intact predictivity {intact:.3f})")
    table(["score", "mean over permutations", "sd", "95% CI contains 0"], [
        ["predictivity (mean r)", f"{np.mean(pm):+.4f}", f"{np.std(pm):.4f}", f"{pc}/{n_perm}"],
        ["RSA Spearman (correlation RDM)", f"{np.mean(rm):+.4f}", f"{np.std(rm):.4f}", f"{rc}/{n_perm}"],
        ["RSA Kendall tau-a", f"{np.mean(km):+.4f}", f"{np.std(km):.4f}", "-"],
    ])

    # ---------------------------------------------------------------- D: ceiling recovery
    rows_d = []
    for ceiling in (0.5, 0.7, 0.9):
        for reps in (2, 4, 8):
            sim = nu.synthetic_responses(feats["relu2"], n_units=60, repetitions=reps, ceiling=ceiling, seed=7)
            nc = nu.noise_ceiling(sim.responses, bootstrap=1000, seed=1)
            rows_d.append([f"{ceiling:.1f}", str(reps), f"{nc.mean:.3f}", f"[{nc.ci[0]:.3f}, {nc.ci[1]:.3f}]",
                           "yes" if nc.ci[0] <= ceiling <= nc.ci[1] else "NO"])
    print("D. split-half noise ceiling (Spearman-Brown), 60 units, 400 stimuli")
    table(["simulated ceiling", "repetitions", "estimate", "95% CI", "covered"], rows_d)

    # ---------------------------------------------------------------- E: model comparison
    sim = nu.synthetic_responses(feats["relu2"], n_units=60, repetitions=4, ceiling=0.8, seed=100)
    models = {"source net (seed 0)": network(0), "other net (seed 5)": network(5), "other net (seed 6)": network(6)}
    cmp = nu.compare_models(models, images, sim.responses, LAYERS, pool=pool,
                            predictivity_options={"bootstrap": 1000}, rsa_options={"bootstrap": 200})
    rows_e = [[r.model, r.layer, f"{r.predictivity:.3f}", f"{r.normalized:.3f}",
               f"[{r.normalized_ci_low:.3f}, {r.normalized_ci_high:.3f}]", f"{r.rsa:.3f}"] for r in cmp.rows]
    print("E. three networks against the brain reading relu2 of the seed-0 network")
    table(["model", "layer", "mean r", "normalised", "95% CI", "RSA (corr. RDM)"], rows_e)

    img = ROOT / "docs" / "img"
    layer_plot.plot(img / "neural_layers.png", metric="predictivity",
                    title="Synthetic brains: predictivity peaks at the layer read out")
    cmp.plot(img / "neural_models.png", metric="normalized",
             title="Three networks vs one synthetic brain (relu2 of seed 0)")
    print(f"wrote {img / 'neural_layers.png'}, {img / 'neural_models.png'}")

    if args.cli:
        run_cli(images, sim.responses, models)
    print(f"total {time.perf_counter() - t_start:.0f} s")


def run_cli(images: torch.Tensor, responses: np.ndarray, models: dict[str, nn.Module]) -> None:
    """Write stimuli, responses and blurkit checkpoints to a temp folder and run ``blurkit neural``."""
    from PIL import Image

    from blurkit.cli import main as cli_main
    from blurkit.models import register_model
    from blurkit.train.checkpoint import save_checkpoint

    register_model("demo-random-cnn", lambda num_classes, in_channels, **_: network(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "stimuli").mkdir()
        for i, im in enumerate((images[:, 0].numpy() * 255).round().astype(np.uint8)):
            Image.fromarray(im).save(tmp / "stimuli" / f"{i:04d}.png")
        np.save(tmp / "responses.npy", responses)
        specs = []
        for i, (name, net) in enumerate(models.items()):
            info = {"name": "demo-random-cnn", "num_classes": 32, "in_channels": 1, "image_size": 28,
                    "blurpool": False, "options": {}, "mean": [0.0], "std": [1.0]}
            path = save_checkpoint({"model": net.state_dict(), "model_info": info}, tmp / f"model{i}.pt")
            specs += ["--checkpoint", f"{name.split(' (')[0].replace(' ', '_')}_{i}={path}"]
        print("\n$ blurkit neural --stimuli stimuli/ --responses responses.npy --checkpoint ... "
              "--layers relu1 relu2 relu3 fc --pool 4 --out out/")
        cli_main(["neural", "--stimuli", str(tmp / "stimuli"), "--responses", str(tmp / "responses.npy"), *specs,
                  "--layers", *LAYERS, "--pool", "4", "--bootstrap", "200", "--out", str(tmp / "out")])


if __name__ == "__main__":
    main()
