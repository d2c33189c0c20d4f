"""MNIST: find, download (verified, atomic), parse and validate the standard IDX files.

Search order for the four files: ``data_dir``, ``$MNIST_DIR``, the user cache
``~/.cache/mnist-rosetta``. Files may be gzipped (``.gz``) or raw IDX. Every problem a user can
cause (truncated file, wrong magic number, wrong dimensions, image/label count mismatch, checksum
mismatch, no data at all) raises :class:`MNISTError` naming the file and what is wrong. The files
of one run all come from one folder (never train from one and test from another), and reading is
bounded: a gzip stream is decompressed in chunks and stops at the size of the largest MNIST file.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rosetta.weights import atomic_write_bytes

SPLITS = ("train", "test")
LAYOUTS = ("NCHW", "NHWC", "flat")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60000, "test": 10000}
# SHA-256 of the *decompressed* IDX content: the same whatever the compression or mirror.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
USER_AGENT = "mnist-rosetta/0.1 (+https://pypi.org/project/mnist-rosetta/)"
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
# The largest split has 60000 examples: no IDX file this project reads is larger than that split's
# (decompressed), so reading stops there whatever a header or a gzip stream claims.
MAX_EXAMPLES = 60000
MAX_BYTES = {IMAGE_MAGIC: 16 + MAX_EXAMPLES * 28 * 28, LABEL_MAGIC: 8 + MAX_EXAMPLES}
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # the gzipped train images are 9.9 MB
_CHUNK = 1 << 20


class MNISTError(ValueError):
    """MNIST is missing or a file is corrupt; the message names the file and the problem."""


def default_cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/mnist-rosetta`` or ``~/.cache/mnist-rosetta``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnist-rosetta"


def candidate_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched, in order: ``data_dir`` alone when given, else ``$MNIST_DIR`` (when set)
    and the user cache. An explicit ``data_dir`` or ``$MNIST_DIR`` that is not a folder is an error,
    never silently skipped."""
    if data_dir:
        if not Path(data_dir).is_dir():
            raise MNISTError(f"{data_dir}: --data-dir is not a folder")
        return [Path(data_dir)]
    dirs = []
    env = os.environ.get("MNIST_DIR")
    if env:
        if not Path(env).is_dir():
            raise MNISTError(f"{env}: $MNIST_DIR is not a folder")
        dirs.append(Path(env))
    dirs.append(default_cache_dir())
    return dirs


def _find_file(stem: str, folder: Path) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def mnist_folder(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The one folder MNIST is read from: ``data_dir`` when given, else the first of ``$MNIST_DIR``
    and the user cache that holds any MNIST file (None when none does). Every split comes from this
    folder, so a folder with a file missing is an error, never filled in from another folder."""
    dirs = candidate_dirs(data_dir)
    if data_dir:
        return dirs[0]
    for folder in dirs:
        if any(_find_file(stem, folder) for stems in FILES.values() for stem in stems):
            return folder
    return None


def find_split(split: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path] | None:
    """The (images, labels) files of ``split`` in :func:`mnist_folder`, or None when it holds
    neither; MNISTError naming the missing file when it holds only one of them."""
    _check_split(split)
    folder = mnist_folder(data_dir)
    if folder is None:
        return None
    images, labels = (_find_file(stem, folder) for stem in FILES[split])
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, lack = (labels, FILES[split][0]) if images is None else (images, FILES[split][1])
        raise MNISTError(f"{folder}: has {have.name} but not {lack}.gz (the {split} split needs both; "
                         "files are never mixed from different folders)")
    return images, labels


def read_idx_bytes(path: Path, max_bytes: int = max(MAX_BYTES.values())) -> bytes:
    """The decompressed content of an IDX file (gzip detected by its magic bytes), at most
    ``max_bytes``: a gzip stream is decompressed chunk by chunk and stops past the cap, so a small
    file that expands to gigabytes never takes more than ``max_bytes`` of memory."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
            f.seek(0)
            if magic != b"\x1f\x8b":
                data = f.read(max_bytes + 1)
            else:
                data = _gunzip_capped(f, max_bytes, path)
    except OSError as exc:
        raise MNISTError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        how = " decompressed" if magic == b"\x1f\x8b" else ""
        raise MNISTError(f"{path}: more than {max_bytes} bytes{how}, the size of the largest MNIST file "
                         "of its kind (not an MNIST file; reading stopped there)")
    return data


def _gunzip_capped(f: BinaryIO, max_bytes: int, path: Path | str) -> bytes:
    """Decompress a (possibly multi-member) gzip stream in chunks, at most ``max_bytes + 1`` bytes."""
    out = bytearray()
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = b""
    try:
        while len(out) <= max_bytes:
            if not data:
                data = f.read(_CHUNK)
                if not data:
                    break
            out += decomp.decompress(data, max_bytes + 1 - len(out))
            data = decomp.unconsumed_tail
            if decomp.eof:  # a member ends: zero padding, the end, or another member follows
                data = decomp.unused_data.lstrip(b"\x00")
                while not data:
                    more = f.read(_CHUNK)
                    if not more:
                        return bytes(out)
                    data = more.lstrip(b"\x00")
                decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise MNISTError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    if len(out) <= max_bytes and not decomp.eof:
        raise MNISTError(f"{path}: corrupt or truncated gzip data (the stream ends early)")
    return bytes(out)


def parse_idx(data: bytes, path: Path | str, expect_magic: int) -> np.ndarray:
    """Parse IDX bytes (unsigned byte data) into a uint8 array, validating header and size."""
    if len(data) < 8:
        raise MNISTError(f"{path}: truncated file ({len(data)} bytes, no IDX header)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expect_magic:
        kind = "images" if expect_magic == IMAGE_MAGIC else "labels"
        raise MNISTError(f"{path}: wrong magic number {magic} (expected {expect_magic} for {kind})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTError(f"{path}: truncated header")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expect_magic == IMAGE_MAGIC and dims[1:] != (28, 28):
        raise MNISTError(f"{path}: wrong image dimensions {dims[1:]} (expected (28, 28))")
    expected = math.prod(dims)  # Python ints: a header of huge dimensions cannot overflow
    if len(data) - header != expected:
        raise MNISTError(f"{path}: truncated or oversized file: {len(data) - header} data bytes, "
                         f"header {dims} says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _verify_checksum(stem: str, data: bytes, path: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[stem]:
        raise MNISTError(f"{path}: SHA-256 of the decompressed content is {digest[:16]}..., expected "
                         f"{SHA256[stem][:16]}... (corrupt or not the standard MNIST file)")


def read_split(images_path: Path, labels_path: Path, verify: bool = True,
               ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and labels (N,) of one split, validated. Both files are parsed
    before their checksums are compared, so a damaged file is reported by what is wrong with it."""
    raw = {}
    arrays = []
    for path, magic in ((images_path, IMAGE_MAGIC), (labels_path, LABEL_MAGIC)):
        raw[path] = read_idx_bytes(path, MAX_BYTES[magic])
        arrays.append(parse_idx(raw[path], path, magic))
    images, labels = arrays
    if len(images) != len(labels):
        raise MNISTError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise MNISTError(f"{labels_path}: label {int(labels.max())} is not a digit 0-9")
    if verify:
        for path, data in raw.items():
            stem = path.name.removesuffix(".gz").replace(".idx", "-idx")
            if stem in SHA256:
                _verify_checksum(stem, data, path)
    return images, labels


def download(dest: Path | None = None, mirrors: tuple[str, ...] = MIRRORS, timeout: float = 30.0) -> Path:
    """Fetch the four gzipped files into ``dest`` (default: the user cache), verified and atomic."""
    dest = dest or default_cache_dir()
    for stems in FILES.values():
        for stem in stems:
            if _find_file(stem, dest) is None:
                atomic_write_bytes(dest / (stem + ".gz"), _fetch(stem, mirrors, timeout))
    return dest


def _fetch(stem: str, mirrors: tuple[str, ...], timeout: float) -> bytes:
    errors = []
    for mirror in mirrors:
        url = mirror + stem + ".gz"
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(MAX_DOWNLOAD_BYTES + 1)
            if len(raw) > MAX_DOWNLOAD_BYTES:
                raise MNISTError(f"more than {MAX_DOWNLOAD_BYTES} bytes (not an MNIST file)")
            magic = IMAGE_MAGIC if "images" in stem else LABEL_MAGIC
            _verify_checksum(stem, _gunzip_capped(io.BytesIO(raw), MAX_BYTES[magic], url), Path(url))
            return raw
        except (urllib.error.URLError, OSError, EOFError, MNISTError) as exc:
            errors.append(f"{url}: {exc}")
    raise MNISTError(f"could not download {stem}.gz from any mirror:\n  " + "\n  ".join(errors))


def _missing_message(split: str, data_dir: str | os.PathLike[str] | None) -> str:
    where = ", ".join(str(d) for d in candidate_dirs(data_dir))
    names = ", ".join(s + ".gz" for s in FILES[split])
    return (f"MNIST {split} split not found (looked in: {where}); put {names} (gzipped or raw IDX) "
            "in one of these folders, pass --data-dir DIR, set MNIST_DIR=DIR, or run "
            "'rosetta data --download'")


def load_mnist(
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    layout: str = "NCHW",
    dtype: type | str = np.float32,
    normalize: bool = True,
    download_if_missing: bool = False,
    limit: int | None = None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels of ``split`` ("train" or "test").

    layout: "NCHW" (N, 1, 28, 28), "NHWC" (N, 28, 28, 1) or "flat" (N, 784). normalize scales
    pixels to [0, 1]; otherwise values stay 0-255 in ``dtype``. ``limit`` keeps the first N.
    Nothing is downloaded unless ``download_if_missing``; offline the error says where to put the
    files. ``verify`` checks the SHA-256 of files with the standard names.
    """
    _check_split(split)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a floating-point type such as float32, got {dtype!r}") from None
    if np_dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type such as float32 or float64, got {np_dtype}")
    found = find_split(split, data_dir)
    if found is None and download_if_missing:
        try:
            download()
        except MNISTError as exc:
            raise MNISTError(f"{_missing_message(split, data_dir)}\nDownload failed: {exc}") from None
        found = find_split(split, data_dir)
    if found is None:
        raise MNISTError(_missing_message(split, data_dir))
    images, labels = read_split(*found, verify=verify)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np_dtype)
    if normalize:
        x /= np.asarray(255.0, dtype=x.dtype)
    x = {"NCHW": x[:, None, :, :], "NHWC": x[:, :, :, None], "flat": x.reshape(len(x), -1)}[layout]
    return np.ascontiguousarray(x), labels.astype(np.int64)


def verify_mnist(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The MNIST folder (:func:`mnist_folder`) after reading and verifying both splits in it;
    MNISTError (with where to put the files) when a split is missing or a file is bad."""
    folder = mnist_folder(data_dir)
    for split in SPLITS:
        found = find_split(split, folder if folder is not None else data_dir)
        if found is None:
            raise MNISTError(_missing_message(split, data_dir))
        read_split(*found)
    assert folder is not None  # find_split found files in it
    return folder


def layout_for(input_shape: tuple[int, ...]) -> str:
    """The MNIST layout a model's canonical input takes: "flat" for (784,), "NCHW" for images."""
    return "flat" if len(input_shape) == 1 else "NCHW"


def batch_order(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                ) -> Iterator[np.ndarray]:
    """Mini-batch indices of one epoch: the permutation of ``default_rng(seed + epoch)`` cut into
    consecutive batches (the last one may be smaller); without ``shuffle``, 0..n-1 in order every
    epoch (the course notes' ``xs[j * batch:(j + 1) * batch]``). Every framework uses this order."""
    perm = np.random.default_rng(seed + epoch).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield perm[start:start + batch_size]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def summary(split: str, data_dir: str | os.PathLike[str] | None = None, verify: bool = True,
            ) -> dict[str, object]:
    """Count, class histogram, pixel mean/std (on [0, 1]) and the files of one split, verified."""
    found = find_split(split, data_dir)
    if found is None:
        raise MNISTError(_missing_message(split, data_dir))
    images, labels = read_split(*found, verify=verify)
    pixels = images.astype(np.float64) / 255.0
    return {
        "split": split,
        "count": int(len(labels)),
        "histogram": np.bincount(labels, minlength=10).tolist(),
        "mean": float(pixels.mean()),
        "std": float(pixels.std()),
        "files": [str(p) for p in found],
    }
