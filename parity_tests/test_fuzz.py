"""Fuzz of every reader of untrusted bytes: any input either loads or raises the project's
documented error (MNISTError for IDX, WeightFileError or ConvertError for weight files and native
checkpoints); no other exception ever escapes.

Inputs are random bytes, structured headers with random fields, and random mutations (byte
flips, truncations, insertions) of a good file. Memory is bounded by the readers' caps
(rosetta.data.MAX_BYTES, rosetta.weights.MAX_HEADER_BYTES / MAX_PARAMETERS): no example can make
a reader allocate what the bytes declare.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosetta.convert import ConvertError, from_native, read_native_metadata
from rosetta.data import IMAGE_MAGIC, LABEL_MAGIC, MNISTError, parse_idx, read_idx_bytes
from rosetta.weights import MLPConfig, WeightFileError, init_params, load_weights, save_weights

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TINY = MLPConfig(input_size=4, hidden_sizes=(3,), output_size=2)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` with a few byte flips, a truncation or an insertion."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "set"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
    return bytes(data)


def idx(array: np.ndarray, magic: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


GOOD_IMAGES = idx(np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28), IMAGE_MAGIC)


@st.composite
def idx_inputs(draw: st.DrawFn) -> bytes:
    """Random bytes, a header with random dimensions and payload, or a mutated good file."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=3000))
    if choice == 1:
        magic = draw(st.sampled_from([IMAGE_MAGIC, LABEL_MAGIC, 0, 2**32 - 1]))
        dims = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 30), max_size=4))
        return (
            magic.to_bytes(4, "big")
            + b"".join(d.to_bytes(4, "big") for d in dims)
            + draw(st.binary(max_size=3000))
        )
    return draw(mutated(GOOD_IMAGES))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=idx_inputs(), magic=st.sampled_from([IMAGE_MAGIC, LABEL_MAGIC]))
def test_idx_parser(data: bytes, magic: int) -> None:
    try:
        array = parse_idx(data, "fuzz.idx", magic)
    except MNISTError as exc:
        assert "fuzz.idx" in str(exc)
        return
    assert array.dtype == np.uint8 and array.nbytes <= len(data)


@FUZZ
@given(data=st.one_of(idx_inputs().map(gzip.compress), mutated(gzip.compress(GOOD_IMAGES)), idx_inputs()))
def test_idx_file_gzip_or_raw(folder: Path, data: bytes) -> None:
    path = folder / "images.gz"
    path.write_bytes(data)
    try:
        content = read_idx_bytes(path, max_bytes=10_000)
        parse_idx(content, path, IMAGE_MAGIC)
    except MNISTError as exc:
        assert str(path) in str(exc)
        return
    assert len(content) <= 10_000


def _st(header: object, body: bytes = b"") -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return len(raw).to_bytes(8, "little") + raw + body


GOOD_META = {
    "format": "mnist-rosetta",
    "format_version": "1",
    "model": "mlp",
    "hparams": json.dumps({"input_size": 4, "hidden_sizes": [3], "output_size": 2}),
}


@pytest.fixture(scope="module")
def good_weights(folder: Path) -> bytes:
    save_weights(folder / "good.safetensors", init_params(TINY), TINY)
    return (folder / "good.safetensors").read_bytes()


@st.composite
def safetensors_inputs(draw: st.DrawFn, good: bytes) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(mutated(good))
    if choice == 1:  # a good file's tensors under random metadata
        meta = draw(
            st.dictionaries(st.sampled_from([*GOOD_META, "epoch", "x"]), json_values, max_size=5)
            | json_values
        )
        n = int.from_bytes(good[:8], "little")
        header = json.loads(good[8 : 8 + n])
        header["__metadata__"] = meta
        return _st(header, good[8 + n :])
    if choice == 2:  # good metadata, random hyper-parameters
        hparams = draw(
            st.dictionaries(
                st.sampled_from(
                    [
                        "input_size",
                        "hidden_sizes",
                        "output_size",
                        "activation",
                        "use_batchnorm",
                        "dropout_ratio",
                    ]
                ),
                json_values,
                max_size=4,
            )
        )
        n = int.from_bytes(good[:8], "little")
        header = json.loads(good[8 : 8 + n])
        header["__metadata__"] = {**GOOD_META, "hparams": json.dumps(hparams, allow_nan=True)}
        return _st(header, good[8 + n :])
    entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F64", "BF16", "I64", "X", 3]),
            "shape": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
            "data_offsets": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
        }
    )
    tensors = draw(
        st.dictionaries(st.sampled_from(["fc1.W", "fc1.b", "fc2.W", "fc2.b", "z"]), entry, max_size=4)
    )
    return _st({"__metadata__": GOOD_META, **tensors}, draw(st.binary(max_size=200)))


@FUZZ
@given(data=st.data())
def test_safetensors_reader(folder: Path, good_weights: bytes, data: st.DataObject) -> None:
    path = folder / "fuzz.safetensors"
    path.write_bytes(data.draw(safetensors_inputs(good_weights)))
    try:
        params, config = load_weights(path)
    except WeightFileError as exc:
        assert str(path) in str(exc)
        return
    assert all(np.all(np.isfinite(v)) for v in params.values())


@pytest.fixture(scope="module")
def good_npz(folder: Path) -> bytes:
    from rosetta.convert import to_native

    to_native(init_params(TINY), TINY, "npz", folder / "good.npz")
    return (folder / "good.npz").read_bytes()


def _with_comment(npz: bytes, comment: bytes) -> bytes:
    buffer = io.BytesIO(npz)
    with zipfile.ZipFile(buffer, "a") as z:
        z.comment = comment[:65535]
    return buffer.getvalue()


@FUZZ
@given(data=st.data())
def test_npz_reader_and_comment(folder: Path, good_npz: bytes, data: st.DataObject) -> None:
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        content = data.draw(mutated(good_npz))
    elif choice == 1:
        comment = data.draw(
            json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()) | st.binary(max_size=200)
        )
        content = _with_comment(good_npz, comment)
    else:
        meta = data.draw(
            st.dictionaries(
                st.sampled_from(["format", "native", "model", "hparams", "dtype"]), json_values, max_size=5
            )
        )
        meta.setdefault("format", "mnist-rosetta-native")
        content = _with_comment(good_npz, json.dumps(meta, allow_nan=True).encode())
    path = folder / "fuzz.npz"
    path.write_bytes(content)
    try:
        params, _ = from_native(path, "npz", model="mlp")
    except (WeightFileError, ConvertError) as exc:
        assert str(path) in str(exc)
        return
    assert all(np.all(np.isfinite(v)) for v in params.values())


attribute_values = st.one_of(
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.text(max_size=50).filter(lambda t: "\x00" not in t),  # HDF5 strings hold no NUL
    st.binary(max_size=50).filter(lambda b: b"\x00" not in b),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(np.array),
    st.dictionaries(
        st.sampled_from(["format", "native", "model", "hparams", "dtype"]), json_values, max_size=5
    ).map(lambda d: json.dumps({"format": "mnist-rosetta-native", **d}, allow_nan=True)),
)


@FUZZ
@given(value=attribute_values)
def test_hdf5_attribute_reader(folder: Path, value: object) -> None:
    import h5py

    path = folder / "fuzz.weights.h5"
    with h5py.File(path, "w") as f:
        f["layers/dense/vars/0"] = np.zeros((2, 2), np.float32)
        f.attrs["mnist_rosetta"] = value
    try:
        meta = read_native_metadata(path, "keras")
    except WeightFileError as exc:
        assert str(path) in str(exc)
        return
    assert meta is None or all(isinstance(v, str) for v in meta.values())
