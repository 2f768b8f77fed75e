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
