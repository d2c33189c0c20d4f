"""MNIST loading: small IDX files made here (never the network), and one test on the real files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from rosetta.data import (
    FILES,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    MNISTError,
    batch_order,
    download,
    load_mnist,
    summary,
)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(folder: Path, split: str, n: int = 12, gz: bool = True, seed: int = 0,
                images: bytes | None = None, labels: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    t = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in zip(FILES[split], (images or idx_bytes(x, IMAGE_MAGIC),
                                            labels or idx_bytes(t, LABEL_MAGIC)), strict=True):
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return x, t


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate from $MNIST_DIR and the real user cache."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("layout,shape", [("NCHW", (12, 1, 28, 28)), ("NHWC", (12, 28, 28, 1)),
                                          ("flat", (12, 784))])
def test_layouts_and_formats(tmp_path: Path, gz: bool, layout: str, shape: tuple[int, ...]) -> None:
    x, t = write_split(tmp_path, "test", gz=gz)
    images, labels = load_mnist("test", tmp_path, layout=layout, verify=False)
    assert images.shape == shape and images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(images.reshape(12, 28, 28), x.astype(np.float32) / 255)
    np.testing.assert_array_equal(labels, t)


def test_dtype_and_normalize(tmp_path: Path) -> None:
    x, _ = write_split(tmp_path, "train")
    images, _ = load_mnist("train", tmp_path, dtype=np.float64, normalize=False, verify=False, limit=5)
    assert images.dtype == np.float64 and images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(images[:, 0], x[:5])


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_split(tmp_path / "explicit", "test", seed=1)
    write_split(tmp_path / "env", "test", seed=2)
    write_split(tmp_path / "cache" / "mnist-rosetta", "test", seed=3)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "env"))
    first = [load_mnist("test", d, verify=False)[1] for d in (tmp_path / "explicit", None)]
    monkeypatch.delenv("MNIST_DIR")
    cached = load_mnist("test", verify=False)[1]
    expected = [write_split(tmp_path / f"x{s}", "test", seed=s)[1] for s in (1, 2, 3)]
    for got, want in zip([*first, cached], expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_missing_data_says_where(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MNISTError) as info:
        load_mnist("train", tmp_path / "empty")
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "MNIST_DIR" in message
    assert "train-images-idx3-ubyte.gz" in message and "--data-dir" in message


def test_checksum_mismatch_names_file(tmp_path: Path) -> None:
    write_split(tmp_path, "test")
    with pytest.raises(MNISTError, match=r"t10k-images-idx3-ubyte.gz: SHA-256 .* expected"):
        load_mnist("test", tmp_path)


@pytest.mark.parametrize("defect,pattern", [
    ("truncated", r"t10k-images-idx3-ubyte.gz: truncated or oversized file"),
    ("magic", r"t10k-images-idx3-ubyte.gz: wrong magic number 2049 \(expected 2051"),
    ("dims", r"t10k-images-idx3-ubyte.gz: wrong image dimensions \(28, 27\)"),
    ("count", r"12 images but .*t10k-labels-idx1-ubyte.gz has 11 labels"),
    ("header", r"t10k-labels-idx1-ubyte.gz: truncated file"),
    ("gzip", r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"),
    ("label", r"t10k-labels-idx1-ubyte.gz: label 12 is not a digit"),
])
def test_corrupt_files_are_named(tmp_path: Path, defect: str, pattern: str) -> None:
    x = np.zeros((12, 28, 28), np.uint8)
    good_images = idx_bytes(x, IMAGE_MAGIC)
    t = np.zeros(12, np.uint8)
    images, labels = good_images, idx_bytes(t, LABEL_MAGIC)
    if defect == "truncated":
        images = good_images[:-100]
    elif defect == "magic":
        images = LABEL_MAGIC.to_bytes(4, "big") + good_images[4:]
    elif defect == "dims":
        images = idx_bytes(np.zeros((12, 28, 27), np.uint8), IMAGE_MAGIC)
    elif defect == "count":
        labels = idx_bytes(t[:11], LABEL_MAGIC)
    elif defect == "header":
        labels = b"\x00\x00"
    elif defect == "label":
        labels = idx_bytes(np.full(12, 12, np.uint8), LABEL_MAGIC)
    write_split(tmp_path, "test", images=images, labels=labels)
    if defect == "gzip":
        path = tmp_path / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MNISTError, match=pattern):
        load_mnist("test", tmp_path, verify=False)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_mnist("validation")
    with pytest.raises(ValueError, match="unknown layout 'CHWN'"):
        load_mnist("test", layout="CHWN")


def test_batch_order_is_shared_and_seeded() -> None:
    a = list(batch_order(10, 4, seed=1, epoch=0))
    assert [len(b) for b in a] == [4, 4, 2]
    # The documented rule: default_rng(seed + epoch).permutation(n) cut into consecutive batches.
    exact = list(batch_order(23, 5, seed=4, epoch=2))
    assert np.array_equal(np.concatenate(exact), np.random.default_rng(6).permutation(23))
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert all(np.array_equal(x, y) for x, y in zip(a, batch_order(10, 4, seed=1, epoch=0), strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(list(batch_order(10, 4, 1, 1))))


def test_download_from_mirror_is_verified_and_atomic(tmp_path: Path, mnist_dir: Path) -> None:
    """A file:// mirror stands in for the web: the first (corrupt) mirror is rejected by its
    checksum, the second is used, and no partial file is left behind."""
    bad = tmp_path / "bad"
    write_split(bad, "train")
    write_split(bad, "test")
    dest = tmp_path / "dest"
    download(dest, mirrors=(bad.as_uri() + "/", Path(mnist_dir).as_uri() + "/"))
    assert sorted(p.name for p in dest.iterdir()) == sorted(s + ".gz" for v in FILES.values() for s in v)
    assert summary("test", dest)["count"] == 10000


def test_download_failure_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    write_split(bad, "train")
    dest = tmp_path / "dest"
    with pytest.raises(MNISTError, match="could not download train-images-idx3-ubyte.gz from any mirror"):
        download(dest, mirrors=(bad.as_uri() + "/",))
    assert not dest.exists() or not any(dest.iterdir())


def test_real_mnist(mnist_dir: Path) -> None:
    for split, count in (("train", 60000), ("test", 10000)):
        s = summary(split, mnist_dir)
        assert s["count"] == count and sum(s["histogram"]) == count
    assert summary("test", mnist_dir)["histogram"][:3] == [980, 1135, 1032]
    x, t = load_mnist("test", mnist_dir, layout="flat")
    assert x.shape == (10000, 784) and 0 <= x.min() and x.max() == 1 and t[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(x.mean() - 0.1325) < 1e-3


def test_mnist_dir_env(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    target.mkdir()
    for stem in FILES["test"]:
        shutil.copy(mnist_dir / (stem + ".gz"), target)
    monkeypatch.setenv("MNIST_DIR", str(target))
    assert load_mnist("test")[0].shape == (10000, 1, 28, 28)


def test_explicit_data_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(MNISTError, match="--data-dir is not a folder"):
        load_mnist("test", tmp_path / "typo")


def test_limit_must_be_positive(tmp_path: Path) -> None:
    write_split(tmp_path, "test")
    with pytest.raises(ValueError, match="limit must be a positive number"):
        load_mnist("test", tmp_path, limit=0, verify=False)


def test_gzip_bomb_is_streamed_and_capped(tmp_path: Path) -> None:
    """A 1 MB gzip that expands to 1 GiB: decompression stops at the cap, memory stays near it."""
    import tracemalloc

    from rosetta.data import MAX_BYTES, read_idx_bytes

    member = gzip.compress(b"\x00" * (16 << 20), compresslevel=9)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(member * 64)  # 64 x 16 MiB = 1 GiB decompressed
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(MNISTError, match=r"more than 47040016 bytes decompressed"):
            read_idx_bytes(path, MAX_BYTES[IMAGE_MAGIC])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_BYTES[IMAGE_MAGIC], f"peak {peak / 1e6:.0f} MB"


def test_files_never_mixed_from_two_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_split(tmp_path / "explicit", "train")
    write_split(tmp_path / "env", "test")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "env"))
    with pytest.raises(MNISTError, match="test split not found") as info:
        load_mnist("test", tmp_path / "explicit", verify=False)
    assert str(tmp_path / "env") not in str(info.value)
    (tmp_path / "explicit" / "t10k-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "env" / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(MNISTError, match="has t10k-images-idx3-ubyte.gz but not t10k-labels-idx1-ubyte"):
        load_mnist("test", tmp_path / "explicit", verify=False)


def test_mnist_dir_error_names_mnist_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "typo"))
    with pytest.raises(MNISTError, match=r"typo: \$MNIST_DIR is not a folder"):
        load_mnist("test")


def test_missing_data_mentions_download(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MNISTError, match="rosetta data --download") as info:
        load_mnist("test", tmp_path / "empty")
    assert "\n" not in str(info.value)  # one message line


@pytest.mark.parametrize("dtype", ["int32", "uint8", np.int64, "bogus"])
def test_dtype_must_be_floating(tmp_path: Path, dtype: object) -> None:
    write_split(tmp_path, "test")
    with pytest.raises(ValueError, match="dtype must be a floating-point type"):
        load_mnist("test", tmp_path, dtype=dtype, verify=False)
