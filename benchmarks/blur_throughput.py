"""Throughput of the blur engine against its peers: one table per scenario, one run.

Scenarios (float32 batches 64x3x224x224, reflect border, parameters drawn per image with a fixed seed):

* (a) Gaussian, sigma ~ U[0.5, 4], truncate 3 (radius ceil(3 sigma)).
* (b) Gaussian, Jang & Tong "strong" set: sigma drawn uniformly from {0, 1, 2, 4, 8}, truncate 2.
* (c) motion blur, length ~ U[3, 25] px, angle ~ U[0, 180) degrees.
* (d) defocus blur, disk radius ~ U[1, 6] px.

Peers, side by side:

* ``blurkit``: ``bk.gaussian_blur`` / ``bk.motion_blur`` / ``bk.defocus_blur`` on the whole batch
  (fresh output; the time includes building the kernels), and the same call through the eager
  torch fallback (``blurkit.filtering._FORCE_TORCH = True``).
* ``OpenCV loop``: one ``cv2.GaussianBlur`` (ksize 2r+1, sigmaX=sigma) or ``cv2.filter2D`` (the
  same blurkit kernel, trimmed to its support, built outside the timed region) per image and channel
  plane, written into a preallocated output (``dst=``), and the same loop returning fresh arrays.
* ``kornia batch``: ``kornia.filters.gaussian_blur2d`` with per-sample sigma, kernel size fixed to
  the batch maximum (kornia needs one size; sigma 0 is replaced by 1e-3, which gives the identity
  kernel, because kornia divides by sigma); for motion/defocus ``kornia.filters.filter2d`` with the
  per-sample kernels zero-padded to the largest.
* ``kornia per image``: the same kornia call once per image with that image's own kernel size.
* ``grouped conv``: a naive ``F.pad`` + grouped ``F.conv2d`` (groups = B*C) with the max-size
  kernel: two 1-D passes for the Gaussian, one 2-D pass for motion/defocus.
* ``bandwidth bound``: reading and writing the batch once (a copy into a preallocated buffer),
  measured in the same run: no blur can be faster.

Columns: median ms per batch, images/s, ``peer/blurkit`` (peer time over blurkit time: > 1 means
blurkit is faster), and the max abs difference of the peer's output from blurkit's (kornia's
batch kernels are larger than each image's own, hence its small differences).

Usage::

    flock /tmp/bench.lock python benchmarks/blur_throughput.py            # CPU
    python benchmarks/blur_throughput.py --device cuda                    # GPU (OpenCV rows skipped)
    python benchmarks/blur_throughput.py --quick                          # fewer repeats
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import Timer, bandwidth_bound_ms, machine, table  # noqa: E402

import blurkit as bk  # noqa: E402
import blurkit.filtering as filtering  # noqa: E402


def _trim(k: np.ndarray) -> np.ndarray:
    """Smallest centred odd window holding the non-zero taps of a centred kernel."""
    kh, kw = k.shape
    nz = np.argwhere(k != 0)
    ry = int(np.abs(nz[:, 0] - kh // 2).max())
    rx = int(np.abs(nz[:, 1] - kw // 2).max())
    return np.ascontiguousarray(k[kh // 2 - ry: kh // 2 + ry + 1, kw // 2 - rx: kw // 2 + rx + 1])


class Scenario:
    """One workload: the blurkit call, its kernels and the peers' equivalents."""

    def __init__(self, name: str, x: torch.Tensor, kind: str, params: dict[str, torch.Tensor],
                 truncate: float = 3.0) -> None:
        self.name, self.x, self.kind, self.p, self.truncate = name, x, kind, params, truncate

    # ---------------------------------------------------------------------------- blurkit
    def blurkit(self) -> torch.Tensor:
        if self.kind == "gauss":
            return bk.gaussian_blur(self.x, self.p["sigma"], truncate=self.truncate)
        if self.kind == "motion":
            return bk.motion_blur(self.x, self.p["length"], self.p["angle"])
        return bk.defocus_blur(self.x, self.p["radius"])

    def blurkit_eager(self) -> torch.Tensor:
        old = filtering._FORCE_TORCH
        filtering._FORCE_TORCH = True
        try:
            return self.blurkit()
        finally:
            filtering._FORCE_TORCH = old

    def kernels2d(self) -> torch.Tensor:
        """Per-image 2-D kernels (B, K, K), zero-padded to the largest (float32, on x's device)."""
        if self.kind == "gauss":
            k1 = bk.kernels.gaussian1d(self.p["sigma"], truncate=self.truncate)
            return (k1[:, :, None] * k1[:, None, :]).to(self.x.device)
        if self.kind == "motion":
            return bk.kernels.motion(self.p["length"], self.p["angle"]).to(self.x.device)
        return bk.kernels.disk(self.p["radius"]).to(self.x.device)

    # ---------------------------------------------------------------------------- OpenCV
    def opencv(self, fresh: bool) -> Callable[[], np.ndarray]:
        import cv2

        xn = self.x.cpu().numpy()
        out = np.empty_like(xn)
        B, C = xn.shape[:2]
        if self.kind == "gauss":
            sig = self.p["sigma"].tolist()
            ks = [2 * math.ceil(self.truncate * s - 1e-9) + 1 for s in sig]

            def run() -> np.ndarray:
                res = out if not fresh else np.empty_like(xn)
                for b in range(B):
                    for c in range(C):
                        if sig[b] == 0:
                            if fresh:
                                res[b, c] = xn[b, c].copy()
                            else:
                                np.copyto(out[b, c], xn[b, c])
                        elif fresh:
                            res[b, c] = cv2.GaussianBlur(xn[b, c], (ks[b], ks[b]), sigmaX=sig[b], sigmaY=sig[b],
                                                         borderType=cv2.BORDER_REFLECT_101)
                        else:
                            cv2.GaussianBlur(xn[b, c], (ks[b], ks[b]), sigmaX=sig[b], sigmaY=sig[b],
                                             dst=out[b, c], borderType=cv2.BORDER_REFLECT_101)
                return res
            return run
        kern = [_trim(k) for k in self.kernels2d().cpu().numpy()]

        def run2d() -> np.ndarray:
            res = out if not fresh else np.empty_like(xn)
            for b in range(B):
                for c in range(C):
                    if fresh:
                        res[b, c] = cv2.filter2D(xn[b, c], -1, kern[b], borderType=cv2.BORDER_REFLECT_101)
                    else:
                        cv2.filter2D(xn[b, c], -1, kern[b], dst=out[b, c], borderType=cv2.BORDER_REFLECT_101)
            return res
        return run2d

    # ---------------------------------------------------------------------------- kornia
    def kornia_batch(self) -> Callable[[], torch.Tensor]:
        import kornia

        if self.kind == "gauss":
            s = self.p["sigma"].to(self.x.device)
            R = int(math.ceil(self.truncate * float(s.max()) - 1e-9))
            sig = torch.stack([s, s], dim=1).clamp_min(1e-3)
            return lambda: kornia.filters.gaussian_blur2d(self.x, (2 * R + 1, 2 * R + 1), sig)
        k = self.kernels2d()
        return lambda: kornia.filters.filter2d(self.x, k)

    def kornia_loop(self) -> Callable[[], torch.Tensor]:
        import kornia

        B = self.x.shape[0]
        if self.kind == "gauss":
            sig = self.p["sigma"].tolist()

            def run() -> torch.Tensor:
                out = torch.empty_like(self.x)
                for i in range(B):
                    s = sig[i]
                    if s == 0:
                        out[i] = self.x[i]
                        continue
                    k = 2 * math.ceil(self.truncate * s - 1e-9) + 1
                    out[i] = kornia.filters.gaussian_blur2d(self.x[i:i + 1], (k, k), (s, s))[0]
                return out
            return run
        kern = [torch.from_numpy(_trim(k)).to(self.x.device)[None] for k in self.kernels2d().cpu().numpy()]

        def run2d() -> torch.Tensor:
            out = torch.empty_like(self.x)
            for i in range(B):
                out[i] = kornia.filters.filter2d(self.x[i:i + 1], kern[i])[0]
            return out
        return run2d

    # ---------------------------------------------------------------------------- naive conv
    def grouped_conv(self) -> Callable[[], torch.Tensor]:
        B, C, H, W = self.x.shape
        if self.kind == "gauss":
            k1 = bk.kernels.gaussian1d(self.p["sigma"], truncate=self.truncate).to(self.x.device)
            R = k1.shape[1] // 2
            wx = k1.repeat_interleave(C, 0)[:, None, None, :]
            wy = k1.repeat_interleave(C, 0)[:, None, :, None]

            def run() -> torch.Tensor:
                xp = F.pad(self.x.reshape(1, B * C, H, W), (R, R, R, R), mode="reflect")
                y = F.conv2d(F.conv2d(xp, wx, groups=B * C), wy, groups=B * C)
                return y.reshape(B, C, H, W)
            return run
        k = self.kernels2d()
        R = k.shape[1] // 2
        w = k.repeat_interleave(C, 0)[:, None]

        def run2d() -> torch.Tensor:
            xp = F.pad(self.x.reshape(1, B * C, H, W), (R, R, R, R), mode="reflect")
            return F.conv2d(xp, w, groups=B * C).reshape(B, C, H, W)
        return run2d


def _maxdiff(a: object, ref: torch.Tensor) -> float:
    t = torch.as_tensor(a).to(ref.device)
    return float((t.float() - ref.float()).abs().max())


def run_scenario(sc: Scenario, timer: Timer, cuda: bool) -> str:
    B = sc.x.shape[0]
    ref = sc.blurkit()
    t_bk = timer(sc.blurkit)
    rows: list[tuple[str, Callable[[], object]]] = [("blurkit (eager torch fallback)", sc.blurkit_eager)]
    if not cuda:
        rows += [("OpenCV loop, preallocated output", sc.opencv(fresh=False)),
                 ("OpenCV loop, fresh outputs", sc.opencv(fresh=True))]
    rows += [("kornia batch (max kernel size)", sc.kornia_batch()),
             ("kornia per image (loop)", sc.kornia_loop()),
             ("grouped conv (max kernel size)", sc.grouped_conv())]
    out = [("blurkit", t_bk, B / t_bk * 1e3, 1.0, 0.0)]
    for name, fn in rows:
        ms = timer(fn)
        out.append((name, ms, B / ms * 1e3, ms / t_bk, _maxdiff(fn(), ref)))
    bw = bandwidth_bound_ms(sc.x, timer)
    out.append(("bandwidth bound (read + write once)", bw, B / bw * 1e3, bw / t_bk, float("nan")))
    rows_fmt = [(n, ms, ips, ratio, "-" if d != d else f"{d:.1e}") for n, ms, ips, ratio, d in out]
    return table(["method", "ms / batch", "images/s", "peer / blurkit", "max |diff| vs blurkit"], rows_fmt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (OpenCV rows are CPU-only)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 7)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        ap.error(f"--device must be cpu, or cuda on a machine with CUDA (torch.cuda.is_available() is "
                 f"{torch.cuda.is_available()}); got {args.device!r}")
    if args.batch < 1:
        ap.error(f"--batch must be >= 1; got {args.batch}")
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    timer = Timer(repeat=3 if args.quick else 7, warmup=1 if args.quick else 2, sync=cuda)
    g = torch.Generator().manual_seed(args.seed)
    B = args.batch
    x = torch.rand(B, 3, 224, 224, generator=g).to(dev)

    def u(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)).float()

    strong = torch.tensor([0.0, 1.0, 2.0, 4.0, 8.0])[torch.randint(0, 5, (B,), generator=g)]
    scenarios = [
        Scenario("(a) Gaussian, sigma ~ U[0.5, 4], truncate 3", x, "gauss", {"sigma": u(0.5, 4.0)}, 3.0),
        Scenario("(b) Gaussian, Jang & Tong strong set {0, 1, 2, 4, 8}, truncate 2", x, "gauss",
                 {"sigma": strong}, 2.0),
        Scenario("(c) motion blur, length ~ U[3, 25] px, angle ~ U[0, 180) deg", x, "motion",
                 {"length": u(3.0, 25.0), "angle": u(0.0, 180.0)}),
        Scenario("(d) defocus blur, radius ~ U[1, 6] px", x, "defocus", {"radius": u(1.0, 6.0)}),
    ]
    for sc in scenarios:
        for key in sc.p:
            sc.p[key] = sc.p[key].to(dev)
    print(f"# blur throughput, {B}x3x224x224 float32 on {args.device}, reflect border")
    print(f"machine: {machine()}")
    print(f"blurkit backend: {filtering.backend_info()}")
    print("timer: median of", timer.repeat, "runs after", timer.warmup, "warm-up runs; numbers are noisy on a "
          "shared machine")
    for sc in scenarios:
        print(f"\n## {sc.name}\n")
        print(run_scenario(sc, timer, cuda))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
