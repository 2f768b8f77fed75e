"""`blurkit blur` and `blurkit bench` command-line tests (OpenCV as the independent reference)."""

import numpy as np
import pytest
from PIL import Image

from blurkit.cli import main

cv2 = pytest.importorskip("cv2")


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(img).save(path)
    return path, img


def test_blur_file_matches_opencv(photo, tmp_path):
    path, img = photo
    out = tmp_path / "out.png"
    assert main(["blur", str(path), str(out), "--sigma", "2"]) == 0
    got = np.asarray(Image.open(out)).astype(np.float64)
    ref = cv2.GaussianBlur(img.astype(np.float64), (13, 13), 2.0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(got - ref).max() <= 0.5 + 1e-6  # rounded to the nearest level


def test_blur_folder_and_families(photo, tmp_path):
    path, _ = photo
    (tmp_path / "sub").mkdir()
    Image.open(path).save(tmp_path / "sub" / "b.png")
    out = tmp_path / "outdir"
    for extra in (["--family", "motion", "--length", "5.5", "--angle", "30"],
                  ["--family", "defocus", "--radius", "2"], ["--family", "box", "--size", "3"]):
        assert main(["blur", str(tmp_path / "sub"), str(out), *extra]) == 0
        assert (out / "b.png").exists()


def test_blur_errors_are_one_line(photo, tmp_path, capsys):
    path, _ = photo
    assert main(["blur", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--sigma", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["blur", str(path), str(tmp_path / "o.png"), "--sigma", "-1"]) == 2
    err = capsys.readouterr().err
    assert "sigma" in err and "Traceback" not in err
    assert main(["blur", str(path), str(tmp_path / "o.png"), "--family", "box", "--size", "4"]) == 2
    assert "odd" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["blur", str(bad), str(tmp_path / "o.png"), "--sigma", "1"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_blur_keeps_depth_alpha_and_orientation(tmp_path):
    """16-bit and float images keep their depth and units; RGBA is blurred with premultiplied alpha (no dark
    fringe at a transparent edge); EXIF orientation is applied; outputs get a plain file's permissions."""
    import os

    from scipy import ndimage

    rng = np.random.default_rng(1)
    g16 = (rng.random((30, 40)) * 65535).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert main(["blur", str(tmp_path / "g16.png"), str(tmp_path / "o16.png"), "--sigma", "1.5"]) == 0
    out = Image.open(tmp_path / "o16.png")
    assert out.mode == "I;16"
    ref = ndimage.gaussian_filter(g16.astype(np.float64), 1.5, mode="mirror", truncate=3.0)
    assert np.abs(np.asarray(out).astype(np.float64) - ref).max() <= 0.5 + 0.02 * 1.5  # rounded, float32 sums

    f32 = (rng.random((20, 20)) * 999).astype(np.float32)
    Image.fromarray(f32).save(tmp_path / "f.tif")
    assert main(["blur", str(tmp_path / "f.tif"), str(tmp_path / "of.tif"), "--sigma", "1"]) == 0
    got = np.asarray(Image.open(tmp_path / "of.tif"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ndimage.gaussian_filter(f32.astype(np.float64), 1, mode="mirror", truncate=3.0),
                               rtol=1e-5, atol=1e-3)

    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, 10:] = 255  # opaque white right half, transparent black left half
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert main(["blur", str(tmp_path / "a.png"), str(tmp_path / "oa.png"), "--sigma", "2"]) == 0
    oa = np.asarray(Image.open(tmp_path / "oa.png"))
    assert oa.shape == (20, 20, 4)
    visible = oa[..., 3] > 0
    assert (oa[..., :3][visible] == 255).all()  # no dark fringe where any alpha shows
    ref_alpha = ndimage.gaussian_filter(rgba[..., 3].astype(np.float64), 2, mode="mirror", truncate=3.0)
    assert np.abs(oa[..., 3] - ref_alpha).max() <= 0.5 + 1e-3

    stored = rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "r.png", exif=exif)
    assert main(["blur", str(tmp_path / "r.png"), str(tmp_path / "or.png"), "--family", "box", "--size", "1"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "or.png")), np.rot90(stored, k=-1))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "or.png").st_mode & 0o777 == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp"))


def test_blur_folder_run_skips_a_file_it_cannot_write(photo, tmp_path, capsys):
    path, _ = photo
    src = tmp_path / "src"
    src.mkdir()
    Image.open(path).save(src / "ok.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(src / "alpha.png")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "alpha.png").mkdir()  # the output path of one file is a folder: that file fails
    assert main(["blur", str(src), str(tmp_path / "dst"), "--sigma", "1"]) == 1
    assert (tmp_path / "dst" / "ok.png").is_file()
    assert "skipped" in capsys.readouterr().out
    assert main(["blur", str(path), str(tmp_path / "newdir/"), "--sigma", "1"]) == 2
    assert "needs an image file suffix" in capsys.readouterr().err


def test_bench_passes_flags_after_the_separator_to_one_script(monkeypatch, capsys):
    from blurkit.commands import bench

    calls = []
    monkeypatch.setattr(bench.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert main(["bench", "blur", "--", "--quick", "--batch", "2"]) == 0
    assert len(calls) == 1 and calls[0][1].endswith("blur_throughput.py")
    assert calls[0][2:] == ["--quick", "--batch", "2"]
    assert main(["bench", "blur", "augment", "--", "--quick"]) == 2
    assert "name one benchmark" in capsys.readouterr().err
    assert main(["bench", "nosuch"]) == 2
    assert main(["bench", "--list"]) == 0 and "corruptions" in capsys.readouterr().out
