"""The training loop: ``train(config) -> TrainResult``.

One function runs a whole training job on one process or as one rank of a ``torchrun`` job:
data (Fashion-MNIST by default), model, blur regime (applied on the training device, per batch),
SGD/AdamW with a per-step schedule, AMP, channels_last, ``torch.compile``, gradient accumulation,
a progress bar, a metrics log (JSONL + CSV, TensorBoard when installed), atomic checkpoints every
epoch (and every ``save_every_steps``) and an exact ``resume``.

Exactness: the sample order (``DistributedSampler`` permutation of ``seed + epoch``), the flips,
rotations and blurs (generators seeded from ``(seed, epoch, step, micro-step)``) are functions of
the position in training, and the global RNG states are stored in the checkpoint, so a resumed run
repeats the uninterrupted run operation for operation (bit-identical weights on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import TensorImageDataset, load_dataset, seed_worker
from ..errors import BlurkitError
from ..filtering import gaussian_blur
from ..models import build_model
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, atomic_write_text
from .distributed import DistInfo, ResumableSampler, StepRandom, all_reduce_sums, setup, teardown
from .regimes import FrontModel, Regime, StepContext, build_regime, deblur_front

__all__ = ["train", "TrainResult", "evaluate", "Preprocess", "augment_batch", "GREY_MEAN", "GREY_STD"]

GREY_MEAN, GREY_STD = [0.449], [0.226]          # Jang & Tong 2024 (grey ImageNet)
RGB_MEAN, RGB_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained bare model (no DDP / compile wrapper), in eval mode.
        history: one metrics row per epoch (the rows of ``metrics.jsonl``).
        config: the resolved configuration.
        out_dir: the run folder (``None`` on ranks other than 0).
        checkpoint: path of ``last.pt`` (``None`` on ranks other than 0).
        model_info: how to rebuild and feed the model (see ``checkpoint.load_model``).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    config: TrainConfig
    out_dir: Path | None = None
    checkpoint: Path | None = None
    model_info: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        """The last metrics row (empty dict if no epoch ran)."""
        return self.history[-1] if self.history else {}


class Preprocess(nn.Module):
    """``[0, 1]`` float batch -> model input: ``(x - mean) / std``, channels repeated, memory format.

    Args:
        mean, std: per-channel (or one) values.
        out_channels: channels the model expects; a 1-channel batch is repeated to 3 after
            normalisation (Jang & Tong feed grey images as 3 identical channels).
        channels_last: return ``torch.channels_last`` memory format.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], out_channels: int,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), False)
        self.out_channels, self.channels_last = out_channels, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if x.shape[1] != self.out_channels:
            if x.shape[1] != 1:
                raise ValueError(f"cannot feed {x.shape[1]}-channel images to a {self.out_channels}-channel model")
            x = x.expand(-1, self.out_channels, -1, -1)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def augment_batch(x: torch.Tensor, rng: StepRandom, *, hflip: bool = True, rotate: float = 0.0) -> torch.Tensor:
    """Random horizontal flips (p = 1/2) and rotations (uniform in ``[-rotate, rotate]`` degrees, zero fill).

    Batched (``grid_sample`` with one affine matrix per image); the draws come from ``rng`` (global
    batch, sliced to this rank). ``x``: ``(b, C, H, W)`` float.
    """
    if hflip:
        flip = rng.uniform() < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if rotate > 0:
        a = rng.uniform(-rotate, rotate).to(torch.float32) * (math.pi / 180.0)
        cos, sin = torch.cos(a), torch.sin(a)
        zero = torch.zeros_like(a)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


# --------------------------------------------------------------------------------------- helpers
def _num_classes(ds: Dataset) -> int:
    base = ds
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    if hasattr(base, "num_classes"):
        return int(base.num_classes)
    if hasattr(base, "classes"):
        return len(base.classes)
    labels = getattr(base, "labels", None)
    if labels is None:
        labels = getattr(base, "targets", None)
    if labels is not None:
        return int(torch.as_tensor(labels).max()) + 1
    return int(max(int(ds[i][1]) for i in range(len(ds)))) + 1


def _classes(ds: Dataset) -> list[str]:
    base = ds
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    return [str(c) for c in getattr(base, "classes", [])]


def _to_unit(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


class _Batches:
    """Micro-batches ``(x uint8/float, y)`` of one rank for one epoch (tensor fast path or DataLoader)."""

    def __init__(self, ds: Dataset, sampler: ResumableSampler, micro: int, num_workers: int, seed: int,
                 pin: bool) -> None:
        self.ds, self.sampler, self.micro = ds, sampler, micro
        self.num_workers, self.seed, self.pin = num_workers, seed, pin

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.ds, TensorImageDataset):
            idx = torch.tensor(self.sampler.indices(), dtype=torch.long)
            for part in idx.split(self.micro):
                if part.numel() == self.micro:
                    yield self.ds.images[part], self.ds.labels[part]
            return
        loader = DataLoader(self.ds, batch_size=self.micro, sampler=self.sampler, num_workers=self.num_workers,
                            worker_init_fn=seed_worker, drop_last=True, pin_memory=self.pin,
                            generator=torch.Generator().manual_seed(self.seed))
        for x, y in loader:
            yield x, torch.as_tensor(y, dtype=torch.long)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, sigmas: Sequence[float] = (0.0,), scale: float = 1.0,
             prep: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 256,
             device: torch.device | str = "cpu", truncate: float = 2.0, info: DistInfo | None = None,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             num_workers: int = 0) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``dataset`` without blur and at each Gaussian ``sigma``.

    Args:
        model: classifier taking ``prep(images)``.
        dataset: ``(image, label)`` items; uint8 images are scaled to ``[0, 1]``.
        sigmas: blur levels, multiplied by ``scale`` to get pixels (``scale = image_size / 224`` for
            Jang & Tong units); blur with ``truncate`` (2, Jang & Tong) and reflect borders.
        prep: normalisation (default: none).
        info: distributed info; each rank evaluates a shard and the sums are all-reduced.
        num_workers: DataLoader workers for datasets that are not in-memory tensors.

    Returns:
        ``{"loss": ..., "acc": ..., "acc_sigma_<s>": ..., "loss_sigma_<s>": ...}`` (accuracy in [0, 1];
        ``<s>`` formatted with ``:g``, in the units of ``sigmas``).

    Example:
        >>> evaluate(model, bk.data.fashion_mnist("test", image_size=32), sigmas=[0, 4, 8], scale=32 / 224)
    """
    info = info or DistInfo()
    device = torch.device(device)
    prep = prep or (lambda t: t)
    was_training = model.training
    model.eval()
    n = len(dataset)
    idx = torch.arange(info.rank, n, info.world_size)
    levels = [0.0] + [float(s) for s in sigmas if float(s) != 0.0]
    sums = [0.0] * (2 * len(levels)) + [0.0]
    if isinstance(dataset, TensorImageDataset):
        batches: Any = ((dataset.images[part], dataset.labels[part]) for part in idx.split(batch_size))
    else:
        batches = DataLoader(torch.utils.data.Subset(dataset, idx.tolist()), batch_size=batch_size,
                             num_workers=num_workers, worker_init_fn=seed_worker)
    for xb, yb in batches:
        yb = torch.as_tensor(yb, dtype=torch.long)
        x = _to_unit(xb, device)
        y = yb.to(device)
        for j, s in enumerate(levels):
            xs = x if s == 0 else gaussian_blur(x, s * scale, truncate=truncate)
            with autocast():
                logits = model(prep(xs)).float()
            sums[2 * j] += float(F.cross_entropy(logits, y, reduction="sum"))
            sums[2 * j + 1] += float((logits.argmax(1) == y).sum())
        sums[-1] += y.numel()
    sums = all_reduce_sums(sums, info)
    total = max(sums[-1], 1.0)
    out: dict[str, float] = {"loss": sums[0] / total, "acc": sums[1] / total}
    for j, s in enumerate(levels):
        if j == 0 and 0.0 not in [float(v) for v in sigmas]:
            continue
        out[f"loss_sigma_{s:g}"] = sums[2 * j] / total
        out[f"acc_sigma_{s:g}"] = sums[2 * j + 1] / total
    model.train(was_training)
    return out


class _Logger:
    """Rank-0 metrics log: ``metrics.jsonl`` (appended), ``metrics.csv`` (rewritten atomically), TensorBoard."""

    def __init__(self, out: Path, history: list[dict[str, Any]], tensorboard: bool) -> None:
        self.out, self.rows = out, list(history)
        self.jsonl = out / "metrics.jsonl"
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        lines = [",".join(keys)] + [",".join("" if r.get(k) is None else str(r.get(k)) for k in keys)
                                    for r in self.rows]
        atomic_write_text(self.out / "metrics.csv", "\n".join(lines) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _resolve_config(config: TrainConfig | dict | str | os.PathLike | None, overrides: dict[str, Any]) -> TrainConfig:
    if config is None:
        cfg = TrainConfig()
    elif isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config)
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict(config)
    elif isinstance(config, (str, os.PathLike)):
        cfg = TrainConfig.from_toml(config)
    else:
        raise TypeError(f"config must be a TrainConfig, dict, TOML path or None; got {type(config).__name__}")
    if overrides:
        d = cfg.to_dict()
        d.update(overrides)
        cfg = TrainConfig.from_dict(d)
    return cfg


# ------------------------------------------------------------------------------------------ train
def train(config: TrainConfig | dict | str | os.PathLike | None = None, *, model: nn.Module | None = None,
          train_data: Dataset | None = None, val_data: Dataset | None = None,
          callbacks: Sequence[Callable[[dict[str, Any]], None]] = (), **overrides: Any) -> TrainResult:
    """Train a classifier under a blur regime; write checkpoints and a metrics log to ``config.out``.

    Args:
        config: a :class:`TrainConfig`, a dict of its fields, a TOML file path, or ``None`` (defaults).
        model: an ``nn.Module`` to train instead of ``config.model`` (any classifier ``(B,C,H,W)->(B,K)``).
        train_data, val_data: datasets of ``(image, label)`` instead of ``config.data`` (images uint8
            in 0..255 or float in [0, 1], ``(C, H, W)``). ``val_data=None`` uses the test split of
            ``config.data``; set ``config.val_data = "none"`` to skip validation.
        callbacks: functions called after every optimizer step with ``{"epoch", "step", "global_step",
            "loss", "lr"}`` (epoch and step 0-based).
        **overrides: config fields to override (``train(cfg, epochs=1)``).

    Returns:
        :class:`TrainResult` (model, per-epoch history, paths).

    Files written by rank 0 in ``config.out``: ``config.toml`` + ``config.json`` (the resolved config),
    ``last.pt`` (checkpoint, see :mod:`blurkit.train.checkpoint`), ``epoch_NNN.pt`` with
    ``keep_epoch_checkpoints``, ``metrics.jsonl`` and ``metrics.csv`` (one row per epoch).

    Example:
        >>> from blurkit.train import train
        >>> res = train(regime="strong", epochs=2, image_size=32, limit=2000, out="runs/strong")
        >>> res.final["val_acc"]
    """
    cfg = _resolve_config(config, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = setup(cfg.device)
    finished = False
    try:
        result = _train(cfg, info, model, train_data, val_data, callbacks)
        finished = True
        return result
    finally:
        teardown(info, finished)


def _train(cfg: TrainConfig, info: DistInfo, user_model: nn.Module | None, train_ds: Dataset | None,
           val_ds: Dataset | None, callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> TrainResult:
    dev = info.device
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)

    # ---- data
    if train_ds is None:
        train_ds = load_dataset(cfg.data, "train", image_size=cfg.image_size or None, channels=cfg.channels,
                                limit=cfg.limit, skip_bad=cfg.skip_bad)
    if val_ds is None and cfg.val_data != "none":
        val_ds = load_dataset(cfg.val_data or cfg.data, "test", image_size=cfg.image_size or None,
                              channels=cfg.channels,
                              limit=cfg.val_limit, skip_bad=cfg.skip_bad)
    if len(train_ds) == 0:
        raise BlurkitError("the training set is empty")
    for name, ds in (("training", train_ds), ("evaluation", val_ds)):
        base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
        skipped = getattr(base, "skipped", None)
        if skipped and info.is_main:
            print(f"blurkit train: skipped {len(skipped)} unreadable {name} image file(s), e.g. {skipped[0]}",
                  file=sys.stderr)
    if isinstance(train_ds, TensorImageDataset):
        src_ch, in_ch = train_ds.images.shape[1], train_ds.channels
        size = tuple(train_ds.images.shape[-2:])
    else:
        x0 = torch.as_tensor(train_ds[0][0])
        src_ch, size = x0.shape[0], tuple(x0.shape[-2:])
        in_ch = max(src_ch, cfg.channels)
    image_side = min(size)
    num_classes = cfg.num_classes or _num_classes(train_ds)
    mean = cfg.mean or (GREY_MEAN if src_ch == 1 else RGB_MEAN)
    std = cfg.std or (GREY_STD if src_ch == 1 else RGB_STD)
    channels_last = dev.type == "cuda" if cfg.channels_last is None else cfg.channels_last

    # ---- batch geometry
    world = info.world_size
    if cfg.batch_size % (world * cfg.accumulate):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world size x accumulate "
                         f"= {world} x {cfg.accumulate}")
    micro = cfg.batch_size // (world * cfg.accumulate)
    per_step = micro * cfg.accumulate
    full = ResumableSampler(len(train_ds), world, info.rank, seed=cfg.seed, per_rank_batch=per_step)
    steps_per_epoch = len(full) // per_step
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({len(train_ds)} images)")
    total_steps = steps_per_epoch * cfg.epochs

    # ---- model, regime
    model_opts = dict(cfg.model_options)
    model_opts.setdefault("image_size", image_side)
    net = build_model(user_model if user_model is not None else cfg.model, num_classes, in_ch,
                      blurpool=cfg.blurpool, **model_opts)
    regime: Regime = build_regime(cfg.regime, cfg.regime_options, image_size=image_side,
                                  reference_size=cfg.reference_size, truncate=cfg.truncate, border=cfg.border)
    if cfg.regime == "deblur-front":
        net = FrontModel(deblur_front(cfg.regime_options), net, mean, std)
    net = net.to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    prep = Preprocess(mean, std, in_ch, channels_last).to(dev)
    model_info = {"name": cfg.model if user_model is None else type(user_model).__name__,
                  "num_classes": num_classes, "in_channels": in_ch, "image_size": image_side,
                  "blurpool": cfg.blurpool, "options": {k: v for k, v in model_opts.items() if k != "image_size"},
                  "classes": _classes(train_ds), "mean": list(mean), "std": list(std),
                  "deblur_front": cfg.regime == "deblur-front"}

    # ---- optimisation
    params = [p for p in net.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if cfg.scheduler == "step":
            return 0.1 ** (step // max(1, int(total_steps / 3)))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    use_scaler = cfg.amp == "fp16" and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if dev.type == "cuda" else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

    def autocast() -> contextlib.AbstractContextManager:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=amp_dtype)

    # ---- resume
    start_epoch, start_step, global_step = 0, 0, 0
    history: list[dict[str, Any]] = []
    partial = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, count, train seconds of an interrupted epoch
    resume_path: Path | None = None
    if cfg.resume:
        resume_path = Path(cfg.resume) if isinstance(cfg.resume, str) else out / "last.pt"
        if resume_path.is_dir():
            resume_path = resume_path / "last.pt"
        if not resume_path.is_file():
            if isinstance(cfg.resume, str):
                raise BlurkitError(f"--resume: checkpoint not found: {resume_path}")
            resume_path = None  # --resume with no checkpoint yet: start from scratch
    if resume_path is not None:
        state = load_checkpoint(resume_path, map_location=dev)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        global_step = int(state["global_step"])
        history = [r for r in state.get("metrics", []) if r.get("epoch", 0) <= start_epoch]
        partial = [float(v) for v in state.get("partial", partial)]
        if info.rank != 0:  # the stored sums are the totals over all ranks: counted once, by rank 0
            partial[:3] = [0.0, 0.0, 0.0]
        set_rng_state(state["rng"])
        if info.is_main and cfg.progress:
            print(f"blurkit train: resuming from {resume_path} at epoch {start_epoch + 1}, step {start_step}",
                  file=sys.stderr)

    run_model: nn.Module = net
    if cfg.compile:
        run_model = torch.compile(run_model)
    if info.distributed:
        run_model = nn.parallel.DistributedDataParallel(run_model, device_ids=[dev] if dev.type == "cuda" else None)
    def criterion(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)

    ctx = StepContext(model=run_model, inner=net, prep=prep, autocast=autocast, criterion=criterion,
                      scale=image_side / cfg.reference_size if cfg.reference_size else 1.0)

    logger: _Logger | None = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dataclasses.replace(cfg, resume=False).save(out)  # the stored config reruns, it does not resume
        logger = _Logger(out, history, cfg.tensorboard)

    def checkpoint(epoch: int, step_in_epoch: int, part: list[float]) -> None:
        if not info.is_main:
            return
        state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                 "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "scaler": scaler.state_dict() if use_scaler else {}, "rng": rng_state(),
                 "config": cfg.to_dict(), "model_info": model_info, "metrics": list(logger.rows),
                 "partial": list(part), "regime": regime.describe()}
        save_checkpoint(state, out / "last.pt")
        if cfg.keep_epoch_checkpoints and step_in_epoch == 0:
            save_checkpoint(state, out / f"epoch_{epoch:03d}.pt")

    eval_scale = image_side / cfg.reference_size if cfg.reference_size else 1.0
    t_run = time.perf_counter()
    from tqdm.auto import tqdm

    for epoch in range(start_epoch, cfg.epochs):
        regime.set_epoch(epoch)
        net.train()
        sampler = ResumableSampler(len(train_ds), world, info.rank, seed=cfg.seed, per_rank_batch=per_step)
        sampler.set_epoch(epoch)
        first = start_step if epoch == start_epoch else 0
        sampler.set_start(first * per_step)
        sums = partial if epoch == start_epoch else [0.0, 0.0, 0.0, 0.0]
        batches = iter(_Batches(train_ds, sampler, micro, cfg.num_workers, cfg.seed + epoch, dev.type == "cuda"))
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not (cfg.progress and info.is_main), dynamic_ncols=True, leave=True, file=sys.stderr)
        t0 = time.perf_counter()
        for step in range(first, steps_per_epoch):
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m in range(cfg.accumulate):
                xb, yb = next(batches)
                x, y = _to_unit(xb, dev), yb.to(dev, non_blocking=True)
                rng = StepRandom(cfg.seed, epoch, step, m, x.shape[0], world, info.rank, dev, cfg.accumulate)
                x = augment_batch(x, rng, hflip=cfg.hflip, rotate=cfg.rotate)
                sync = (contextlib.nullcontext() if (not info.distributed or m == cfg.accumulate - 1)
                        else run_model.no_sync())
                with sync:
                    loss, logits = regime.loss(x, y, rng, ctx)
                    scaled = loss / cfg.accumulate
                    if use_scaler:
                        scaler.scale(scaled).backward()
                    else:
                        scaled.backward()
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise BlurkitError(f"training diverged: loss is {lv} at epoch {epoch + 1}, step {step + 1} "
                                       f"(lower --lr, or use --amp bf16 instead of fp16)")
                step_loss += lv / cfg.accumulate
                sums[0] += lv * y.numel()
                sums[1] += float((logits.detach().argmax(1) == y).sum())
                sums[2] += y.numel()
            if use_scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            global_step += 1
            elapsed = sums[3] + time.perf_counter() - t0
            bar.update(1)
            if bar.disable is False:
                bar.set_postfix(loss=f"{step_loss:.4f}", img_s=f"{sums[2] * world / max(elapsed, 1e-9):.0f}")
            for cb in callbacks:
                cb({"epoch": epoch, "step": step, "global_step": global_step, "loss": step_loss,
                    "lr": opt.param_groups[0]["lr"]})
            if cfg.save_every_steps and global_step % cfg.save_every_steps == 0 and step + 1 < steps_per_epoch:
                # the epoch's running sums over all ranks (every rank takes part in the reduction)
                checkpoint(epoch, step + 1, [*all_reduce_sums(sums[:3], info), elapsed])
        bar.close()
        train_time = sums[3] + time.perf_counter() - t0
        loss_sum, correct, count = all_reduce_sums(sums[:3], info)
        row: dict[str, Any] = {"epoch": epoch + 1, "global_step": global_step,
                               "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
                               "lr": opt.param_groups[0]["lr"]}
        t_eval = time.perf_counter()
        if val_ds is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            ev = evaluate(net, val_ds, sigmas=[0.0, *cfg.eval_sigmas], scale=eval_scale, prep=prep,
                          batch_size=cfg.eval_batch_size, device=dev, truncate=cfg.truncate or 2.0, info=info,
                          autocast=autocast, num_workers=cfg.num_workers)
            row["val_loss"], row["val_acc"] = ev["loss"], ev["acc"]
            for s in cfg.eval_sigmas:
                if s != 0:
                    row[f"val_acc_sigma_{s:g}"] = ev[f"acc_sigma_{s:g}"]
        row.update({"images_per_s": count / max(train_time, 1e-9), "epoch_time_s": train_time,
                    "eval_time_s": time.perf_counter() - t_eval, "elapsed_s": time.perf_counter() - t_run,
                    "regime": cfg.regime, "world_size": world})
        if logger is not None:
            logger.write(row)
            if cfg.progress:
                msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                print(f"blurkit train: {msg}", file=sys.stderr)
        history.append(row)
        checkpoint(epoch + 1, 0, [0.0, 0.0, 0.0, 0.0])
        partial = [0.0, 0.0, 0.0, 0.0]

    if logger is not None:
        logger.close()
    net.eval()
    return TrainResult(model=net, history=logger.rows if logger is not None else history, config=cfg,
                       out_dir=out if info.is_main else None,
                       checkpoint=(out / "last.pt") if info.is_main else None, model_info=model_info)
