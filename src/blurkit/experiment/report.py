"""Self-contained HTML report of a blur experiment (figures embedded, no network, phone-friendly).

The report is built from ``results.json`` (see :mod:`blurkit.experiment.runner` for the schema)
and the figures made by :mod:`blurkit.experiment.plots`; every figure is embedded as a base64
PNG ``data:`` URI so the single file opens from disk anywhere. On load, a tiny script records in
``body[data-report-check]`` how many images loaded and whether anything overflows the viewport,
which the test suite reads back from headless Chromium.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes

__all__ = ["render_report", "write_atomic", "data_uri", "claims_text"]

CSS = """
:root { --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --accent:#0969da; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
       background:var(--bg); }
main { max-width: 980px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6rem; margin: .4em 0 .2em; }
h2 { font-size: 1.25rem; margin: 1.6em 0 .4em; padding-bottom:.2em; border-bottom:1px solid var(--line); }
p, li { max-width: 72ch; }
.muted { color: var(--muted); font-size: .9rem; }
figure { margin: 12px 0 20px; }
figure img { display:block; width:100%; height:auto; border:1px solid var(--line); border-radius:6px;
             background:#fff; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: 4px; }
.table-wrap { width:100%; overflow-x:auto; -webkit-overflow-scrolling:touch; }
table { border-collapse: collapse; font-size: .92rem; min-width: 100%; }
th, td { border:1px solid var(--line); padding: 4px 8px; text-align: right; }
thead th { white-space: normal; vertical-align: bottom; } td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: var(--soft); }
.claims li { margin: .3em 0; }
.ok { color: #1a7f37; font-weight: 600; } .no { color: #cf222e; font-weight: 600; }
.unclear { color: #9a6700; font-weight: 600; }
.note { background: var(--soft); border-left: 3px solid var(--line); padding: 8px 12px; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
code { background: var(--soft); padding: 1px 4px; border-radius: 4px; font-size: .9em; word-break: break-word; }
"""

CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var overflow = document.documentElement.scrollWidth > window.innerWidth + 1;
  document.body.setAttribute('data-report-check',
    JSON.stringify({images: imgs.length, broken: broken, overflow: overflow}));
});
"""


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def data_uri(png: bytes | str | os.PathLike) -> str:
    """A ``data:image/png;base64,...`` URI for PNG bytes or a PNG file."""
    if not isinstance(png, bytes):
        png = Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def jsonable(value: Any) -> Any:
    """``value`` with tensors as lists, NaN as ``None`` and infinities as ``"inf"``/``"-inf"`` (strict JSON)."""
    if hasattr(value, "detach") and hasattr(value, "tolist"):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if v in ("inf", "-inf"):
        v = float(v)
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return html.escape(str(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c, digits)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(figures: Mapping[str, Any], key: str, caption: str) -> str:
    if key not in figures:
        return ""
    return (f'<figure><img alt="{html.escape(caption)}" src="{data_uri(figures[key])}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


MCE_MARGIN = 0.03
"""Relative mCE within ``1 +- MCE_MARGIN`` of the standard model's counts as "no clear difference"."""
CLEAN_COST_SMALL = 0.03
"""A clean-accuracy cost of at most this (3 points) counts as the paper's "close to standard"."""


def _float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def claims_text(results: Mapping[str, Any]) -> list[tuple[bool | None, str]]:
    """Statements, from the numbers, on whether Jang & Tong's claims replicate in this run.

    For every regime other than ``standard``: (1) blur robustness: area under the accuracy-vs-Gaussian-
    sigma curve against the standard model's, decided by the bootstrap interval (it replicates if the
    regime's whole 95% interval lies above the standard AUC, fails if it lies below, else unclear);
    (2) clean accuracy: a cost of at most 3 points counts as "close to standard"; (3, 4) blur and
    noise corruptions: mCE relative to standard below 0.97 replicates, above 1.03 fails, else unclear.

    Returns:
        A list of ``(verdict, sentence)``; ``verdict`` is True (replicates), False (does not) or
        None (unclear from these numbers, or not testable with these regimes).
    """
    regs = results.get("regimes", {})
    out: list[tuple[bool | None, str]] = []
    if "standard" not in regs:
        return [(None, "No standard (clear-trained) model in this run: the paper's comparisons need one.")]
    std = regs["standard"]
    for name, reg in regs.items():
        if name == "standard":
            continue
        curve = reg.get("curves", {}).get("gaussian")
        scurve = std.get("curves", {}).get("gaussian")
        if curve and scurve and curve.get("top1") and curve.get("levels") == scurve.get("levels"):
            top = curve["levels"][-1]
            a, b = curve["top1"][-1], scurve["top1"][-1]
            auc_a, auc_b = _float(curve.get("auc")), _float(scurve.get("auc"))
            ci = curve.get("auc_ci") or [auc_a, auc_a]
            verdict: bool | None = None
            if auc_a is not None and auc_b is not None:
                if ci[0] is not None and ci[0] > auc_b:
                    verdict = True
                elif ci[1] is not None and ci[1] < auc_b:
                    verdict = False
            ci_text = f" (95% CI {_fmt(ci[0])}–{_fmt(ci[1])})" if curve.get("auc_ci") else ""
            out.append((verdict, f"More robust to Gaussian blur ({name} vs standard): mean accuracy over sigma "
                                 f"0–{_fmt(top)} px (AUC) {_fmt(auc_a)}{ci_text} vs {_fmt(auc_b)}; at the largest "
                                 f"sigma {_pct(a)} vs {_pct(b)}."))
        ca, cb = _float(reg.get("clean_accuracy")), _float(std.get("clean_accuracy"))
        if ca is not None and cb is not None:
            cost = cb - ca
            out.append((cost <= CLEAN_COST_SMALL,
                        f"Clean accuracy close to standard ({name}): {_pct(ca)} vs {_pct(cb)}, a cost of "
                        f"{100 * cost:+.1f} points."))
        ce = reg.get("corruption_summary", {})
        for fam, what in (("blur", "blur corruptions (ImageNet-C blur family)"),
                          ("noise", "other corruptions (Gaussian, shot and impulse noise)")):
            rel = _float(ce.get(f"mce_{fam}"))
            if rel is not None:
                v = True if rel < 1 - MCE_MARGIN else False if rel > 1 + MCE_MARGIN else None
                out.append((v, f"More robust to {what} ({name}): mCE relative to standard {rel:.3f}."))
    return out


def _verdict_mark(verdict: bool | None) -> str:
    if verdict is None:
        return '<span class="unclear">unclear</span> '
    return '<span class="ok">yes</span> ' if verdict else '<span class="no">no</span> '


def render_report(results: Mapping[str, Any], figures: Mapping[str, bytes | str | os.PathLike],
                  out_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``out_dir/report.html`` (and ``out_dir/results.json``) atomically.

    Args:
        results: the experiment results (see :mod:`blurkit.experiment.runner` for the keys used).
        figures: figure key -> PNG bytes or PNG file path. Known keys: ``examples``,
            ``accuracy_gaussian``, ``accuracy_motion``, ``accuracy_defocus``, ``survival``,
            ``quality_at_flip``, ``corruptions``, ``worst_case``.
        out_dir: the run folder.

    Returns:
        Path of the written ``report.html``.
    """
    out_dir = Path(out_dir)
    regs: Mapping[str, Any] = results.get("regimes", {})
    name = title or f"blurkit experiment — {results.get('name', out_dir.name)}"
    ds = results.get("dataset", {})
    cfg = results.get("config", {})
    parts: list[str] = [f"<h1>{html.escape(name)}</h1>"]
    parts.append(
        f'<p class="muted">Dataset: {html.escape(str(ds.get("name", "?")))} '
        f'({_fmt(ds.get("train_size"))} train / {_fmt(ds.get("test_size"))} test images, '
        f'{_fmt(ds.get("image_size"))} px); model: {html.escape(str(cfg.get("model", "?")))}; '
        f'epochs: {_fmt(cfg.get("epochs"))}; device: {html.escape(str(results.get("device", "?")))}; '
        f'created {html.escape(str(results.get("created", "")))}.</p>')

    parts.append("<h2>Do the paper's claims replicate here?</h2><ul class='claims'>")
    for verdict, text in claims_text(results):
        parts.append(f"<li>{_verdict_mark(verdict)}{html.escape(text)}</li>")
    parts.append("</ul>")
    ref = ds.get("reference_size", 224)
    scale = _float(ds.get("scale"))
    unit_note = (f"Blur levels are pixels at {ref} × {ref} (the unit of Jang &amp; Tong's regimes and of the "
                 f"human data), applied to the {_fmt(ds.get('image_size'))} px images scaled by "
                 f"{_fmt(scale)}: sigma 8 here blurs the same fraction of the image as sigma 8 on a "
                 f"{ref} px ImageNet image.") if scale else ""
    parts.append(f'<p class="note">{unit_note} Verdicts: <span class="ok">yes</span> replicates, '
                 '<span class="no">no</span> contradicts, <span class="unclear">unclear</span> within the noise '
                 "of this run (the regime's 95% bootstrap interval of the AUC contains the standard AUC, or the "
                 "mCE is within 1 ± 0.03); a clean-accuracy cost of at most 3 points counts as small. Jang &amp; "
                 "Tong trained on ImageNet for 70 epochs; this is a small-scale check of the same regimes.</p>")

    rows = []
    for rname, reg in regs.items():
        curve = reg.get("curves", {}).get("gaussian", {})
        crit = reg.get("critical", {})
        summ = reg.get("corruption_summary", {})
        rows.append([rname, reg.get("clean_accuracy"), curve.get("auc"), crit.get("median"), summ.get("mce_blur"),
                     summ.get("mce_noise"), _float(reg.get("train_seconds"))])
    parts.append("<h2>Summary</h2>")
    parts.append(_table(["regime", "clean accuracy", "AUC (Gaussian)", f"median critical sigma (px at {ref})",
                         "blur mCE (rel. standard)", "noise mCE (rel. standard)", "training time (s)"], rows))
    timings = results.get("timings")
    if timings:
        parts.append('<p class="muted">Run time: ' + html.escape(", ".join(
            f"{k.replace('_', ' ')} {float(v):.1f} s" for k, v in timings.items())) + ".</p>")

    parts.append("<h2>Accuracy vs blur</h2>")
    parts.append('<div class="grid">')
    parts.append(_figure(figures, "accuracy_gaussian", "Top-1 accuracy vs Gaussian sigma (95% bootstrap bands). "
                                                       "Dashed: human accuracy on low-pass filtered images "
                                                       "(Geirhos et al. 2018; 16-way ImageNet categories, chance "
                                                       "6.25%), on the same relative blur scale; the tasks differ, "
                                                       "so compare the shape of the fall, not the level."))
    parts.append(_figure(figures, "accuracy_motion", "Top-1 accuracy vs motion-blur length."))
    parts.append(_figure(figures, "accuracy_defocus", "Top-1 accuracy vs defocus radius."))
    parts.append("</div>")
    parts.append("<h2>Example images</h2>")
    parts.append(_figure(figures, "examples", "One test image under each regime's training sigmas "
                                              "(top) and each blur corruption severity (below)."))
    parts.append("<h2>The smallest blur that flips a decision</h2>")
    parts.append('<div class="grid">')
    parts.append(_figure(figures, "survival", "Share of test images still classified correctly vs sigma "
                                              "(critical-sigma survival curve)."))
    parts.append(_figure(figures, "quality_at_flip", "Image quality given up at the flip (PSNR / SSIM between "
                                                     "the clean and the flipping image)."))
    parts.append("</div>")

    ctab = results.get("corruption_table")
    parts.append("<h2>Blur corruptions (ImageNet-C style)</h2>")
    if ctab:
        parts.append(_table(ctab["headers"], ctab["rows"]))
        parts.append('<p class="muted">Corruption error CE = sum of errors over severities 1–5 divided by the '
                     "standard model's; mCE averages CE over corruptions (Hendrycks & Dietterich 2019).</p>")
    parts.append(_figure(figures, "corruptions", "Error per corruption and severity."))
    parts.append("<h2>Worst-case blur</h2>")
    if "worst_case" not in figures:
        parts.append('<p class="note">No worst-case examples: no correctly classified test image flipped within '
                     "the critical-sigma search range, so there was no starting blur to optimise.</p>")
    parts.append(_figure(figures, "worst_case", "Per regime, triplets: a clean test image (true class), the "
                                                "isotropic Gaussian blur at its critical sigma, and the anisotropic "
                                                "Gaussian blur optimised by gradient through the engine to flip "
                                                "the decision at the highest SSIM (predicted class, PSNR)."))
    wc = []
    for r, reg in regs.items():
        w = reg.get("worst_case") or {}
        if w.get("n"):
            wc.append([r, w.get("n"), w.get("flip_rate"), w.get("mean_psnr"), w.get("isotropic_psnr"),
                       w.get("mean_ssim"), w.get("isotropic_ssim")])
    if wc:
        parts.append(_table(["regime", "images", "flip rate", "PSNR at flip, optimised (dB)",
                             "PSNR at flip, isotropic (dB)", "SSIM at flip, optimised", "SSIM at flip, isotropic"],
                            wc))
        parts.append('<p class="muted">Same images per regime: correctly classified test images that flip within '
                     "the critical-sigma range; the optimisation starts at the critical sigma, so a higher PSNR / "
                     "SSIM than the isotropic column is a cheaper flip.</p>")
    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre class='table-wrap'><code>{html.escape(json.dumps(cfg, indent=2, default=str))}</code></pre>")

    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           "<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>{html.escape(name)}</title><style>{CSS}</style></head><body><main>"
           + "\n".join(p for p in parts if p) + f"</main><script>{CHECK_JS}</script></body></html>")
    write_atomic(out_dir / "results.json", json.dumps(jsonable(results), indent=1, allow_nan=False, default=str))
    return write_atomic(out_dir / "report.html", doc)
