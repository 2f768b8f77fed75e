"""Evidence for blurkit.deblur: PSNR/SSIM against the sharp originals, blurkit vs scikit-image.

Five scikit-image photographs (grey: camera, astronaut, coffee, chelsea, rocket) are blurred whole
(reflect border) with known kernels, noise of std 0.01 is added, the result is clipped to [0, 1],
and the centre 288x288 is cropped (so the borders hold real scene content, as in a photograph, not a
mirror of the crop). Every method gets the same degraded crop and the same kernel:

* Wiener: ``skimage.restoration.wiener`` (Laplacian regulariser, periodic borders) vs
  ``bk.deblur.wiener`` (same regulariser and balance; padded + tapered borders);
* Richardson-Lucy: ``skimage.restoration.richardson_lucy`` vs ``bk.deblur.richardson_lucy``
  (same iterations);
* blind: ``bk.deblur.blind`` (kernel from ``bk.measure.estimate_sigma`` / ``estimate_motion``).

PSNR and SSIM are scikit-image's (``data_range=1``), on the whole crop, averaged over the photographs.
Writes before/after pictures to docs/img/deblur_*.png and prints markdown tables.

Run: ``python scripts/deblur_tables.py [--quick]``; ``--robustness`` instead trains (or reloads) small
Fashion-MNIST models for the regimes standard/weak/strong and plots accuracy vs sigma with and without
:class:`blurkit.DeblurFront` (docs/img/deblur_robustness.png).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from skimage import color, data, restoration
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import blurkit as bk
from blurkit import deblur
from blurkit._io import atomic_savefig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG_DIR = os.path.join(ROOT, "docs", "img")


def photographs() -> dict[str, np.ndarray]:
    return {"camera": data.camera() / 255.0, "astronaut": color.rgb2gray(data.astronaut()),
            "coffee": color.rgb2gray(data.coffee()), "chelsea": color.rgb2gray(data.chelsea()),
            "rocket": color.rgb2gray(data.rocket())}


def degradations(quick: bool) -> list[tuple[str, str, torch.Tensor, dict]]:
    """(label, family, kernel (1, kh, kw) float64, true parameters)."""
    out = []
    for s in ((1.0, 2.0, 4.0) if quick else (1.0, 2.0, 3.0, 4.0)):
        out.append((f"Gaussian sigma {s:g}", "gaussian", bk.kernels.gaussian(s, dtype=torch.float64),
                    {"sigma": s}))
    for r in ((3.0,) if quick else (2.0, 4.0)):
        out.append((f"defocus radius {r:g}", "defocus", bk.kernels.disk(r, dtype=torch.float64), {"radius": r}))
    for length, ang in (((9.0, 30.0),) if quick else ((9.0, 30.0), (15.0, 120.0))):
        out.append((f"motion {length:g} px at {ang:g} deg", "motion",
                    bk.kernels.motion(length, ang, dtype=torch.float64), {"length": length, "angle": ang}))
    return out


def crop(a: np.ndarray, size: int) -> np.ndarray:
    y0, x0 = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return a[y0:y0 + size, x0:x0 + size]


def scores(ref: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    return (peak_signal_noise_ratio(ref, img, data_range=1.0),
            structural_similarity(ref, img, data_range=1.0))


def save_png(fig, name: str) -> str:
    """Write ``fig`` to docs/img/``name`` atomically (temporary file + rename)."""
    return str(atomic_savefig(fig, os.path.join(IMG_DIR, name), dpi=72))


def picture(panels: list[tuple[str, np.ndarray]], name: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.9))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path = save_png(fig, name)
    plt.close(fig)
    return path


def md_table(headers: list[str], rows: list[list[object]], fmt: str) -> str:
    """A GitHub-markdown table; floats formatted with ``fmt``, None as a dash."""
    def cell(v: object) -> str:
        if v is None:
            return "-"
        return fmt.format(v) if isinstance(v, float | np.floating) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


ROBUST_SIGMAS = (0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0)


def robustness(args: argparse.Namespace) -> None:
    """Accuracy vs sigma: the standard model with/without DeblurFront, next to blur-trained models.

    Trains (or reloads from ``--runs``) the Jang & Tong regimes standard/weak/strong on Fashion-MNIST
    with the settings of scripts/train_regimes_table.py, then evaluates on test images blurred with
    sigma in paper units (pixels at 224 px, scaled to the image size, truncate 2, reflect border).
    """
    from blurkit.train import TrainConfig, load_model, train
    from blurkit.train.loop import Preprocess

    scale = args.image_size / 224
    test = bk.data.fashion_mnist("test", image_size=args.image_size, limit=args.test_limit)
    models = {}
    trained_on = set()
    for regime in ("standard", "weak", "strong"):
        out = os.path.join(args.runs, regime)
        if os.path.exists(os.path.join(out, "last.pt")):
            model, info = load_model(out)
            with open(os.path.join(out, "config.json")) as f:
                c = json.load(f)
            trained_on.add((c["limit"], c["epochs"], c["image_size"]))
        else:
            trained_on.add((args.limit, args.epochs, args.image_size))
            cfg = TrainConfig(regime=regime, out=out, image_size=args.image_size, limit=args.limit, val_limit=1000,
                              epochs=args.epochs, eval_every=args.epochs, batch_size=128, lr=0.05,
                              model_options={"width": 16}, seed=args.seed, threads=0, progress=False,
                              tensorboard=False)
            res = train(cfg)
            model, info = res.model, res.model_info
        models[regime] = (model.eval(), Preprocess(info["mean"], info["std"], info["in_channels"]))
        print(f"{regime}: ready", flush=True)

    # One pass per blur level: blur the test images in [0, 1] as blurkit.train.evaluate does (truncate 2,
    # reflect border), then score every variant on the same blurred batch. DeblurFront runs as a front
    # end in [0, 1] (model=None), followed by the model's own normalisation, as in the deblur-front regime.
    torch.set_num_threads(1)  # small batches of small images: a second intra-op thread mostly waits
    images = test.images.float() / 255.0 if test.images.dtype == torch.uint8 else test.images.float()
    labels = test.labels
    names = [f"{r}-trained" for r in models] + ["standard + DeblurFront (known sigma)",
                                                "standard + DeblurFront (blind)"]
    correct = {n: [0] * len(ROBUST_SIGMAS) for n in names}
    blind_front = bk.DeblurFront(truncate=2.0, balance=args.front_balance)
    std_model, std_prep = models["standard"]
    with torch.no_grad():
        for j, s in enumerate(ROBUST_SIGMAS):
            known_front = bk.DeblurFront(sigma=s * scale, truncate=2.0, balance=args.front_balance)
            for part in torch.arange(len(labels)).split(500):
                x, y = images[part], labels[part]
                xs = x if s == 0 else bk.gaussian_blur(x, s * scale, truncate=2.0)
                for regime, (model, prep) in models.items():
                    correct[f"{regime}-trained"][j] += int((model(prep(xs)).argmax(1) == y).sum())
                for name, front in (("standard + DeblurFront (known sigma)", known_front),
                                    ("standard + DeblurFront (blind)", blind_front)):
                    correct[name][j] += int((std_model(std_prep(front(xs))).argmax(1) == y).sum())
            print(f"sigma {s:g}: done", flush=True)
    curves = {n: [100.0 * c / len(labels) for c in v] for n, v in correct.items()}

    head = ["model"] + [f"sigma {s:g}" for s in ROBUST_SIGMAS]
    setting = "; ".join(f"{n} images x {e} epochs at {sz} px" for n, e, sz in sorted(trained_on))
    print(f"\n### Accuracy (%) vs Gaussian sigma (pixels at 224 px, x {args.image_size}/224), Fashion-MNIST "
          f"test[:{args.test_limit}], small-cnn (width 16) trained on {setting}; models from {args.runs}\n")
    print(md_table(head, [[name, *vals] for name, vals in curves.items()], "{:.1f}"))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"standard-trained": "k-o", "weak-trained": "b-s", "strong-trained": "g-^",
              "standard + DeblurFront (known sigma)": "r--o", "standard + DeblurFront (blind)": "m:o"}
    for name, vals in curves.items():
        ax.plot(ROBUST_SIGMAS, vals, styles.get(name, "-"), label=name, ms=4)
    ax.set_xlabel(f"Gaussian blur sigma (px at 224; x {args.image_size}/224 on the {args.image_size} px images)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST: deblurring front end vs blur training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_png(fig, "deblur_robustness.png")
    plt.close(fig)
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) // 1024} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robustness", action="store_true",
                    help="instead of the tables: train/load standard, weak, strong Fashion-MNIST models and plot "
                         "accuracy vs sigma with and without DeblurFront")
    ap.add_argument("--runs", default=os.path.join(ROOT, "runs", "deblur_robustness"))
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--limit", type=int, default=12000, help="training images (robustness)")
    ap.add_argument("--test-limit", type=int, default=2000, help="test images (robustness)")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs (robustness)")
    ap.add_argument("--front-balance", type=float, default=0.002, help="DeblurFront Wiener balance (robustness)")
    ap.add_argument("--size", type=int, default=288, help="crop size (px)")
    ap.add_argument("--balance", type=float, default=0.01, help="Wiener balance (both libraries)")
    ap.add_argument("--num-iter", type=int, default=30, help="Richardson-Lucy iterations (both libraries)")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="fewer degradations")
    ap.add_argument("--no-pictures", action="store_true")
    args = ap.parse_args()
    if args.robustness:
        robustness(args)
        return
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    photos = photographs()
    names = list(photos)
    sharp = np.stack([crop(p, args.size) for p in photos.values()])  # (N, S, S)
    have_motion = hasattr(bk.measure, "estimate_motion")
    rows_psnr, rows_ssim, blind_rows, like = [], [], [], []
    kept: dict[str, tuple[np.ndarray, torch.Tensor]] = {}
    t0 = time.perf_counter()
    for label, family, k, _params in degradations(args.quick):
        degraded = []
        for p in photos.values():
            x = torch.from_numpy(p)[None, None]
            y = bk.filter2d(x, k) + args.noise * torch.randn(x.shape, generator=gen, dtype=torch.float64)
            degraded.append(crop(y.clamp(0, 1)[0, 0].numpy(), args.size))
        y_np = np.stack(degraded)
        kept[label] = (y_np, k)
        y_t = torch.from_numpy(y_np)[:, None].float()  # the batch, float32 as a user would run it
        kern = k.float()
        conv_k = k[0].numpy()[::-1, ::-1].copy()  # scikit-image takes the convolution kernel
        res: dict[str, np.ndarray] = {"blurred": y_np}
        res["sk_wiener"] = np.stack([restoration.wiener(im, conv_k, args.balance, clip=False) for im in y_np])
        res["bk_wiener"] = deblur.wiener(y_t, kern, args.balance)[:, 0].double().numpy()
        res["sk_rl"] = np.stack([restoration.richardson_lucy(im, conv_k, args.num_iter, clip=False) for im in y_np])
        res["bk_rl"] = deblur.richardson_lucy(y_t, kern, args.num_iter)[:, 0].double().numpy()
        circ = deblur.wiener(torch.from_numpy(y_np)[:, None], k, args.balance, border="circular")[:, 0].numpy()
        like.append(float(np.abs(circ - res["sk_wiener"]).max()))
        est_txt = "-"
        if family == "gaussian" or (family == "motion" and have_motion):
            fam = "gaussian" if family == "gaussian" else "motion"
            out, est = deblur.blind(y_t, fam, balance=args.balance)
            res["blind"] = out[:, 0].double().numpy()
            if fam == "gaussian":
                est_txt = ", ".join(f"{v:.2f}" for v in est.sigma.tolist())
            else:
                est_txt = ", ".join(f"{a:.1f}px/{b:.0f}deg" for a, b in zip(est.length.tolist(), est.angle.tolist()))
        methods = ["blurred", "sk_wiener", "bk_wiener", "sk_rl", "bk_rl", "blind"]
        ps = {m: np.mean([scores(sharp[i], res[m][i])[0] for i in range(len(names))]) if m in res else None
              for m in methods}
        ss = {m: np.mean([scores(sharp[i], res[m][i])[1] for i in range(len(names))]) if m in res else None
              for m in methods}
        rows_psnr.append([label, *[ps[m] for m in methods]])
        rows_ssim.append([label, *[ss[m] for m in methods]])
        if "blind" in res:
            blind_rows.append([label, est_txt, ps["bk_wiener"], ps["blind"], ps["blind"] - ps["bk_wiener"]])
        if not args.no_pictures and label in ("Gaussian sigma 3", "defocus radius 4", "motion 15 px at 120 deg"):
            i = names.index("camera")
            sl = (slice(0, 160), slice(64, 224))
            panels = [("sharp", sharp[i][sl]), (f"blurred + noise\n{label}", y_np[i][sl]),
                      (f"skimage wiener\n{ps['sk_wiener']:.2f} dB (mean)", res["sk_wiener"][i][sl]),
                      (f"blurkit wiener\n{ps['bk_wiener']:.2f} dB", res["bk_wiener"][i][sl]),
                      (f"blurkit RL x{args.num_iter}\n{ps['bk_rl']:.2f} dB", res["bk_rl"][i][sl])]
            if "blind" in res:
                panels.append((f"blurkit blind\n{ps['blind']:.2f} dB", res["blind"][i][sl]))
            path = picture(panels, f"deblur_{family}.png")
            print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) // 1024} KB)")
            if family == "gaussian":  # the whole frame: where periodic borders ring
                full = [("blurred", y_np[i]), ("skimage wiener (periodic)", res["sk_wiener"][i]),
                        ("blurkit wiener (reflect + taper)", res["bk_wiener"][i])]
                path = picture(full, "deblur_borders.png")
                print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) // 1024} KB)")

    head = ["degradation", "blurred", "skimage wiener", "blurkit wiener", "skimage RL", "blurkit RL", "blind"]
    print(f"\n### PSNR (dB), mean of {len(names)} photographs ({', '.join(names)}), {args.size}x{args.size}, "
          f"noise {args.noise}, balance {args.balance}, RL x{args.num_iter}\n")
    print(md_table(head, rows_psnr, "{:.2f}"))
    print("\n### SSIM\n")
    print(md_table(head, rows_ssim, "{:.3f}"))
    print("\n### blind vs non-blind Wiener (PSNR dB)\n")
    print(md_table(["degradation", "estimated parameters per photograph", "non-blind", "blind", "difference"],
                   blind_rows, "{:.2f}"))
    sweep_rows = []
    for label in ("Gaussian sigma 3", "motion 15 px at 120 deg"):
        if label not in kept:
            continue
        y_np, k = kept[label]
        conv_k = k[0].numpy()[::-1, ::-1].copy()
        for bal in (0.001, 0.003, 0.01, 0.03, 0.1):
            sk = [restoration.wiener(im, conv_k, bal, clip=False) for im in y_np]
            ours = deblur.wiener(torch.from_numpy(y_np)[:, None].float(), k.float(), bal)[:, 0].double().numpy()
            sweep_rows.append([label, f"{bal:g}", np.mean([scores(sharp[i], sk[i])[0] for i in range(len(names))]),
                               np.mean([scores(sharp[i], ours[i])[0] for i in range(len(names))])])
    if sweep_rows:
        print("\n### Wiener at other balances (PSNR dB, same inputs)\n")
        print(md_table(["degradation", "balance", "skimage wiener", "blurkit wiener"], sweep_rows, "{:.2f}"))
    if not have_motion:
        print("\n(blurkit.measure.estimate_motion is not available: no blind motion rows)")
    print(f"\nlike-for-like check: blurkit wiener(border='circular') vs skimage wiener, max |difference| over "
          f"all crops and degradations = {max(like):.2e} (blurkit float64)")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
