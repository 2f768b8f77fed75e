"""Deblurring speed: blurkit.deblur (batched torch) against scikit-image (one image per call), CPU.

A batch of 64 grey 224x224 crops of scikit-image photographs, each blurred with its own kernel
(Gaussian sigma ~ U[1, 4] or motion length ~ U[5, 15] at angle ~ U[0, 180)) plus noise 0.01.
scikit-image runs image by image on the same float32 arrays (it keeps float32; periodic borders for
Wiener, zero padding for Richardson-Lucy); blurkit runs the whole batch (float32) with its default borders (Wiener pads
each side by 4x the kernel radius, so its FFTs are larger than scikit-image's) and, for Wiener, also
with scikit-image's periodic model. Per-image times; the last column is the speed-up of blurkit.
The "FFT pair only" rows time torch's rfft2 + irfft2 of the batch and nothing else, at the circular
size and at the padded size Wiener uses for the Gaussian batch: no FFT-based Wiener filter in torch
can be faster than these, so their ratio to scikit-image's Wiener is the ceiling for the Wiener rows.

``--cpu-time`` measures CPU time instead of wall time, with one torch thread (scikit-image uses one
core as well): a per-core comparison that other jobs on a shared machine barely disturb, whereas
wall-clock ratios on 2 busy cores can swing by 2x from run to run.

Run: ``flock /tmp/bench.lock python benchmarks/deblur_speed.py [--quick] [--cpu-time]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _timing import Timer, machine, table
from skimage import color, data, restoration
from skimage.transform import resize

import blurkit as bk
from blurkit import deblur


def photo_batch(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` grey ``size`` x ``size`` crops of scikit-image photographs, (n, 1, size, size) float32."""
    photos = [data.camera() / 255.0, color.rgb2gray(data.astronaut()), color.rgb2gray(data.coffee()),
              color.rgb2gray(data.chelsea()), color.rgb2gray(data.rocket())]
    photos = [resize(p, (max(p.shape[0], 2 * size), max(p.shape[1], 2 * size)), anti_aliasing=True)
              for p in photos]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y0 = int(torch.randint(0, p.shape[0] - size + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, p.shape[1] - size + 1, (1,), generator=gen))
        out.append(torch.from_numpy(np.ascontiguousarray(p[y0:y0 + size, x0:x0 + size])))
    return torch.stack(out)[:, None].float()


CLOCK = time.perf_counter  # time.process_time with --cpu-time


def per_image_ms(fn, items, repeat: int = 1) -> float:
    """Median over ``repeat`` of the mean per-item time of ``fn(item)`` over ``items``, in ms."""
    fn(items[0])
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        for it in items:
            fn(it)
        times.append((CLOCK() - t0) / len(items))
    return float(np.median(times)) * 1e3


class CpuTimer(Timer):
    """:class:`Timer` on the process's CPU clock (all threads), median in ms."""

    def __call__(self, fn) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.repeat):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return float(np.median(times)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--num-iter", type=int, default=30, help="Richardson-Lucy iterations")
    ap.add_argument("--sk-images", type=int, default=16, help="images timed for scikit-image (per-image mean)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--cpu-time", action="store_true",
                    help="CPU time with one torch thread instead of wall time (robust to other jobs on the machine)")
    args = ap.parse_args()
    global CLOCK
    timer_cls = Timer
    if args.cpu_time:
        torch.set_num_threads(1)
        CLOCK, timer_cls = time.process_time, CpuTimer
    gen = torch.Generator().manual_seed(0)
    x = photo_batch(args.batch, args.size, gen)
    B = args.batch
    sigma = 1.0 + 3.0 * torch.rand(B, generator=gen)
    length = 5.0 + 10.0 * torch.rand(B, generator=gen)
    angle = 180.0 * torch.rand(B, generator=gen)
    families = {"gaussian": bk.kernels.gaussian(sigma), "motion": bk.kernels.motion(length, angle)}
    timer = timer_cls(repeat=3 if args.quick else 5, warmup=1)
    rows = []
    balance = 0.01
    for fam, k in families.items():
        y = bk.filter2d(x, k) + 0.01 * torch.randn(x.shape, generator=gen)
        y = y.clamp(0, 1)
        n_sk = min(args.sk_images, B)
        # the same float32 arrays as blurkit: scikit-image keeps float32 input in float32
        items = [(y[i, 0].numpy(), k[i].numpy()) for i in range(n_sk)]
        # scikit-image takes convolution kernels: flip the correlation kernels (no-op for these families).
        items = [(a, np.ascontiguousarray(kk[::-1, ::-1])) for a, kk in items]
        sk_w = per_image_ms(lambda it: restoration.wiener(it[0], it[1], balance, clip=False), items,
                            repeat=1 if args.quick else 3)
        bk_w = timer(lambda y=y, k=k: bk.deblur.wiener(y, k, balance)) / B
        rows.append([f"wiener, {fam} (blurkit: reflect + taper)", sk_w, bk_w, sk_w / bk_w])
        bk_wc = timer(lambda y=y, k=k: bk.deblur.wiener(y, k, balance, border="circular")) / B
        rows.append([f"wiener, {fam} (blurkit: circular, as skimage)", sk_w, bk_wc, sk_w / bk_wc])
        sk_rl = per_image_ms(lambda it: restoration.richardson_lucy(it[0], it[1], args.num_iter, clip=False),
                             items[: max(2, n_sk // 4)])
        bk_rl = timer_cls(repeat=1 if args.quick else 3, warmup=1)(
            lambda y=y, k=k: bk.deblur.richardson_lucy(y, k, args.num_iter)) / B
        rows.append([f"richardson_lucy x{args.num_iter}, {fam}", sk_rl, bk_rl, sk_rl / bk_rl])
    # The floor of any FFT-based Wiener filter in torch: one rfft2 and one irfft2 of the batch, nothing else.
    sk_wg = rows[0][1]
    ry, rx = deblur._support_radius(families["gaussian"])
    for n_fft, what in ((args.size, "circular size"),
                        (deblur._fast_size(args.size + 2 * max(4 * max(ry, rx), 4)), "padded size, Gaussian batch")):
        # in groups of images of the size wiener uses on CPU (the whole batch at once is slower)
        g = max(1, min(B, deblur._WIENER_CHUNK_BYTES // (6 * n_fft * n_fft * 4)))
        z = torch.rand(B, 1, n_fft, n_fft, generator=gen)
        zf = torch.fft.rfft2(z)
        fft_ms = timer(lambda z=z, zf=zf, n=n_fft, g=g: [
            (torch.fft.rfft2(z[a:a + g]), torch.fft.irfft2(zf[a:a + g], s=(n, n))) for a in range(0, B, g)]) / B
        rows.append([f"FFT pair only: rfft2 + irfft2 at {n_fft}x{n_fft} ({what}; groups of {g})", sk_wg, fft_ms,
                     sk_wg / fft_ms])
    clock = "CPU time, 1 torch thread" if args.cpu_time else "wall time"
    print(f"# deblur speed, batch {B} x 1 x {args.size} x {args.size}, per image (ms, {clock}); {machine()}")
    print(table(["method, kernels", "scikit-image ms/img", "blurkit ms/img", "speed-up"], rows))


if __name__ == "__main__":
    main()
