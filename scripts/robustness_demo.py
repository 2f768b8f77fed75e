"""Robustness demo on Fashion-MNIST: curves, critical sigma, worst-case blur, corruption errors.

Trains two small CNNs (300 Adam steps each, 1-3 minutes on 2 CPU cores) (a standard one and one trained with
Gaussian-blur augmentation), then runs every blurkit.robustness measurement on test images and
writes the figures ``docs/img/robustness_*.png`` and the numbers ``docs/img/robustness_demo.json``
quoted in docs/robustness.md.

Run: ``python scripts/robustness_demo.py [--train-steps 300] [--n-test 500] [--out docs/img]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import blurkit as bk  # noqa: E402
from blurkit import robustness as R  # noqa: E402


def load(split: str, limit: int | None):
    try:
        ds = bk.data.fashion_mnist(split, limit=limit)
        return ds.images.float() / 255.0, ds.labels, list(ds.classes)
    except Exception as exc:  # noqa: BLE001 - the demo needs the data; say why it is missing
        raise SystemExit(f"Fashion-MNIST not available: {exc}") from exc


WIDTH = 16


def make_model() -> torch.nn.Module:
    return bk.models.SmallCNN(num_classes=10, in_channels=1, width=WIDTH)


def train(x: torch.Tensor, y: torch.Tensor, steps: int, blur: bool, seed: int) -> tuple[torch.nn.Module, float]:
    """Adam, batch 128, ``steps`` steps; ``blur``: per-image sigma from {0, .5, 1, 1.5, 2} (truncate 2)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        xb, yb = x[idx], y[idx]
        if blur:
            sig = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])[torch.randint(0, 5, (128,), generator=g)]
            xb = bk.gaussian_blur(xb, sig, truncate=2.0)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), time.perf_counter() - t0


def save(fig, path: str, dpi: int) -> None:
    """Save a figure as a 256-colour PNG (small files for the docs), atomically."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(256)
    tmp = path + ".tmp.png"
    img.save(tmp, optimize=True)
    os.replace(tmp, path)


def batches(x, y, bs=250):
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, x.shape[0], bs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=300, help="Adam steps of 128 images per model")
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-worst", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="worst-case optimisation steps")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core CPU)")
    ap.add_argument("--width", type=int, default=16, help="SmallCNN width")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "img"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global WIDTH
    WIDTH = args.width
    os.makedirs(args.out, exist_ok=True)
    xtr, ytr, classes = load("train", args.n_train)
    xte, yte, _ = load("test", args.n_test)
    results: dict = {"machine": "2-core x86-64 CPU, no GPU", "n_test": int(xte.shape[0])}

    t = time.perf_counter()
    results["test_accuracy"] = {}
    std, s1 = train(xtr, ytr, args.train_steps, blur=False, seed=0)
    blr, s2 = train(xtr, ytr, args.train_steps, blur=True, seed=1)
    results["train"] = {"steps_each": args.train_steps, "batch": 128,
                        "seconds": {"standard": s1, "blur-trained": s2}}
    print(f"trained in {time.perf_counter() - t:.0f} s ({s1:.0f} / {s2:.0f} s)")
    with torch.no_grad():
        for n, m in (("standard", std), ("blur-trained", blr)):
            results["test_accuracy"][n] = float((m(xte).argmax(1) == yte).float().mean())
    print("clean test accuracy:", results["test_accuracy"])
    data = batches(xte, yte)
    models = {"standard": std, "blur-trained": blr}

    # 1. accuracy curves, both models in one pass per family
    fams = {"gaussian": [0, 0.5, 1, 1.5, 2, 3, 4], "motion": [0, 2, 4, 6, 8, 10, 12],
            "defocus": [0, 0.5, 1, 1.5, 2, 3, 4], "box": [0, 1, 2, 3, 4]}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    results["curves"] = {}
    for ax, (fam, lv) in zip(axes, fams.items()):
        t = time.perf_counter()
        curves = R.accuracy_curve(models, data, lv, family=fam, progress=False, n_bootstrap=500)
        results["curves"][fam] = {n: cv.to_dict() for n, cv in curves.items()}
        print(f"curve {fam}: {time.perf_counter() - t:.1f} s; " +
              ", ".join(f"{n} AUC {cv.auc:.3f} [{cv.auc_ci[0]:.3f}, {cv.auc_ci[1]:.3f}]" for n, cv in curves.items()))
        for n, cv in curves.items():
            cv.plot(ax=ax, label=n)
        ax.set_title(f"{fam} blur")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, os.path.join(args.out, "robustness_curves.png"), dpi=80)

    # 2. critical sigma: survival curves and quality at the flip
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    results["critical"] = {}
    crit = {}
    for n, m in models.items():
        t = time.perf_counter()
        res = R.critical_sigma(m, data, "gaussian", max_sigma=8, grid_step=0.5, tol=0.02, progress=False)
        crit[n] = res
        results["critical"][n] = {**res.summary(), "seconds": time.perf_counter() - t}
        print(f"critical sigma {n}: {res.summary()} ({time.perf_counter() - t:.1f} s)")
        res.plot_survival(ax=axes[0], label=f"{n} (median {res.median:.2f} px)")
        fl = res.flipped & res.clean_correct
        axes[1].scatter(res.sigma[fl], res.ssim[fl], s=4, alpha=0.5, label=n)
    axes[0].legend(fontsize=8)
    axes[0].set_title("critical Gaussian sigma: survival")
    axes[1].set_xlabel("critical sigma (px)")
    axes[1].set_ylabel("SSIM(clean, flipping image)")
    axes[1].set_title("image quality given up at the flip")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    save(fig, os.path.join(args.out, "robustness_critical.png"), dpi=80)

    # 3. worst-case blur vs the isotropic critical sigma, on the first n-worst images both searched
    res = crit["standard"]
    sel = torch.nonzero(res.clean_correct & res.flipped).flatten()[: args.n_worst]
    if sel.numel() < 6:
        raise SystemExit("too few images flip within max_sigma for the worst-case comparison; train longer")
    xw, yw = xte[sel], yte[sel]
    iso_ssim = res.ssim[sel]
    iso_psnr = res.psnr[sel]
    results["worst_case"] = {"n": int(sel.numel()),
                             "isotropic_critical": {"median_ssim": float(iso_ssim.median()),
                                                    "median_psnr": float(iso_psnr.median())}}
    wc_all = {}
    init = res.sigma[sel].float()  # start each image at its isotropic critical sigma (a known flip)
    for fam, kw in (("anisotropic", {}), ("motion", {"lr": 0.2}), ("free", {})):
        t = time.perf_counter()
        wc = R.worst_case_blur(std, xw, yw, fam, metric="ssim", steps=args.steps, init_sigma=init, **kw)
        wc_all[fam] = wc
        both = wc.flipped
        better = (wc.ssim[both] > iso_ssim[both]).float().mean()
        results["worst_case"][fam] = {
            "flipped": float(wc.flipped.float().mean()), "median_ssim": float(wc.ssim[both].median()),
            "median_psnr": float(wc.psnr[both].median()),
            "median_ssim_isotropic_same_images": float(iso_ssim[both].median()),
            "share_higher_ssim_than_isotropic": float(better),
            "mean_ssim_gain": float((wc.ssim[both] - iso_ssim[both]).mean()), "seconds": time.perf_counter() - t}
        print(f"worst case {fam}: {results['worst_case'][fam]}")
    free = wc_all["free"]
    xfree = free.apply(xw)
    xiso = bk.gaussian_blur(xw, res.sigma[sel].float())
    fig, axes = plt.subplots(3, 6, figsize=(9, 5.4))
    for i in range(6):
        axes[0, i].imshow(xw[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(classes[int(yw[i])], fontsize=8)
        axes[1, i].imshow(xiso[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[1, i].set_title(f"sigma {float(res.sigma[sel[i]]):.2f}, SSIM {float(iso_ssim[i]):.2f}", fontsize=7)
        axes[2, i].imshow(xfree[i, 0], cmap="gray", vmin=0, vmax=1)
        t = f"SSIM {float(free.ssim[i]):.2f}" if bool(free.flipped[i]) else "no flip found"
        axes[2, i].set_title(f"free kernel, {t}", fontsize=7)
        for r in range(3):
            axes[r, i].axis("off")
    fig.suptitle("clean / isotropic critical sigma / worst-case free kernel (each flips the CNN)", fontsize=9)
    fig.tight_layout()
    save(fig, os.path.join(args.out, "robustness_worst_case.png"), dpi=80)

    # 4. corruption errors (CIFAR-10-C parameters: 32 px tables for 28 px images), blur-trained vs standard
    t = time.perf_counter()
    errs = R.evaluate_corruptions(models, batches(xte[:300], yte[:300]),
                                  list(bk.corruptions.BLUR_CORRUPTIONS) + list(bk.corruptions.NOISE_CORRUPTIONS),
                                  dataset="cifar", progress=False)
    ce = R.corruption_errors(errs["blur-trained"], baseline=errs["standard"])
    results["corruptions"] = {"errors": errs, "blur_trained_vs_standard": ce.to_dict(),
                              "seconds": time.perf_counter() - t}
    print(f"corruption errors ({time.perf_counter() - t:.1f} s): mCE {ce.mce:.3f}, relative mCE {ce.relative_mce}")

    # 5. a corruption gallery on a photograph (ImageNet-C parameters at 224 px)
    from skimage import data as skdata  # dev extra, only for the gallery
    from skimage.transform import resize

    img = resize(skdata.astronaut()[:, 40:472], (224, 224), anti_aliasing=True)
    xi = torch.from_numpy(img).permute(2, 0, 1).float()[None]
    names = bk.corruptions.CORRUPTIONS
    fig, axes = plt.subplots(3, len(names), figsize=(1.6 * len(names), 5.2))
    gen = torch.Generator().manual_seed(0)
    for col, name in enumerate(names):
        for row, sev in enumerate((1, 3, 5)):
            out = bk.corruptions.corrupt(xi, name, sev, generator=gen)[0].permute(1, 2, 0).clamp(0, 1)
            axes[row, col].imshow(out.numpy())
            axes[row, col].axis("off")
            if row == 0:
                axes[row, col].set_title(name.replace("_", " "), fontsize=8)
    fig.tight_layout()
    save(fig, os.path.join(args.out, "robustness_corruptions.png"), dpi=60)

    path = os.path.join(args.out, "robustness_demo.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(R._common.jsonable(results), fh, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
