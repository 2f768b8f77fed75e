"""Make the pictures of docs/augment.md from scikit-image's sample photographs.

Writes (PNG, each well under 300 KB):

* ``docs/img/augment_regimes.png``: one photograph, grey at 224 x 224 as in Jang & Tong's pipeline,
  under each sigma of the "weak" and "strong" regimes (with each sigma's probability), and under
  the Yoshihara et al. "multi-steps" sigmas.
* ``docs/img/augment_families.png``: a grid of motion, defocus, box and anisotropic Gaussian blur
  examples on a colour photograph.
* ``docs/img/augment_sigma_hist.png``: histograms of the sigmas drawn for one 4096-image batch per
  preset, read from the transform's ``last_params`` (what a training loop would log).

Usage::

    python scripts/make_augment_figures.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import blurkit as bk  # noqa: E402


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """A skimage.data photograph as a float (3, size, size) tensor in [0, 1] (centre crop, resize)."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _save(fig: plt.Figure, path: str, dpi: int = 80) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(path))
    os.close(fd)
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    if os.path.getsize(tmp) > 250_000:  # photographs: a 256-colour palette keeps the file small
        from PIL import Image

        with Image.open(tmp) as im:
            pal = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        pal.save(tmp, optimize=True)
    os.replace(tmp, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")


def regimes_figure(path: str) -> None:
    grey = bk.presets.to_grayscale(_photo("astronaut"))[None]  # (1, 1, 224, 224) in [0, 1]
    rows = []
    for name in ("weak", "strong"):
        r = bk.presets.get(name)
        vals, probs = r.sigma_distribution()
        rows.append((name, r.transform(), vals, [f"p={q:.3g}" for q in probs]))
    ms = bk.presets.get("multi-steps")
    rows.append(("multi-steps", ms.transform(), tuple(ms.sigmas),
                 [f"epochs {10 * i}-{10 * i + 9}" if i < 4 else "epochs 40+" for i in range(5)]))
    ncol = max(len(v) for _, _, v, _ in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.9 * ncol, 2.2 * len(rows)))
    for r_i, (name, t, vals, labels) in enumerate(rows):
        batch = grey.expand(len(vals), -1, -1, -1)
        sig = torch.tensor(vals, dtype=torch.float32)
        out = t.apply(batch, {"sigma": sig})
        for c in range(ncol):
            ax = axes[r_i, c]
            ax.axis("off")
            if c < len(vals):
                ax.imshow(out[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                k = 2 * int(np.ceil(t.truncate * vals[c] - 1e-9)) + 1
                ax.set_title(f"σ={vals[c]:g} ({k}x{k})\n{labels[c]}", fontsize=8)
        axes[r_i, 0].text(-0.08, 0.5, name, transform=axes[r_i, 0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=11, weight="bold")
    fig.suptitle("blur-training regimes, grey 224 x 224 (Jang & Tong 2024: weak, strong; "
                 "Yoshihara et al. 2023: multi-steps)", fontsize=10)
    _save(fig, path)


def families_figure(path: str) -> None:
    x = _photo("coffee", 192).clamp(0, 1)[None]
    rows = [
        ("motion", [f"L={L:g}, {a:g}°" for L, a in ((5, 0), (11, 45), (18, 90), (11.5, 160))],
         lambda: bk.motion_blur(x.expand(4, -1, -1, -1), torch.tensor([5, 11, 18, 11.5]),
                                torch.tensor([0.0, 45.0, 90.0, 160.0]))),
        ("defocus", [f"radius {r:g}" for r in (1.5, 3, 5, 8)],
         lambda: bk.defocus_blur(x.expand(4, -1, -1, -1), torch.tensor([1.5, 3.0, 5.0, 8.0]))),
        ("box", [f"size {s}" for s in (3, 7, 11, 17)],
         lambda: bk.box_blur(x.expand(4, -1, -1, -1), torch.tensor([3, 7, 11, 17]))),
        ("Gaussian\nanisotropic", [f"σ=({a:g}, {b:g}), {t:g}°" for a, b, t in
                                   ((4, 1, 0), (4, 1, 45), (1, 6, 30), (3, 3, 0))],
         lambda: bk.gaussian_blur(x.expand(4, -1, -1, -1), torch.tensor([4.0, 4.0, 1.0, 3.0]),
                                  sigma_y=torch.tensor([1.0, 1.0, 6.0, 3.0]),
                                  angle=torch.tensor([0.0, 45.0, 30.0, 0.0]))),
    ]
    fig, axes = plt.subplots(len(rows), 5, figsize=(10, 2.2 * len(rows)))
    for r_i, (name, labels, fn) in enumerate(rows):
        out = fn().clamp(0, 1)
        axes[r_i, 0].imshow(x[0].permute(1, 2, 0).numpy())
        axes[r_i, 0].set_title("original", fontsize=8)
        axes[r_i, 0].text(-0.08, 0.5, name, transform=axes[r_i, 0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=10, weight="bold")
        for c in range(4):
            axes[r_i, c + 1].imshow(out[c].permute(1, 2, 0).numpy())
            axes[r_i, c + 1].set_title(labels[c], fontsize=8)
        for ax in axes[r_i]:
            ax.axis("off")
    fig.suptitle("blur families (one engine call per row, one kernel per image)", fontsize=10)
    _save(fig, path)


def sigma_hist_figure(path: str) -> None:
    names = ("weak", "strong", "mix", "random-mix")
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.4), sharey=True)
    x = torch.zeros(4096, 1, 8, 8)  # only the drawn parameters matter here
    for ax, name in zip(axes, names):
        t = bk.presets.transform(name, seed=0)
        t(x)
        s = t.last_params["sigma"].numpy()
        ax.hist(s, bins=np.arange(-0.25, 8.5, 0.5) if name != "random-mix" else np.linspace(0, 5, 21),
                color="0.3", weights=np.full(len(s), 1 / len(s)))
        ax.set_title(f"{name}: mean σ {s.mean():.2f}", fontsize=9)
        ax.set_xlabel("σ (px at 224)", fontsize=8)
    axes[0].set_ylabel("fraction of images", fontsize=8)
    fig.suptitle("sigmas drawn for one 4096-image batch (from last_params)", fontsize=10, y=1.06)
    _save(fig, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "img"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    regimes_figure(os.path.join(args.out, "augment_regimes.png"))
    families_figure(os.path.join(args.out, "augment_families.png"))
    sigma_hist_figure(os.path.join(args.out, "augment_sigma_hist.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
