"""Import and command-line smoke tests."""

import subprocess
import sys

import torch

import blurkit as bk


def test_public_engine_names():
    for name in ("gaussian_blur", "box_blur", "defocus_blur", "motion_blur", "filter2d", "kernels"):
        assert hasattr(bk, name)
    y = bk.gaussian_blur(torch.rand(2, 3, 8, 8), 1.0)
    assert y.shape == (2, 3, 8, 8)


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "blurkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "blurkit" in out.stdout
