"""DDP: ``torchrun --nproc_per_node=2 -m blurkit train`` (gloo, CPU) ends with the weights of a 1-process run.

The model is BatchNorm-free (GroupNorm, per-image statistics) and the global batch is the same (32 = 2 x 16),
so the averaged DDP gradient equals the 1-process gradient up to float summation order. Blur, flips and
rotations are drawn for the global batch from a position-seeded generator and sliced per rank, so they are
on as in real training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blurkit.train import load_checkpoint, train

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_data  # noqa: E402


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_ddp_matches_one_process(tmp_path):
    data = make_data(tmp_path / "data", n_train=192, n_test=64)
    args = ["--data", f"fashion-mnist:{data}", "--image-size", "0", "--epochs", "2", "--batch-size", "32",
            "--model-option", "width=8", "--model-option", "norm=\"group\"", "--regime", "strong",
            "--rotate", "10", "--eval-sigmas", "8", "--threads", "1", "--no-progress", "--no-tensorboard",
            "--seed", "3", "--save-every-steps", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "blurkit", "train", *args, "--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_checkpoint(tmp_path / "ddp")
    assert ddp["metrics"][-1]["world_size"] == 2

    import argparse

    from blurkit.commands.train import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    cfg = config_from_args(parser.parse_args(["train", *args, "--out", str(tmp_path / "one")]))
    one = train(cfg)
    ref = one.model.state_dict()
    assert ddp["model"].keys() == ref.keys()
    for k, v in ref.items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    # metrics are reduced over ranks: the DDP log equals the 1-process log
    for a, b in zip(ddp["metrics"], one.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-9)
        assert a["val_acc_sigma_8"] == pytest.approx(b["val_acc_sigma_8"], abs=1e-9)
    # only rank 0 wrote: one metrics file, no stray files
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["config.json", "config.toml", "last.pt",
                                                                     "metrics.csv", "metrics.jsonl"]

    # Killed mid-epoch (6 steps per epoch; checkpoints at global steps 4, 6 and 8; both ranks killed at
    # step 11) and resumed: the same weights, and the resumed epoch's metrics are those of the whole run
    # (the checkpoint holds the epoch's running sums over both ranks, counted once on resume).
    script = tmp_path / "kill_ddp.py"
    script.write_text(KILL_DDP)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    killed = subprocess.run([*torchrun, str(script), "11", *args, "--out", str(tmp_path / "killed")],
                            env=env, capture_output=True, text=True, timeout=180)
    assert killed.returncode != 0
    state = load_checkpoint(tmp_path / "killed")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    resumed = subprocess.run([*torchrun, "-m", "blurkit", "train", *args, "--out", str(tmp_path / "killed"),
                              "--resume"], env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = load_checkpoint(tmp_path / "killed")
    for k, v in ddp["model"].items():
        assert torch.equal(again["model"][k], v), k
    for a, b in zip(again["metrics"], ddp["metrics"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-12)
        assert a["images_per_s"] * a["epoch_time_s"] == pytest.approx(192)  # images of the epoch, all ranks


KILL_DDP = """
import argparse, os, signal, sys
from blurkit.commands.train import add_parser, config_from_args
from blurkit.train import train
kill_at = int(sys.argv[1])
parser = argparse.ArgumentParser()
add_parser(parser.add_subparsers())
cfg = config_from_args(parser.parse_args(["train", *sys.argv[2:]]))
def cb(info):
    if info["global_step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, callbacks=[cb])
"""
