"""Tests for blurkit.data: IDX reader (vs a struct/numpy parse), Fashion-MNIST, image folders, resolve, loaders."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import blurkit as bk
from blurkit.data import ImageFolder, fashion_mnist, load_dataset, make_loader, read_idx, resize_images, resolve
from blurkit.errors import BlurkitError

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
         np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    """Write an IDX file by hand (header with struct, big-endian data)."""
    be = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    header = struct.pack(">BBBB", 0, 0, CODES[np.dtype(be.dtype.str)], arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + be.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def parse_idx_reference(raw: bytes) -> np.ndarray:
    """Independent parse: struct for the header, numpy for the body."""
    _, _, code, ndim = struct.unpack(">BBBB", raw[:4])
    shape = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=dt).reshape(shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_matches_reference_parse(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 7, 3)) * 50).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(path, arr, gz)
    got = read_idx(path)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    ref = parse_idx_reference(raw)
    assert got.shape == ref.shape == arr.shape
    np.testing.assert_array_equal(got, ref)
    assert got.dtype.isnative


def test_read_idx_errors(tmp_path):
    with pytest.raises(BlurkitError, match="not found"):
        read_idx(tmp_path / "missing")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04abcd")
    with pytest.raises(BlurkitError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((4, 3), np.uint8))
    (tmp_path / "trunc").write_bytes((tmp_path / "ok").read_bytes()[:-2])
    with pytest.raises(BlurkitError, match=r"trunc.*header says shape \(4, 3\)"):
        read_idx(tmp_path / "trunc")


def make_fmnist(root: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> None:
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte{'.gz' if gz else ''}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(root / f"{split}-labels-idx1-ubyte{'.gz' if gz else ''}",
                  (np.arange(n) % 10).astype(np.uint8), gz)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_folder(tmp_path, gz):
    make_fmnist(tmp_path, gz=gz)
    ds = fashion_mnist("train", tmp_path)
    ref = parse_idx_reference(gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()) if gz
                              else (tmp_path / "train-images-idx3-ubyte").read_bytes())
    assert ds.images.shape == (40, 1, 28, 28) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), ref)
    assert ds.labels.tolist() == [i % 10 for i in range(40)]
    test = fashion_mnist("test", tmp_path, image_size=14, channels=3, limit=5)
    assert len(test) == 5 and test.images.shape == (5, 1, 14, 14)
    x, y = test[0]
    assert x.shape == (3, 14, 14) and y == 0 and torch.equal(x[0], x[2])
    xb, yb = test.batch(torch.tensor([1, 3]))
    assert xb.shape == (2, 3, 14, 14) and yb.tolist() == [1, 3]


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(BlurkitError, match="dataset-fashion-mnist.*--data"):
        fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("valid", tmp_path)
    with pytest.raises(BlurkitError, match="not found"):
        load_dataset(str(tmp_path / "nope"), "train")


@pytest.mark.skipif(not Path(bk.data.FASHION_MNIST_ROOT, "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    ds = fashion_mnist("test", limit=100)
    raw = gzip.decompress(Path(bk.data.FASHION_MNIST_ROOT, "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert ds.labels.tolist() == list(raw[8:108])
    assert ds.images.shape == (100, 1, 28, 28) and ds.num_classes == 10


def test_resize_matches_pil_bilinear_downscale():
    # torch's antialiased bilinear is the PIL filter: compare with Pillow on float ("F") images
    rng = np.random.default_rng(2)
    img = rng.random((28, 28)).astype(np.float32)
    ref = np.asarray(Image.fromarray(img, mode="F").resize((14, 14), Image.BILINEAR))
    got = resize_images(torch.from_numpy(img)[None, None], 14)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    u8 = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(u8, 64), torch.full((2, 1, 64, 64), 77, dtype=torch.uint8))


def make_tree(root: Path, corrupt: bool = True) -> None:
    rng = np.random.default_rng(3)
    for name in ["cat", "dog"]:
        (root / name).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            Image.fromarray(arr).save(root / name / f"{i}.{ext}")
    if corrupt:
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (root / "dog" / "notes.txt").write_text("ignored")


def test_image_folder_reads_classes_and_resizes(tmp_path):
    make_tree(tmp_path, corrupt=False)
    ds = ImageFolder(tmp_path, image_size=8, channels=3)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8 and y == 0
    ref = np.asarray(Image.open(tmp_path / "cat" / "0.png").convert("L").resize((8, 8), Image.BILINEAR))
    np.testing.assert_array_equal(ImageFolder(tmp_path, image_size=8, channels=1)[0][0][0].numpy(), ref)


def test_image_folder_corrupt_file_error_names_it_or_is_skipped(tmp_path):
    make_tree(tmp_path)
    ds = ImageFolder(tmp_path, image_size=8)
    bad = [i for i, (p, _) in enumerate(ds.samples) if p.name == "broken.png"][0]
    with pytest.raises(BlurkitError, match=r"broken\.png.*--skip-bad"):
        ds[bad]
    with pytest.raises(BlurkitError, match=r"broken\.png"):
        ImageFolder(tmp_path, image_size=8, verify=True)
    ok = ImageFolder(tmp_path, image_size=8, skip_bad=True)
    assert len(ok) == 6 and [p.name for p in ok.skipped] == ["broken.png"]
    assert all(ok[i][0].shape == (3, 8, 8) for i in range(len(ok)))
    with pytest.raises(BlurkitError, match="no class sub-folders"):
        ImageFolder(tmp_path / "cat")


def test_load_dataset_folder_and_module_function(tmp_path):
    make_tree(tmp_path / "tree", corrupt=False)
    ds = load_dataset(str(tmp_path / "tree"), "train", image_size=8, channels=3, limit=4)
    assert len(ds) == 4
    mod = tmp_path / "userdata.py"
    mod.write_text("import torch\nfrom blurkit.data import TensorImageDataset\n"
                   "def make(split, image_size, channels):\n"
                   "    n = 12 if split == 'train' else 6\n"
                   "    return TensorImageDataset(torch.zeros(n, 1, image_size, image_size, dtype=torch.uint8),"
                   " torch.arange(n) % 3)\n")
    ds = load_dataset(f"{mod}:make", "test", image_size=9)
    assert len(ds) == 6 and ds.images.shape[-1] == 9
    sys.path.insert(0, str(tmp_path))
    try:
        assert resolve("userdata:make") is not None
    finally:
        sys.path.remove(str(tmp_path))


def test_resolve_errors():
    assert resolve("blurkit.data:fashion_mnist") is fashion_mnist
    for bad, msg in [("nocolon", "module:function"), ("not_a_module_xyz:f", "cannot import"),
                     ("blurkit.data:nope", "no attribute"), ("blurkit.data:FASHION_MNIST_ROOT", "not callable")]:
        with pytest.raises(BlurkitError, match=msg):
            resolve(bad)


def test_make_loader_is_reproducible():
    ds = bk.data.TensorImageDataset(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1), torch.arange(50) % 5)
    order = [torch.cat([y for _, y in make_loader(ds, 8, shuffle=True, seed=s)]).tolist() for s in (7, 7, 8)]
    assert order[0] == order[1] != order[2]
    assert sorted(order[0]) == sorted((torch.arange(50) % 5).tolist())


def test_limit_on_an_image_tree_is_a_fixed_random_subset_of_every_class(tmp_path):
    """An image tree lists its classes one after the other: --limit must not keep the first classes only."""
    rng = np.random.default_rng(5)
    for name in ("a", "b", "c", "d"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(tmp_path / "tree" / name / f"{i}.png")
    ds = load_dataset(str(tmp_path / "tree"), "train", limit=12)
    labels = sorted({int(ds[i][1]) for i in range(len(ds))})
    assert len(ds) == 12 and labels == [0, 1, 2, 3]
    again = load_dataset(str(tmp_path / "tree"), "train", limit=12)
    assert list(ds.indices) == list(again.indices) == sorted(ds.indices)  # the same subset every run


def test_idx_folder_with_labels_beyond_ten_gets_generic_class_names(tmp_path):
    rng = np.random.default_rng(2)
    for split, n in (("train", 30), ("t10k", 12)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", (np.arange(n) % 15).astype(np.uint8))
    ds = fashion_mnist("train", tmp_path)
    assert ds.classes == [str(i) for i in range(15)]
    (tmp_path / "ten").mkdir()
    make_fmnist(tmp_path / "ten")
    assert fashion_mnist("train", tmp_path / "ten").classes[0] == "T-shirt/top"


def test_image_folder_reads_photos_upright_by_exif(tmp_path):
    """A photo stored sideways with EXIF Orientation 6 is read as displayed (as every blurkit command does)."""
    stored = np.random.default_rng(4).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(stored).save(tmp_path / name / "p.png", exif=exif)
    x, _ = ImageFolder(tmp_path, channels=3)[0]
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), np.rot90(stored, k=-1))
