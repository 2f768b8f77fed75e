"""Tests of ``blurkit measure`` on a temporary folder with good, nested and corrupt files."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from blurkit.cli import main


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    sharp = ((xx // 8 + yy // 8) % 2 * 200 + 20).astype(np.uint8)  # checkerboard, grey
    Image.fromarray(sharp).save(tmp_path / "sharp.png")
    rgb = np.stack([sharp, sharp[::-1], rng.integers(0, 255, sharp.shape, dtype=np.uint8)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.jpg", quality=95)
    (tmp_path / "sub").mkdir()
    Image.fromarray(sharp).convert("RGBA").save(tmp_path / "sub" / "nested.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (tmp_path / "notes.txt").write_text("not an image")  # ignored in folders (suffix)
    return tmp_path


def test_table_skips_corrupt_file(folder, capsys):
    rc = main(["measure", str(folder)])
    out, err = capsys.readouterr()
    assert rc == 1  # something was skipped
    assert "broken.png" in err and "skipped" in err
    assert "sharp.png" in out and "colour.jpg" in out and "nested.png" not in out
    assert "laplacian_variance" in out.splitlines()[0]


def test_json_recursive(folder, capsys):
    rc = main(["measure", str(folder), "--recursive", "--json", "--motion"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    names = sorted(r["path"].rsplit("/", 1)[-1] for r in doc["images"])
    assert names == ["colour.jpg", "nested.png", "sharp.png"]
    assert [s["path"].rsplit("/", 1)[-1] for s in doc["skipped"]] == ["broken.png"]
    row = next(r for r in doc["images"] if r["path"].endswith("sharp.png"))
    assert 0 <= row["blur_effect"] <= 1 and row["laplacian_variance"] > 0 and row["sigma"] >= 0
    assert {"motion_length", "motion_angle", "edge_width", "high_frequency_ratio"} <= set(row)


def test_csv_to_file_and_explicit_files(folder, capsys):
    out_file = folder / "out" / "m.csv"
    rc = main(["measure", str(folder / "sharp.png"), str(folder / "colour.jpg"), "--csv", "-o", str(out_file)])
    assert rc == 0 and capsys.readouterr().out == ""
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert len(rows) == 2 and float(rows[0]["blur_effect"]) >= 0


def test_blurrier_image_measures_blurrier(tmp_path, capsys):
    from scipy.ndimage import gaussian_filter
    from skimage import data

    cam = data.camera()[:200, :200]
    Image.fromarray(cam).save(tmp_path / "a_sharp.png")
    blurred = gaussian_filter(cam.astype(np.float64), 3.0, mode="mirror")
    Image.fromarray(blurred.round().astype(np.uint8)).save(tmp_path / "b_blur.png")
    assert main(["measure", str(tmp_path), "--json"]) == 0
    sharp, blur = json.loads(capsys.readouterr().out)["images"]
    assert blur["blur_effect"] > sharp["blur_effect"]
    assert blur["laplacian_variance"] < sharp["laplacian_variance"]
    assert 2.0 < blur["sigma"] < 4.0


def test_errors(folder, capsys):
    assert main(["measure", str(folder / "missing.png")]) == 2
    assert "could be read" in capsys.readouterr().err
    empty = folder / "empty"
    empty.mkdir()
    assert main(["measure", str(empty)]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["measure", str(folder / "broken.png")]) == 2


def test_read_image_applies_exif_orientation_and_16_bit_scale(tmp_path):
    """A photo is measured as displayed: EXIF Orientation 6 (rotate 90 degrees clockwise) is applied;
    16-bit images are divided by 257 whatever their maximum."""
    from blurkit.commands.measure import read_image

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rot.png", exif=exif)
    got = read_image(tmp_path / "rot.png")
    assert got.dtype.is_floating_point is False and got.shape == (3, 30, 20)
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), np.rot90(stored, k=-1))
    Image.fromarray(stored).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(read_image(tmp_path / "plain.png").permute(1, 2, 0).numpy(), stored)

    dark = np.full((8, 8), 200, dtype=np.uint16)  # max 200: still a 16-bit image, 200/257 in 0-255 units
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    got16 = read_image(tmp_path / "dark16.png")
    assert got16.dtype == torch.float32
    np.testing.assert_allclose(got16.numpy(), 200 / 257, rtol=1e-6)
