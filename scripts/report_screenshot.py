"""Screenshot of an experiment report (headless Chromium) for the README: ``docs/img/report_screenshot.png``.

Run after ``blurkit experiment`` (the default run writes ``runs/default/report.html``)::

    python scripts/report_screenshot.py [--report runs/default/report.html] [--out docs/img/report_screenshot.png]

The page is rendered at ``--size`` (default 1100x1400, the top of the report: claims, summary table,
first figures) and the PNG is reduced to a 256-colour palette if it exceeds ``--max-kb`` (300).
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=3000"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="runs/default/report.html")
    ap.add_argument("--out", default="docs/img/report_screenshot.png")
    ap.add_argument("--size", default="1100x1400", help="window WIDTHxHEIGHT in CSS px")
    ap.add_argument("--max-kb", type=int, default=300)
    args = ap.parse_args()
    report = Path(args.report)
    if not report.is_file():
        sys.exit(f"{report} not found: run `blurkit experiment` first")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("chromium not found (Debian package 'chromium'; scripts/setup.sh installs it)")
    w, h = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={w},{h}",
               f"--screenshot={shot}", report.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if not shot.is_file():
            sys.exit(f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-400:]}")
        img = Image.open(shot).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > args.max_kb * 1024:
        buf = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG", optimize=True)
    tmp_out = out.with_suffix(".tmp.png")
    tmp_out.write_bytes(buf.getvalue())
    tmp_out.replace(out)
    print(f"wrote {out} ({img.width}x{img.height}, {out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
