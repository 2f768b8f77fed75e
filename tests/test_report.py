"""The experiment report: claims from the numbers, strict JSON, self-contained HTML, rendering in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from blurkit.experiment import plots
from blurkit.experiment.report import claims_text, jsonable, render_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _curve(levels, top1):
    return {"levels": levels, "top1": top1, "ci_low": [max(0.0, a - 0.05) for a in top1],
            "ci_high": [min(1.0, a + 0.05) for a in top1], "auc": sum(top1) / len(top1)}


def _results(strong_better: bool = True) -> dict:
    lv = [0.0, 4.0, 8.0, 16.0]
    std = {"clean_accuracy": 0.90, "train_seconds": 10.0,
           "curves": {"gaussian": _curve(lv, [0.90, 0.70, 0.40, 0.20]), "motion": _curve(lv, [0.9, .8, .6, .4]),
                      "defocus": _curve(lv, [0.9, 0.6, 0.3, 0.1])},
           "critical": {"median": 6.0, "survival": {"sigma": [0, 4, 8, 16], "fraction": [1, .8, .4, .1]},
                        "psnr": [30.0, 28.0, 25.0], "ssim": [.9, .8, .7]},
           "corruptions": {"gaussian_blur": [.2, .3, .4, .5, .6], "gaussian_noise": [.2, .25, .3, .35, .4]},
           "corruption_summary": {"mce_blur": 1.0, "mce_noise": 1.0},
           "worst_case": {"flip_rate": 1.0, "mean_psnr": 31.0, "isotropic_psnr": 27.0}}
    top = [0.88, 0.85, 0.75, 0.55] if strong_better else [0.88, 0.60, 0.30, 0.10]
    strong = json.loads(json.dumps(std))
    strong.update({"clean_accuracy": 0.88, "curves": {**std["curves"], "gaussian": _curve(lv, top)},
                   "critical": {**std["critical"], "median": float("inf")},
                   "corruption_summary": {"mce_blur": 0.7 if strong_better else 1.2, "mce_noise": 0.9}})
    return {"name": "unit", "created": "now", "device": "cpu", "regimes": {"standard": std, "strong": strong},
            "dataset": {"name": "synthetic", "train_size": 10, "test_size": 10, "image_size": 28},
            "config": {"model": "small-cnn", "epochs": 1},
            "corruption_table": {"headers": ["regime", "blur mCE"], "rows": [["standard", 1.0], ["strong", 0.7]]}}


def test_claims_follow_the_numbers():
    good = claims_text(_results(True))
    bad = claims_text(_results(False))
    blur_good = [v for v, t in good if t.startswith("More robust to Gaussian blur")]
    blur_bad = [v for v, t in bad if t.startswith("More robust to Gaussian blur")]
    assert blur_good == [True] and blur_bad == [False]
    cost = [v for v, t in good if t.startswith("Clean accuracy")]
    assert cost == [True]  # 2 points: "small"
    assert [v for v, t in good if t.startswith("More robust to blur corruptions")] == [True]  # mCE 0.7
    assert [v for v, t in bad if t.startswith("More robust to blur corruptions")] == [False]  # mCE 1.2
    assert [v for v, t in good if t.startswith("More robust to other")] == [True]  # 0.9 < 0.97
    unclear = _results(True)
    unclear["regimes"]["strong"]["curves"]["gaussian"]["auc_ci"] = [0.1, 0.99]  # interval spans standard's AUC
    assert [v for v, t in claims_text(unclear) if t.startswith("More robust to Gaussian blur")] == [None]
    no_std = claims_text({"regimes": {"strong": _results()["regimes"]["strong"]}})
    assert no_std[0][0] is None


def test_jsonable_is_strict_json():
    out = jsonable({"a": float("inf"), "b": float("nan"), "c": torch.tensor([1.5, 2.0]), "d": (1, Path("x"))})
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == {"a": "inf", "b": None, "c": [1.5, 2.0], "d": [1, "x"]}


def _figures(results: dict) -> dict:
    regs = results["regimes"]
    img = torch.linspace(0, 1, 28 * 28).view(1, 28, 28)
    return {
        "accuracy_gaussian": plots.accuracy_figure(regs, "gaussian", xlabel="sigma (px at 224)", scale_to_224=1.0),
        "accuracy_motion": plots.accuracy_figure(regs, "motion", xlabel="length"),
        "accuracy_defocus": plots.accuracy_figure(regs, "defocus", xlabel="radius", chance=0.1),
        "survival": plots.survival_figure(regs), "quality_at_flip": plots.quality_figure(regs),
        "corruptions": plots.corruption_figure(regs),
        "examples": plots.examples_figure([("strong", [("clean", img), ("sigma 8", img * 0.5)]),
                                           ("noise", [(f"severity {s}", img) for s in range(1, 6)])]),
    }


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    results = _results()
    return render_report(results, _figures(results), out)


def test_report_is_self_contained(synthetic_report: Path):
    html = synthetic_report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert html.count("data:image/png;base64,") == 7
    data = json.loads((synthetic_report.parent / "results.json").read_text())
    assert data["regimes"]["strong"]["critical"]["median"] == "inf"
    assert "∞" in html  # the infinite median is shown, not "inf" or an error
    assert synthetic_report.stat().st_mode & 0o044  # readable by others (atomic write keeps 0644)


def render_check(report: Path, width: int, height: int, tmp: Path) -> dict:
    """Load ``report`` in headless Chromium at ``width x height``; return its data-report-check dict."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", "--virtual-time-budget=3000", f"--window-size={width},{height}",
           "--dump-dom", report.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    m = re.search(r'data-report-check="([^"]*)"', proc.stdout)
    assert m, f"no data-report-check in Chromium's DOM (rc {proc.returncode}): {proc.stderr[-500:]}"
    return json.loads(m.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("size", [(390, 844), (1280, 800)], ids=["phone", "laptop"])
def test_report_renders_in_chromium(synthetic_report: Path, tmp_path: Path, size):
    check = render_check(synthetic_report, *size, tmp_path)
    assert check["images"] == 7
    assert check["broken"] == 0
    assert check["overflow"] is False


def test_report_check_detects_overflow_and_broken_images(tmp_path: Path):
    """The load-time check is not vacuous: a wide element and a broken image are reported."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from blurkit.experiment.report import CHECK_JS

    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta name='viewport' content='width=device-width'></head><body>"
                    "<div style='width:2000px;height:10px'></div><img src='data:image/png;base64,AAAA'>"
                    f"<script>{CHECK_JS}</script></body></html>")
    check = render_check(page, 390, 844, tmp_path / "profile")
    assert check == {"images": 1, "broken": 1, "overflow": True}


def test_figures_are_embedded_pngs(synthetic_report: Path):
    import base64

    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', synthetic_report.read_text())
    assert len(uris) == 7
    for u in uris:
        assert base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n"


def test_human_reference_is_geirhos_2018():
    """Geirhos et al. 2018, low-pass, 16-class human top-1 at sigma 0 / 3 / 5 / 10 px (224 px images)."""
    assert plots.HUMAN_LOWPASS == {"sigma": [0.0, 3.0, 5.0, 10.0], "accuracy": [0.859, 0.718, 0.583, 0.312]}
