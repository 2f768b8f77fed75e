"""Tests for blurkit.train: learning, regimes, checkpoints (atomic, weights_only), exact resume after SIGKILL, CLI."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import blurkit as bk
from blurkit.cli import main as cli_main
from blurkit.train import StepRandom, TrainConfig, build_regime, load_checkpoint, load_model, train
from blurkit.train.checkpoint import save_checkpoint
from blurkit.train.distributed import ResumableSampler


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def make_data(root: Path, n_train: int = 256, n_test: int = 128, size: int = 12) -> Path:
    """A learnable 4-class IDX dataset: class = which horizontal band is bright (flip-invariant), plus noise."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 4
        rng.shuffle(labels)
        imgs = rng.integers(0, 60, (n, size, size))
        h = size // 4
        for i, c in enumerate(labels):
            imgs[i, int(c) * h: int(c) * h + h, 2:-2] += 150
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", np.clip(imgs, 0, 255))
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def tiny(data_root: Path, out: Path, **kw) -> dict:
    cfg = {"data": f"fashion-mnist:{data_root}", "out": str(out), "image_size": 0, "epochs": 2,
           "batch_size": 32, "model_options": {"width": 8}, "progress": False, "threads": 1, "lr": 0.05,
           "tensorboard": False}
    cfg.update(kw)
    return cfg


def test_training_reduces_loss_and_writes_run_folder(data_root, tmp_path):
    res = train(tiny(data_root, tmp_path / "run", epochs=3, regime="strong", eval_sigmas=[4.0, 8.0]))
    h = res.history
    assert len(h) == 3 and h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_acc"] > 0.5  # 4 classes: chance is 0.25
    assert {"val_acc_sigma_4", "val_acc_sigma_8", "images_per_s", "lr"} <= set(h[-1])
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    csv = (out / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,global_step,train_loss") and len(csv) == 4
    assert TrainConfig.from_toml(out / "config.toml") == res.config
    model, info = load_model(out)
    assert info["num_classes"] == 10 and info["mean"] == [0.449]  # Fashion-MNIST class list
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(model(x), res.model(x))


def test_checkpoint_is_atomic_and_weights_only(data_root, tmp_path):
    train(tiny(data_root, tmp_path, epochs=1, keep_epoch_checkpoints=True))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["format"] == "blurkit-checkpoint" and state["epoch"] == 1 and state["step_in_epoch"] == 0
    assert (tmp_path / "epoch_001.pt").is_file()
    before = (tmp_path / "last.pt").read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"x": Unpicklable()}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before  # old checkpoint intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(bk.errors.BlurkitError, match="not a blurkit checkpoint"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")


KILL_SCRIPT = """
import json, os, signal, sys
from blurkit.train import train
cfg = json.loads(sys.argv[1]); kill_at = int(sys.argv[2])
def cb(info):
    if info["global_step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, callbacks=[cb])
"""


def test_resume_after_sigkill_equals_uninterrupted(data_root, tmp_path):
    # 256 images / batch 32 = 8 steps per epoch; checkpoints at steps 5 (mid), 8 (epoch), 10 (mid); killed at 13
    kw = {"epochs": 2, "regime": "strong", "rotate": 10.0, "save_every_steps": 5, "val_limit": 32}
    killed = tiny(data_root, tmp_path / "killed", **kw)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), json.dumps(killed), "13"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = load_checkpoint(tmp_path / "killed")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 10)
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.endswith(".tmp")]

    resumed = train(killed, resume=True)
    full = train(tiny(data_root, tmp_path / "full", **kw))
    a, b = resumed.model.state_dict(), full.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[-1]["global_step"] == full.history[-1]["global_step"] == 16
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-12)


@pytest.mark.parametrize("regime,opts", [
    ("weak", {}), ("mix", {}), ("random-mix", {}), ("multi-steps", {"every": 1}),
    ("custom", {"sigmas": [0, 8], "weights": [1, 3]}), ("schedule", {"stages": [[0, 8], [1, 0]]}),
    ("families", {"families": {"gaussian": {"sigma": [1, 4]}, "motion": {"length": [3, 9]},
                               "defocus": {"radius": [1, 3]}, "box": {"size": [3, 5]}}}),
    ("adversarial", {"sigma_max": 8, "steps": 2}), ("adversarial", {"sigma_max": 40, "min_ssim": 0.6}),
    ("consistency", {"views": 1}), ("deblur-front", {"front": {"sigma": 0.5}}),
])
def test_every_regime_trains(data_root, tmp_path, regime, opts):
    res = train(tiny(data_root, tmp_path, epochs=2, regime=regime, regime_options=opts, val_limit=32, limit=128))
    assert all(np.isfinite(r["train_loss"]) for r in res.history)


def test_regime_blur_statistics_and_rank_slicing():
    # strong: sigma 0/1/2/4/8 at 224 px with weights .2 -> 80 % of images blurred (sigma scaled by 64/224)
    r = build_regime("strong", {}, image_size=64)
    x = torch.rand(2000, 1, 64, 64)
    y = r.blur(x, StepRandom(0, 0, 0, 0, local_batch=2000))
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    assert abs(changed.float().mean().item() - 0.8) < 0.04
    # per-image sigma: the high-frequency energy left falls with sigma; 5 distinct levels present
    hf = (y[..., 1:] - y[..., :-1]).pow(2).flatten(1).mean(1)
    assert len(torch.unique((hf * 100).round())) >= 5
    # the same global draw sliced to 2 ranks = the 1-process batch, rank r holding images r::2
    xs = torch.rand(8, 1, 16, 16)
    one = r.blur(xs, StepRandom(3, 1, 2, 0, local_batch=8))
    for rank in (0, 1):
        part = r.blur(xs[rank::2], StepRandom(3, 1, 2, 0, local_batch=4, world_size=2, rank=rank))
        torch.testing.assert_close(part, one[rank::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown regime_options"):
        build_regime("strong", {"sigmaz": 1}, image_size=32)
    with pytest.raises(ValueError, match="needs regime_options.sigmas"):
        build_regime("custom", {}, image_size=32)


def test_sampler_global_batches_do_not_depend_on_world_size():
    one = ResumableSampler(100, 1, 0, seed=5, per_rank_batch=8)
    one.set_epoch(3)
    ranks = []
    for rank in (0, 1):
        s = ResumableSampler(100, 2, rank, seed=5, per_rank_batch=4)
        s.set_epoch(3)
        ranks.append(s.indices())
    i1 = one.indices()
    for step in range(len(i1) // 8):
        glob = sorted(i1[step * 8:(step + 1) * 8])
        assert glob == sorted(ranks[0][step * 4:(step + 1) * 4] + ranks[1][step * 4:(step + 1) * 4])


def test_worst_case_sigma_respects_budget_and_raises_loss():
    torch.manual_seed(0)
    # a linear "model" that reads high-frequency content: blur lowers its confidence in class 0
    w = torch.zeros(2, 1, 8, 8)
    w[0, 0] = torch.tensor([[(-1.0) ** (i + j) for j in range(8)] for i in range(8)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2, bias=False))
    model[1].weight.data = w.view(2, 64) * 0.05
    x = ((torch.tensor([[(-1.0) ** (i + j) for j in range(8)] for i in range(8)]) + 1) / 2).expand(4, 1, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    s = bk.train.worst_case_sigma(model, x.contiguous(), y, 1.5, steps=3, init=torch.full((4,), 0.2))
    assert ((s >= 0) & (s <= 1.5)).all()
    loss = torch.nn.functional.cross_entropy
    assert loss(model(bk.gaussian_blur(x, s, truncate=2.0)), y) > loss(model(x), y)
    # an SSIM floor (fidelity budget) caps the blur: every returned sigma keeps SSIM >= the floor
    x16 = torch.rand(6, 1, 16, 16)
    m16 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    y16 = torch.zeros(6, dtype=torch.long)
    s16 = bk.train.worst_case_sigma(m16, x16, y16, 6.0, steps=2, min_ssim=0.7)
    assert (bk.measure.ssim(bk.gaussian_blur(x16, s16, truncate=2.0), x16, data_range=1.0) >= 0.7).all()


def test_config_validation_and_toml_roundtrip(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="eval_sigmas"):
            TrainConfig(eval_sigmas=[1.0, bad])
    for bad in (-1.0, 0.0, float("inf")):  # a negative step would descend, not ascend
        with pytest.raises(ValueError, match="step_size"):
            build_regime("adversarial", {"step_size": bad}, image_size=32)
    cfg = TrainConfig(regime="custom", regime_options={"sigmas": [0.0, 2.0], "weights": [1.0, 1.0]},
                      eval_sigmas=[1, 2], model_options={"width": 8})
    cfg.save(tmp_path)
    assert TrainConfig.from_toml(tmp_path / "config.toml") == cfg
    (tmp_path / "t.toml").write_text('epochs = 2\n[regime]\nname = "adversarial"\nsigma_max = 4\n')
    c2 = TrainConfig.from_toml(tmp_path / "t.toml")
    assert c2.regime == "adversarial" and c2.regime_options == {"sigma_max": 4}
    pytest.importorskip("yaml")
    (tmp_path / "t.yaml").write_text("epochs: 2\nregime:\n  name: adversarial\n  sigma_max: 4\n")
    assert TrainConfig.from_toml(tmp_path / "t.yaml") == c2


def test_cli_help_and_tiny_run(data_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--help"])
    assert exc.value.code == 0
    assert "--regime" in capsys.readouterr().out
    rc = cli_main(["train", "--data", f"fashion-mnist:{data_root}", "--image-size", "none", "--epochs", "1",
                   "--batch-size", "32", "--limit", "64", "--val-limit", "32", "--model-option", "width=8",
                   "--sigmas", "0,4", "--weights", "1,1", "--threads", "1", "--no-progress", "--no-tensorboard",
                   "--out", str(tmp_path / "cli")])
    assert rc == 0
    stored = TrainConfig.from_toml(tmp_path / "cli" / "config.toml")
    assert stored.regime == "custom" and stored.regime_options["sigmas"] == [0.0, 4.0]
    assert "checkpoint" in capsys.readouterr().out
    assert cli_main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err


def test_gradient_accumulation_matches_full_batch_and_amp_runs(data_root, tmp_path):
    kw = {"epochs": 1, "regime": "strong", "limit": 128, "val_limit": 32,
          "model_options": {"width": 8, "norm": "group"}}
    full = train(tiny(data_root, tmp_path / "a", **kw))
    acc = train(tiny(data_root, tmp_path / "b", accumulate=2, **kw))
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(acc.model.state_dict()[k], v, rtol=1e-4, atol=1e-6)
    amp = train(tiny(data_root, tmp_path / "c", amp="bf16", channels_last=True, **kw))
    assert np.isfinite(amp.history[-1]["train_loss"])


class _FloatImages(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.x, self.targets = torch.rand(n, 3, 12, 12, generator=g), torch.arange(n) % 3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.targets[i])


def test_user_model_and_dataset(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 3))
    res = train(out=str(tmp_path), train_data=_FloatImages(96), val_data=_FloatImages(40), model=net, epochs=1,
                batch_size=32, progress=False, regime="strong", eval_sigmas=[4.0], tensorboard=False)
    assert res.model is net and res.model_info["num_classes"] == 3 and res.model_info["mean"] == [0.485, 0.456, 0.406]
    assert 0 <= res.final["val_acc_sigma_4"] <= 1


def test_cli_image_folder_with_corrupt_file(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "tree" / split / c).mkdir(parents=True)
            for i in range(4):
                arr = np.full((14, 14, 3), 40 if c == "a" else 200, np.uint8) + rng.integers(0, 20, (14, 14, 3),
                                                                                              dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / "tree" / split / c / f"{i}.png")
    (tmp_path / "tree" / "train" / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    args = ["train", "--data", str(tmp_path / "tree"), "--image-size", "12", "--channels", "3", "--epochs", "1",
            "--batch-size", "4", "--model-option", "width=4", "--threads", "1", "--no-progress",
            "--no-tensorboard", "--out", str(tmp_path / "run")]
    assert cli_main(args) == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert cli_main([*args, "--skip-bad"]) == 0
    assert "skipped 1 unreadable training image file" in capsys.readouterr().err
    _, info = load_model(tmp_path / "run")
    assert info["classes"] == ["a", "b"] and info["in_channels"] == 3
