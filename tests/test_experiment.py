"""``blurkit experiment --quick`` end to end, resume, ``blurkit evaluate``, and one-line errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from blurkit.cli import main

FIGURES = ("examples", "accuracy_gaussian", "accuracy_motion", "accuracy_defocus", "survival", "quality_at_flip",
           "corruptions", "worst_case")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "run"
    assert main(["experiment", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_quick_writes_results_figures_and_report(quick_run: Path):
    r = _results(quick_run)
    for key in ("regimes", "corruption_table", "dataset", "config", "device", "created", "name", "timings"):
        assert key in r, key
    assert list(r["regimes"]) == ["standard", "weak", "strong"]
    assert r["dataset"]["image_size"] == 28 and r["dataset"]["reference_size"] == 224
    for name, reg in r["regimes"].items():
        for key in ("clean_accuracy", "train_seconds", "curves", "critical", "corruptions", "corruption_summary",
                    "worst_case"):
            assert key in reg, (name, key)
        assert 0.1 < reg["clean_accuracy"] <= 1.0  # above chance (10 classes) after one short epoch
        for fam in ("gaussian", "motion", "defocus"):
            c = reg["curves"][fam]
            assert len(c["levels"]) == len(c["top1"]) == len(c["ci_low"]) == len(c["ci_high"])
            assert all(lo <= a <= hi for lo, a, hi in zip(c["ci_low"], c["top1"], c["ci_high"]))
            # levels are px at 224, scaled by 28 / 224 for the 28 px images
            assert c["levels_px"] == pytest.approx([v * 28 / 224 for v in c["levels"]])
        assert reg["curves"]["gaussian"]["top1"][0] == pytest.approx(reg["clean_accuracy"])
        surv = reg["critical"]["survival"]
        assert surv["fraction"][0] == 1.0 and all(a >= b for a, b in zip(surv["fraction"], surv["fraction"][1:]))
        assert all(len(v) == 5 and all(0 <= e <= 1 for e in v) for v in reg["corruptions"].values())
        assert 0 <= reg["worst_case"]["flip_rate"] <= 1
    # CE is relative to the standard model: exactly 1 for it
    assert r["regimes"]["standard"]["corruption_summary"]["mce_blur"] == pytest.approx(1.0)
    assert r["regimes"]["standard"]["corruption_summary"]["mce_noise"] == pytest.approx(1.0)
    for k in FIGURES:
        png = quick_run / f"{k}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", k
    html = (quick_run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "Do the paper's claims replicate here?" in html


def test_clean_accuracy_matches_an_independent_count(quick_run: Path):
    """Reload the strong checkpoint and count correct test predictions directly (no robustness code)."""
    from blurkit.data import fashion_mnist
    from blurkit.train import load_model

    model, info = load_model(quick_run / "regimes" / "strong")
    r = _results(quick_run)
    n = r["dataset"]["test_size"]
    ds = fashion_mnist("test")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(r["config"]["seed"] + 1))[:n].sort().values
    x = ds.images[idx].float() / 255
    mean, std = torch.tensor(info["mean"]).view(1, -1, 1, 1), torch.tensor(info["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = model((x - mean) / std).argmax(1)
    acc = float((pred == ds.labels[idx]).double().mean())
    assert r["regimes"]["strong"]["clean_accuracy"] == pytest.approx(acc, abs=1e-9)


def test_resume_skips_finished_regimes(quick_run: Path, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in quick_run.glob("regimes/*/last.pt")}
    assert len(stamps) == 3
    assert main(["experiment", "--quick", "--out", str(quick_run)]) == 0
    err = capsys.readouterr().err
    assert err.count("not training again") == 3
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (quick_run / "report.html").is_file()


def test_resume_refuses_other_settings(quick_run: Path, capsys):
    assert main(["experiment", "--quick", "--epochs", "2", "--out", str(quick_run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "epochs" in err[0]


def test_resume_refuses_a_finished_model_of_other_data(quick_run: Path, capsys):
    data = "fashion-mnist:/usr/share/datasets/fashion-mnist"
    assert main(["experiment", "--quick", "--data", data, "--out", str(quick_run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "data" in err[0]


def test_three_channel_experiment_trains_three_channel_models(tmp_path: Path):
    out = tmp_path / "c3"
    assert main(["experiment", "--quick", "--regimes", "standard", "--channels", "3", "--out", str(out),
                 "--no-progress"]) == 0
    state = torch.load(out / "regimes" / "standard" / "last.pt", weights_only=True)
    assert state["model_info"]["in_channels"] == 3 and _results(out)["dataset"]["channels"] == 3


def test_evaluate_refuses_checkpoints_of_different_image_sizes(quick_run: Path, tmp_path: Path, capsys):
    other = tmp_path / "other"
    assert main(["train", "--image-size", "20", "--epochs", "1", "--limit", "64", "--val-limit", "32",
                 "--batch-size", "32", "--model-option", "width=4", "--out", str(other), "--no-progress",
                 "--no-tensorboard"]) == 0
    capsys.readouterr()
    ck = str(quick_run / "regimes" / "standard")
    assert main(["evaluate", ck, str(other), "--quick", "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different image sizes" in err[0] and "--image-size" in err[0]
    assert not (tmp_path / "e").exists()


def test_evaluate_checkpoints(quick_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    ckpts = [str(quick_run / "regimes" / "standard" / "last.pt"), str(quick_run / "regimes" / "strong")]
    assert main(["evaluate", *ckpts, "--quick", "--out", str(out), "--no-progress"]) == 0
    r = _results(out)
    assert list(r["regimes"]) == ["standard", "strong"] and r["kind"] == "evaluate"
    # same checkpoint, same test images: same clean accuracy as the experiment measured
    exp = _results(quick_run)
    for name in ("standard", "strong"):
        assert r["regimes"][name]["clean_accuracy"] == pytest.approx(exp["regimes"][name]["clean_accuracy"])
    assert (out / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["experiment", "--regimes", "standard,nope", "--quick"], "unknown regime"),
    (["experiment", "--image-size", "4", "--quick"], "image_size"),
    (["experiment", "--data", "/nonexistent/folder", "--quick"], "not found"),
    (["evaluate", "/nonexistent/last.pt"], "checkpoint not found"),
    (["experiment", "--name", "a/b", "--quick"], "name"),
    (["experiment", "--quick", "--model-option", "widht=4"], "no option(s) 'widht'"),
    (["experiment", "--quick", "--model-option", "width=0"], "width must be a positive integer"),
])
def test_bad_input_is_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("blurkit: error:") and needle in err[0], err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that could not start


def test_evaluate_names_must_match(quick_run: Path, capsys):
    ck = str(quick_run / "regimes" / "standard")
    assert main(["evaluate", ck, "--names", "a,b"]) == 2
    assert "--names" in capsys.readouterr().err


def test_report_renders_in_chromium_at_phone_width(quick_run: Path, tmp_path: Path):
    from test_report import CHROMIUM, render_check

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    check = render_check(quick_run / "report.html", 390, 844, tmp_path)
    assert check == {"images": len(FIGURES), "broken": 0, "overflow": False}
    assert math.isfinite(_results(quick_run)["timings"]["total"])


def test_image_folder_data(tmp_path: Path):
    """``--data`` on an ImageFolder tree (train/ and test/ with one sub-folder per class), RGB, 16 px."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :20]
    for split, n in (("train", 64), ("test", 16)):
        for ci, cls in enumerate(("disk", "square")):
            d = tmp_path / "tree" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                cx, cy = rng.integers(7, 13, 2)
                m = ((xx - cx) ** 2 + (yy - cy) ** 2 < 25) if ci == 0 else ((abs(xx - cx) < 5) & (abs(yy - cy) < 5))
                im = np.zeros((20, 20, 3), np.uint8)
                im[m] = rng.integers(120, 255, 3)
                Image.fromarray(im).save(d / f"{i}.png")
    out = tmp_path / "run"
    assert main(["experiment", "--quick", "--data", str(tmp_path / "tree"), "--image-size", "16", "--channels", "3",
                 "--regimes", "standard,strong", "--out", str(out), "--no-progress"]) == 0
    r = _results(out)
    assert r["dataset"]["classes"] == ["disk", "square"] and r["dataset"]["test_size"] == 32
    assert r["dataset"]["image_size"] == 16 and r["dataset"]["channels"] == 3
    assert list(r["regimes"]) == ["standard", "strong"]
    assert (out / "report.html").is_file()
