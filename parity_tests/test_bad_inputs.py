"""One corpus of bad inputs, run through every command that reads that kind of input.

Each input is made here by a small generator (truncations, byte flips, every wrong dtype, wrong
metadata types, deep JSON, decompression bombs, pickles, foreign checkpoints from each framework's
own save API). Every command that reads it must refuse it the same way: exit 1 or 2, exactly one
message line that names the file and says what is wrong, no traceback, nothing on stdout, and no
file written or changed. Commands run in-process; the corpus is built once per module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import require_framework

from rosetta.cli import main
from rosetta.data import FILES, IMAGE_MAGIC, LABEL_MAGIC
from rosetta.weights import MLPConfig, init_params, save_weights

# A pickle that would run a shell command if anything unpickled it (nothing does).
EXPLOIT_PICKLE = b"cos\nsystem\n(S'touch pwned'\ntR."
DEEP = 200_000  # nesting depth of the deep-JSON inputs


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(roots: list[Path], named: str) -> dict[str, tuple[object, ...]]:
    """Every path under ``roots`` with its size, mode and mtime; the named input also by content."""
    state: dict[str, tuple[object, ...]] = {}
    for p in sorted(p for root in roots for p in root.rglob("*")):
        st = p.lstat()
        state[str(p)] = (st.st_size, st.st_mode, st.st_mtime_ns)
    if Path(named).is_file():
        state["content"] = (hashlib.sha256(Path(named).read_bytes()).hexdigest(),)
    return state


def assert_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], root: Path | list[Path], names: str, expect: str
) -> None:
    """Run ``argv``; it must refuse with one line naming ``names`` and matching ``expect``, and
    leave every file under ``root`` (the inputs' and the outputs' folders) as it was."""
    root = root if isinstance(root, list) else [root]
    before = snapshot(root, names)
    code, out, err = run_cli(capsys, argv)
    command = argv[0]
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (1, 2), f"exit {code}: {err}"
    assert "Traceback" not in out + err
    assert out == "", f"claimed output: {out}"
    assert len(lines) == 1, f"expected one message line, got: {err}"
    assert lines[0].startswith(f"rosetta {command}: error: "), lines[0]
    assert names in lines[0], f"{names} not named in: {lines[0]}"
    assert re.search(expect, lines[0]), f"{expect!r} not in: {lines[0]}"
    assert snapshot(root, names) == before, "a file was written or changed"


# --- MNIST (IDX) ---------------------------------------------------------------------------------


def idx(array: np.ndarray, magic: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def good_idx(n: int = 12, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    out = {}
    for split in FILES:
        images, labels = FILES[split]
        out[images] = idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), IMAGE_MAGIC)
        out[labels] = idx(rng.integers(0, 10, n, dtype=np.uint8), LABEL_MAGIC)
    return out


def gzip_bomb(total: int = 100 << 20) -> bytes:
    """A gzip stream of ``total`` zero bytes in 10 MB members: about 100 kB on disk."""
    member = gzip.compress(b"\x00" * (10 << 20), compresslevel=9)
    return member * (total // (10 << 20))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# name -> (which files: "images" | "labels", transform of the gzipped or raw content, expected message)
MNIST_CASES: dict[str, tuple[str, Callable[[bytes], bytes] | None, str]] = {
    "gzip-truncated": ("images", lambda b: gzip.compress(b)[:-10], "corrupt or truncated gzip"),
    "gzip-byte-flip": (
        "images",
        lambda b: _flip(gzip.compress(b), len(gzip.compress(b)) // 2),
        "corrupt or truncated gzip",
    ),
    "gzip-crc-flip": (
        "images",
        lambda b: _flip(gzip.compress(b), len(gzip.compress(b)) - 6),
        "corrupt or truncated gzip",
    ),
    "gzip-bomb": ("images", lambda b: gzip_bomb(), r"more than \d+ bytes decompressed"),
    "gzip-then-garbage": ("images", lambda b: gzip.compress(b) + b"garbage!", "corrupt or truncated gzip"),
    "raw-random-bytes": (
        "images",
        lambda b: bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8)),
        "wrong magic number",
    ),
    "raw-header-only": ("images", lambda b: b[:6], "truncated file"),
    "raw-short-header": ("images", lambda b: b[:12], "truncated header"),
    "raw-data-truncated": ("images", lambda b: b[:-100], "truncated or oversized"),
    "raw-data-extra": ("images", lambda b: b + b"\x00" * 7, "truncated or oversized"),
    "wrong-magic": ("images", lambda b: LABEL_MAGIC.to_bytes(4, "big") + b[4:], "wrong magic number"),
    "wrong-dims": (
        "images",
        lambda b: idx(np.zeros((12, 28, 27), np.uint8), IMAGE_MAGIC),
        "wrong image dimensions",
    ),
    "huge-declared-count": (
        "images",
        lambda b: IMAGE_MAGIC.to_bytes(4, "big") + b"\xff\xff\xff\xff" + b[8:],
        "truncated or oversized",
    ),
    "labels-not-digits": ("labels", lambda b: idx(np.full(12, 12, np.uint8), LABEL_MAGIC), "not a digit"),
    "labels-count": ("labels", lambda b: idx(np.zeros(11, np.uint8), LABEL_MAGIC), "images but"),
    "labels-empty": ("labels", lambda b: b"", "truncated file"),
    "labels-pickle": ("labels", lambda b: EXPLOIT_PICKLE, "wrong magic number"),
    "not-standard-mnist": ("images", lambda b: gzip.compress(b), "SHA-256"),
    "images-missing": ("images", None, "but not"),
    "labels-missing": ("labels", None, "but not"),
}


@pytest.fixture(scope="module")
def mnist_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist-corpus")
    base = good_idx()
    for name, (kind, transform, _) in MNIST_CASES.items():
        folder = root / name
        folder.mkdir()
        for stem, content in base.items():
            bad = ("images" in stem) == (kind == "images")
            if bad and transform is None:
                continue
            data = transform(content) if bad else gzip.compress(content)
            (folder / (stem + ".gz")).write_bytes(data)
    (root / "empty").mkdir()
    (root / "a-file").write_bytes(b"not a folder")
    return root


MNIST_EXTRA = {"empty": "split not found .*rosetta data --download", "a-file": "--data-dir is not a folder"}


def _mnist_commands(folder: Path, out: Path, weights: Path) -> dict[str, list[str]]:
    d = ["--data-dir", str(folder)]
    return {
        "data": ["data", *d],
        "train": [
            "train",
            "--framework",
            "numpy",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--limit",
            "10",
            "--no-progress",
            "--out",
            str(out / "w.safetensors"),
            *d,
        ],
        "eval": ["eval", "--framework", "numpy", "--model", "mlp", "--weights", str(weights), *d],
        "compare": [
            "compare",
            "--model",
            "mlp",
            "--frameworks",
            "numpy",
            "--epochs",
            "1",
            "--limit",
            "10",
            "--json",
            str(out / "h.json"),
            *d,
        ],
        "parity": [
            "parity",
            "--framework",
            "torch",
            "--model",
            "mlp",
            "--dtype",
            "float64",
            "--json",
            str(out / "p.json"),
            *d,
        ],
        "bench": ["bench", "--impl", "numpy", "--no-memory", "--json", str(out / "b.json"), *d],
        "check": [
            "check",
            CHECK_REF,
            CHECK_PORT,
            "--input",
            "mnist",
            "--batch",
            "2",
            "--json",
            str(out / "c.json"),
            *d,
        ],
    }


MNIST_COMMANDS = ("data", "train", "eval", "compare", "parity", "bench", "check")
GALLERY = Path(__file__).resolve().parent / "check_gallery"
CHECK_REF = f"{GALLERY / 'course.py'}:two_layer_net"
CHECK_PORT = f"{GALLERY / 'torch_ports.py'}:two_layer_port"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good inputs the commands need besides the bad one, and the folder outputs would go to."""
    root = tmp_path_factory.mktemp("work")
    save_weights(root / "good.safetensors", init_params(MLPConfig()), MLPConfig())
    (root / "out").mkdir()
    (root / "no-mnist").mkdir()
    return root


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """No $MNIST_DIR, and an empty user cache."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "cache"))


@pytest.mark.parametrize("command", MNIST_COMMANDS)
@pytest.mark.parametrize("case", [*MNIST_CASES, *MNIST_EXTRA])
def test_bad_mnist(
    capsys: pytest.CaptureFixture[str], mnist_corpus: Path, workdir: Path, case: str, command: str
) -> None:
    if command in ("parity", "check"):
        require_framework("torch")
    folder = mnist_corpus / case
    expect = MNIST_EXTRA.get(case) or MNIST_CASES[case][2]
    argv = _mnist_commands(folder, workdir / "out", workdir / "good.safetensors")[command]
    assert_refused(capsys, argv, [folder, workdir / "out"], str(folder), expect)


def test_mnist_dir_env_not_a_folder(
    capsys: pytest.CaptureFixture[str], mnist_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_DIR", str(mnist_corpus / "a-file"))
    assert_refused(
        capsys, ["data"], mnist_corpus, str(mnist_corpus / "a-file"), r"\$MNIST_DIR is not a folder"
    )


# --- canonical weight files (safetensors) -----------------------------------------------------------


def st_bytes(
    tensors: dict[str, tuple[str, list[int], bytes]], meta: object = None, header: bytes | None = None
) -> bytes:
    """A safetensors file from raw parts (any dtype name, any metadata), or from a raw header."""
    if header is None:
        entries: dict[str, object] = {}
        offset = 0
        for name, (dtype, shape, data) in tensors.items():
            entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
        if meta is not None:
            entries["__metadata__"] = meta
        header = json.dumps(entries).encode()
    body = b"".join(data for _, _, data in tensors.values())
    return len(header).to_bytes(8, "little") + header + body


def good_meta(**changes: object) -> dict[str, object]:
    meta: dict[str, object] = {
        "format": "mnist-rosetta",
        "format_version": "1",
        "model": "mlp",
        "hparams": json.dumps({}),
        "dtype": "float32",
        "layout": "x",
    }
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def good_tensors() -> dict[str, tuple[str, list[int], bytes]]:
    return {n: ("F32", list(v.shape), v.tobytes()) for n, v in init_params(MLPConfig()).items()}


def retyped(name: str, st_dtype: str, np_dtype: str) -> Callable[[], bytes]:
    def make() -> bytes:
        tensors = good_tensors()
        value = init_params(MLPConfig())[name]
        if np_dtype == "bfloat16":  # NumPy has no bfloat16: the top halves of the float32 bits
            data = (value.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            data = value.astype(np_dtype).tobytes()
        tensors[name] = (st_dtype, list(value.shape), data)
        return st_bytes(tensors, good_meta())

    return make


def _with(change: Callable[[dict], None], meta: dict | None = None) -> Callable[[], bytes]:
    def make() -> bytes:
        tensors = good_tensors()
        change(tensors)
        return st_bytes(tensors, good_meta() if meta is None else meta)

    return make


def _nan(tensors: dict) -> None:
    dtype, shape, data = tensors["fc2.W"]
    values = np.frombuffer(data, np.float32).copy()
    values[5] = np.nan
    tensors["fc2.W"] = (dtype, shape, values.tobytes())


def _good_file() -> bytes:
    return st_bytes(good_tensors(), good_meta())


def _torch_save_zip() -> bytes:
    """What torch.save writes: a zip archive holding a pickle (data.pkl)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", EXPLOIT_PICKLE)
        z.writestr("archive/version", "3\n")
    return buffer.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray], comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    if comment:
        with zipfile.ZipFile(buffer, "a") as z:
            z.comment = comment
    return buffer.getvalue()


# name -> (generator, expected message, "header" when only the metadata is wrong (so commands that
# read only the metadata, like --hparams-from, must refuse it too) else "tensors")
WEIGHT_CASES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "empty": (lambda: b"", "no header", "header"),
    "four-bytes": (lambda: b"\x01\x00\x00\x00", "no header", "header"),
    "header-length-huge": (lambda: (1 << 40).to_bytes(8, "little") + b"{}", "header length", "header"),
    "header-length-past-end": (lambda: _good_file()[:200], "header length", "header"),
    "header-not-json": (lambda: st_bytes({}, header=b"{not json at all}"), "not valid JSON", "header"),
    "header-list": (lambda: st_bytes({}, header=b"[1, 2, 3]"), "not a JSON object", "header"),
    "header-deep-json": (
        lambda: st_bytes({}, header=b"[" * DEEP + b"]" * DEEP),
        "nested too deeply",
        "header",
    ),
    "header-byte-flip": (lambda: _flip(_good_file(), 8), "not valid JSON", "header"),
    "truncated-data": (lambda: _good_file()[:-1000], "outside the file", "header"),
    "truncated-last-byte": (lambda: _good_file()[:-1], "outside the file", "header"),
    "metadata-string": (
        lambda: st_bytes(good_tensors(), "mnist-rosetta"),
        "metadata is a JSON str",
        "header",
    ),
    "metadata-list": (lambda: st_bytes(good_tensors(), ["format"]), "metadata is a JSON list", "header"),
    "metadata-int": (lambda: st_bytes(good_tensors(), 1), "metadata is a JSON int", "header"),
    "format-version-int": (
        lambda: st_bytes(good_tensors(), good_meta(format_version=1)),
        "metadata 'format_version' is int 1, expected a string",
        "header",
    ),
    "format-version-2": (
        lambda: st_bytes(good_tensors(), good_meta(format_version="2")),
        "format_version '2' is not supported",
        "header",
    ),
    "format-missing": (
        lambda: st_bytes(good_tensors(), good_meta(format=None)),
        "not an mnist-rosetta weight file",
        "header",
    ),
    "format-native-torch": (
        lambda: st_bytes(good_tensors(), good_meta(format="mnist-rosetta-native", native="torch")),
        "native 'torch' checkpoint",
        "header",
    ),
    "model-unknown": (
        lambda: st_bytes(good_tensors(), good_meta(model="rnn")),
        "unknown model 'rnn'",
        "header",
    ),
    "model-int": (lambda: st_bytes(good_tensors(), good_meta(model=3)), "metadata 'model' is int", "header"),
    "hparams-not-json": (
        lambda: st_bytes(good_tensors(), good_meta(hparams="{oops")),
        "'hparams' is not valid JSON",
        "header",
    ),
    "hparams-list": (
        lambda: st_bytes(good_tensors(), good_meta(hparams="[1, 2]")),
        "'hparams' is a JSON list",
        "header",
    ),
    "hparams-object-not-string": (
        lambda: st_bytes(good_tensors(), good_meta(hparams={"a": 1})),
        "metadata 'hparams' is dict",
        "header",
    ),
    "hparams-deep-json": (
        lambda: st_bytes(good_tensors(), good_meta(hparams="[" * DEEP + "]" * DEEP)),
        "nested too deeply",
        "header",
    ),
    "hparams-deep-value": (
        lambda: st_bytes(
            good_tensors(), good_meta(hparams='{"hidden_sizes": ' + "[" * DEEP + "]" * DEEP + "}")
        ),
        "nested too deeply",
        "header",
    ),
    "hparams-zero-size": (
        lambda: st_bytes(good_tensors(), good_meta(hparams='{"hidden_sizes": [0]}')),
        "hidden_sizes must be >= 1",
        "header",
    ),
    "hparams-negative-size": (
        lambda: st_bytes(good_tensors(), good_meta(hparams='{"hidden_sizes": [-3]}')),
        "hidden_sizes must be >= 1",
        "header",
    ),
    "hparams-huge-model": (
        lambda: st_bytes(good_tensors(), good_meta(hparams='{"hidden_sizes": [100000, 100000]}')),
        "not a model of this project",
        "header",
    ),
    "hparams-unknown-key": (
        lambda: st_bytes(good_tensors(), good_meta(hparams='{"layers": 3}')),
        "no hyper-parameter 'layers'",
        "header",
    ),
    "hparams-wrong-type": (
        lambda: st_bytes(good_tensors(), good_meta(hparams='{"activation": 5}')),
        "activation must be one of",
        "header",
    ),
    "dtype-f16": (retyped("fc1.b", "F16", "float16"), "'fc1.b' has dtype float16", "tensors"),
    "dtype-bf16": (retyped("fc1.W", "BF16", "bfloat16"), "'fc1.W' has dtype bfloat16", "tensors"),
    "dtype-f64-mixed": (
        retyped("fc2.b", "F64", "float64"),
        "'fc2.b' has dtype float64, expected float32",
        "tensors",
    ),
    "dtype-i8": (retyped("fc1.b", "I8", "int8"), "dtype int8", "tensors"),
    "dtype-u8": (retyped("fc1.b", "U8", "uint8"), "dtype uint8", "tensors"),
    "dtype-i16": (retyped("fc1.b", "I16", "int16"), "dtype int16", "tensors"),
    "dtype-u16": (retyped("fc1.b", "U16", "uint16"), "dtype uint16", "tensors"),
    "dtype-i32": (retyped("fc1.b", "I32", "int32"), "dtype int32", "tensors"),
    "dtype-u32": (retyped("fc1.b", "U32", "uint32"), "dtype uint32", "tensors"),
    "dtype-i64": (retyped("fc3.W", "I64", "int64"), "dtype int64", "tensors"),
    "dtype-u64": (retyped("fc1.b", "U64", "uint64"), "dtype uint64", "tensors"),
    "dtype-bool": (retyped("fc1.b", "BOOL", "bool"), "dtype bool", "tensors"),
    "dtype-f8": (retyped("fc1.b", "F8_E4M3", "uint8"), "unknown dtype 'F8_E4M3'", "tensors"),
    "dtype-complex": (retyped("fc1.b", "C64", "complex64"), "unknown dtype 'C64'", "tensors"),
    "offsets-wrong-size": (
        _with(lambda t: t.update({"fc1.b": ("F32", [100], t["fc1.b"][2][:-4] + b"")})),
        "the offsets give",
        "tensors",
    ),
    "shape-negative": (
        _with(lambda t: t.update({"fc1.b": ("F32", [-100], t["fc1.b"][2])})),
        "bad shape",
        "tensors",
    ),
    "shape-wrong": (
        _with(lambda t: t.update({"fc1.W": ("F32", [784, 50], t["fc1.W"][2][: 784 * 50 * 4])})),
        r"'fc1.W' has shape \(784, 50\), expected \(784, 100\)",
        "tensors",
    ),
    "tensor-missing": (_with(lambda t: t.pop("fc3.b")), "missing tensor 'fc3.b'", "tensors"),
    "tensor-extra": (
        _with(lambda t: t.update({"fc4.W": ("F32", [2], b"\x00" * 8)})),
        "unexpected tensor 'fc4.W'",
        "tensors",
    ),
    "value-nan": (_with(_nan), "'fc2.W' has 1 non-finite", "tensors"),
    "pickle": (lambda: EXPLOIT_PICKLE, "not a safetensors weight file", "header"),
    "torch-save-zip": (_torch_save_zip, "not a safetensors weight file", "header"),
    "npz": (lambda: _npz_bytes(init_params(MLPConfig())), "not a safetensors weight file", "header"),
    "hdf5": (lambda: b"\x89HDF\r\n\x1a\n" + b"\x00" * 600, "not a safetensors weight file", "header"),
    "no-metadata-foreign": (
        lambda: st_bytes({"weight": ("F32", [3], b"\x00" * 12)}),
        "not an mnist-rosetta weight file",
        "header",
    ),
}
WEIGHT_EXTRA = {"a-folder": "is a folder", "missing.safetensors": "no such weight file"}
RESUME_EPOCH_CASES = {
    "abc": "metadata 'epoch' is 'abc'",
    "-5": "metadata 'epoch' is '-5'",
    "99999999": "metadata 'epoch' is '99999999'",
    "1e3": "metadata 'epoch' is '1e3'",
    "300": "nothing would be learned",
}


@pytest.fixture(scope="module")
def weight_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weight-corpus")
    for name, (make, _, _) in WEIGHT_CASES.items():
        (root / f"{name}.safetensors").write_bytes(make())
    (root / "a-folder").mkdir()
    for epoch in RESUME_EPOCH_CASES:
        (root / f"epoch-{epoch}.safetensors").write_bytes(st_bytes(good_tensors(), good_meta(epoch=epoch)))
    return root


def _weight_commands(path: Path, work: Path) -> dict[str, list[str]]:
    out = work / "out"
    no_data = ["--data-dir", str(work / "no-mnist")]
    commands = {
        "train --resume": [
            "train",
            "--framework",
            "numpy",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--limit",
            "10",
            "--no-progress",
            "--resume",
            str(path),
            "--out",
            str(out / "w.safetensors"),
            *no_data,
        ],
        "eval": ["eval", "--framework", "numpy", "--model", "mlp", "--weights", str(path), *no_data],
        "convert --hparams-from": [
            "convert",
            str(work / "good.npz"),
            "--from",
            "npz",
            "--hparams-from",
            str(path),
            "--out",
            str(out / "w.safetensors"),
        ],
    }
    for fmt, suffix in (
        ("npz", ".npz"),
        ("torch", ".safetensors"),
        ("keras", ".weights.h5"),
        ("chainer", ".npz"),
    ):
        commands[f"convert --to {fmt}"] = [
            "convert",
            str(path),
            "--to",
            fmt,
            "--out",
            str(out / f"n{suffix}"),
        ]
    return commands


WEIGHT_COMMANDS = (
    "train --resume",
    "eval",
    "convert --to npz",
    "convert --to torch",
    "convert --to keras",
    "convert --to chainer",
    "convert --hparams-from",
)


@pytest.fixture(scope="module")
def weight_work(workdir: Path) -> Path:
    np.savez(workdir / "good.npz", **init_params(MLPConfig()))  # type: ignore[arg-type]
    return workdir


def _weight_params() -> list[tuple[str, str]]:
    """Every case through every command, except tensor-level cases through --hparams-from (which
    reads only the metadata, good in those cases)."""
    return [
        (case, command)
        for case in [*WEIGHT_CASES, *WEIGHT_EXTRA]
        for command in WEIGHT_COMMANDS
        if not (
            command == "convert --hparams-from"
            and case in WEIGHT_CASES
            and WEIGHT_CASES[case][2] == "tensors"
        )
    ]


@pytest.mark.parametrize("case,command", _weight_params())
def test_bad_weight_file(
    capsys: pytest.CaptureFixture[str], weight_corpus: Path, weight_work: Path, case: str, command: str
) -> None:
    if case in WEIGHT_CASES:
        path, (_, expect, _) = weight_corpus / f"{case}.safetensors", WEIGHT_CASES[case]
    else:
        path, expect = weight_corpus / case, WEIGHT_EXTRA[case]
    argv = _weight_commands(path, weight_work)[command]
    assert_refused(capsys, argv, [weight_corpus, weight_work / "out"], str(path), expect)


@pytest.mark.parametrize("epoch", list(RESUME_EPOCH_CASES))
def test_bad_resume_epoch(
    capsys: pytest.CaptureFixture[str], weight_corpus: Path, weight_work: Path, epoch: str
) -> None:
    path = weight_corpus / f"epoch-{epoch}.safetensors"
    argv = _weight_commands(path, weight_work)["train --resume"]
    assert_refused(capsys, argv, [weight_corpus, weight_work / "out"], str(path), RESUME_EPOCH_CASES[epoch])


# --- native checkpoints (convert --from) ------------------------------------------------------------

NATIVE = {
    "torch": ("torch", ".safetensors"),
    "keras": ("tf", ".weights.h5"),
    "chainer": ("chainer", ".npz"),
    "npz": ("numpy", ".npz"),
}


def _native_good(fmt: str, workdir: Path) -> Path:
    """The good checkpoint of ``fmt``, written by the converter (the framework's own save API)."""
    path = workdir / f"good-{fmt}{NATIVE[fmt][1]}"
    if not path.exists():
        assert main(["convert", str(workdir / "good.safetensors"), "--to", fmt, "--out", str(path)]) == 0
    return path


def _rewrite_npz(
    src: Path, dst: Path, change: Callable[[dict[str, np.ndarray]], None], comment: bytes | None = None
) -> None:
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    with zipfile.ZipFile(src) as z:
        old_comment = z.comment
    change(arrays)
    dst.write_bytes(_npz_bytes(arrays, old_comment if comment is None else comment))


def _npz_comment(src: Path) -> dict[str, str]:
    with zipfile.ZipFile(src) as z:
        return json.loads(z.comment)


def _npz_cases(fmt: str, good: Path) -> dict[str, tuple[Callable[[Path], None], str]]:
    first = "fc1/W" if fmt == "chainer" else "fc1.W"
    bias = "fc1/b" if fmt == "chainer" else "fc1.b"

    def cast(dtype: str) -> Callable[[Path], None]:
        return lambda dst: _rewrite_npz(good, dst, lambda a: a.update({bias: a[bias].astype(dtype)}))

    def comment(meta: object) -> Callable[[Path], None]:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        return lambda dst: _rewrite_npz(good, dst, lambda a: None, raw)

    def object_array(dst: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle inside the .npy
        data = good.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
            old = z.comment
        members[f"{bias}.npy"] = buffer.getvalue()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name, content in members.items():
                z.writestr(name, content)
            z.comment = old
        dst.write_bytes(out.getvalue())

    def huge_header(dst: Path) -> None:
        data = good.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
            old = z.comment
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000,), }"
        header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
        members[f"{bias}.npy"] = (
            b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 64
        )
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name, content in members.items():
                z.writestr(name, content)
            z.comment = old
        dst.write_bytes(out.getvalue())

    meta = _npz_comment(good)
    return {
        "dtype-int32": (cast("int32"), "dtype int32"),
        "dtype-float16": (cast("float16"), "dtype float16"),
        "dtype-float64": (cast("float64"), "dtype float64, expected float32"),
        "dtype-complex": (cast("complex64"), "dtype complex64"),
        "object-array": (object_array, "Python objects"),
        "declared-huge": (huge_header, "more than its"),
        "shape-wrong": (
            lambda dst: _rewrite_npz(good, dst, lambda a: a.update({first: a[first][:, :50]})),
            "has shape",
        ),
        "tensor-missing": (lambda dst: _rewrite_npz(good, dst, lambda a: a.pop(bias)), "missing tensor"),
        "tensor-extra": (
            lambda dst: _rewrite_npz(good, dst, lambda a: a.update({"extra": np.zeros(2)})),
            "unexpected tensor 'extra'",
        ),
        "comment-not-json": (comment(b"{oops"), "comment is not valid JSON"),
        "comment-deep": (comment(b"[" * 30000 + b"]" * 30000), "nested too deeply"),
        "comment-hparams-deep": (
            comment({**meta, "hparams": "[" * 30000 + "]" * 30000}),
            "nested too deeply",
        ),
        "comment-hparams-int": (comment({**meta, "hparams": 5}), "metadata 'hparams' is int"),
        "comment-other-format": (comment({**meta, "native": "keras"}), "is a 'keras' checkpoint"),
        "comment-huge-model": (
            comment({**meta, "hparams": json.dumps({"hidden_sizes": [10**6, 10**6]})}),
            "not a model of this project",
        ),
        "crc-flip": (lambda dst: dst.write_bytes(_flip(good.read_bytes(), 200)), "cannot read"),
    }


def _h5_cases(good: Path) -> dict[str, tuple[Callable[[Path], None], str]]:
    import h5py

    def edit(change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
        def make(dst: Path) -> None:
            dst.write_bytes(good.read_bytes())
            with h5py.File(dst, "a") as f:
                change(f)

        return make

    def first_dataset(f: h5py.File) -> str:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        return names[0]

    def retype(dtype: str) -> Callable[[h5py.File], None]:
        def change(f: h5py.File) -> None:
            name = first_dataset(f)
            value = f[name][()]
            del f[name]
            f[name] = value.astype(dtype)

        return change

    def external_link(f: h5py.File) -> None:
        name = first_dataset(f)
        del f[name]
        f[name] = h5py.ExternalLink("/etc/passwd", "/data")

    def external_storage(f: h5py.File) -> None:
        name = first_dataset(f)
        shape = f[name].shape
        del f[name]
        f.create_dataset(
            name, shape=shape, dtype="float32", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)]
        )

    def reshape(f: h5py.File) -> None:
        name = first_dataset(f)
        value = f[name][()]
        del f[name]
        f[name] = value.reshape(-1)[:10]

    def attr(value: object) -> Callable[[h5py.File], None]:
        return lambda f: f.attrs.__setitem__("mnist_rosetta", value)

    return {
        "dtype-int32": (edit(retype("int32")), "dtype int32"),
        "dtype-float16": (edit(retype("float16")), "dtype float16"),
        "dtype-float64": (edit(retype("float64")), "dtype float64, expected float32"),
        "dtype-complex": (edit(retype("complex64")), "dtype complex64"),
        "external-link": (edit(external_link), "is a link"),
        "external-storage": (edit(external_storage), "from another file"),
        "shape-wrong": (edit(reshape), "has shape"),
        "attr-int": (edit(attr(5)), "attribute 'mnist_rosetta' is int"),
        "attr-array": (edit(attr(np.arange(3))), "attribute 'mnist_rosetta' is ndarray"),
        "attr-not-json": (edit(attr("{oops")), "is not valid JSON"),
        "attr-deep": (edit(attr("[" * DEEP + "]" * DEEP)), "nested too deeply"),
        "attr-hparams-deep": (
            edit(
                attr(
                    json.dumps(
                        {"format": "mnist-rosetta-native", "model": "mlp", "hparams": "[" * DEEP + "]" * DEEP}
                    )
                )
            ),
            "nested too deeply",
        ),
        "byte-flip-superblock": (lambda dst: dst.write_bytes(_flip(good.read_bytes(), 0)), "cannot read"),
    }


def _torch_cases(good: Path) -> dict[str, tuple[Callable[[Path], None], str]]:
    from safetensors import safe_open

    with safe_open(str(good), framework="numpy") as f:
        meta = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    names = {"F16": "float16", "F64": "float64", "I64": "int64", "I32": "int32"}

    def tensors(change: Callable[[dict], None] | None = None) -> dict[str, tuple[str, list[int], bytes]]:
        t = {k: ("F32", list(v.shape), v.tobytes()) for k, v in arrays.items()}
        if change:
            change(t)
        return t

    def retype(st_dtype: str) -> Callable[[Path], None]:
        value = arrays["fc1.bias"].astype(names[st_dtype])
        return lambda dst: dst.write_bytes(
            st_bytes(
                tensors(lambda t: t.update({"fc1.bias": (st_dtype, list(value.shape), value.tobytes())})),
                meta,
            )
        )

    return {
        "dtype-f16": (retype("F16"), "dtype float16"),
        "dtype-f64": (retype("F64"), "dtype float64, expected float32"),
        "dtype-i64": (retype("I64"), "dtype int64"),
        "dtype-bf16": (
            lambda dst: dst.write_bytes(
                st_bytes(tensors(lambda t: t.update({"fc1.bias": ("BF16", [100], b"\x00" * 200)})), meta)
            ),
            "dtype bfloat16",
        ),
        "meta-int": (
            lambda dst: dst.write_bytes(st_bytes(tensors(), {**meta, "dtype": 5})),
            "metadata 'dtype' is int",
        ),
        "meta-hparams-deep": (
            lambda dst: dst.write_bytes(st_bytes(tensors(), {**meta, "hparams": "[" * DEEP + "]" * DEEP})),
            "nested too deeply",
        ),
        "meta-dtype-bad": (
            lambda dst: dst.write_bytes(st_bytes(tensors(), {**meta, "dtype": "int8"})),
            "metadata 'dtype' is 'int8'",
        ),
        "tensor-missing": (
            lambda dst: dst.write_bytes(st_bytes(tensors(lambda t: t.pop("fc3.bias")), meta)),
            "missing tensor 'fc3.bias'",
        ),
        "shape-wrong": (
            lambda dst: dst.write_bytes(
                st_bytes(tensors(lambda t: t.update({"fc1.bias": ("F32", [50], b"\x00" * 200)})), meta)
            ),
            "has shape",
        ),
        "truncated": (lambda dst: dst.write_bytes(good.read_bytes()[:-7]), "outside the file"),
    }


GENERIC_NATIVE: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "empty": (lambda work: b"", "cannot read|not a safetensors|no header"),
    "random-bytes": (
        lambda work: bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8)),
        "cannot read|not a safetensors|header length",
    ),
    "pickle": (lambda work: EXPLOIT_PICKLE, "cannot read|not a safetensors|no header|header length"),
    "torch-save-zip": (
        lambda work: _torch_save_zip(),
        "cannot read|not a safetensors|header length|not a .npy",
    ),
    "canonical-file": (
        lambda work: (work / "good.safetensors").read_bytes(),
        "canonical mnist-rosetta weight file|cannot read",
    ),
}


@pytest.fixture(scope="module")
def native_corpus() -> dict[str, dict[str, tuple[Path, str]]]:
    """fmt -> case -> (file, expected message), made on first use per format (a framework may be
    missing, then only its cases skip)."""
    return {}


def _native_case_files(fmt: str, corpus: dict, workdir: Path) -> dict[str, tuple[Path, str]]:
    if fmt in corpus:
        return corpus[fmt]
    folder = workdir / f"native-{fmt}"
    folder.mkdir()
    good = _native_good(fmt, workdir)
    suffix = NATIVE[fmt][1]
    cases: dict[str, tuple[Path, str]] = {}
    for name, (make, expect) in GENERIC_NATIVE.items():
        path = folder / f"{name}{suffix}"
        path.write_bytes(make(workdir))
        cases[name] = (path, expect)
    (folder / f"a-folder{suffix}").mkdir()
    cases["a-folder"] = (folder / f"a-folder{suffix}", "is a folder")
    cases["missing"] = (folder / f"missing{suffix}", "no such file")
    specific = (
        _torch_cases(good) if fmt == "torch" else _h5_cases(good) if fmt == "keras" else _npz_cases(fmt, good)
    )
    for name, (make, expect) in specific.items():
        path = folder / f"{name}{suffix}"
        make(path)
        cases[name] = (path, expect)
    if fmt == "keras":
        renamed = folder / "renamed.keras"
        renamed.write_bytes(good.read_bytes())
        cases["renamed-suffix"] = (renamed, r"ends in '\.weights\.h5'")
    corpus[fmt] = cases
    return cases


NATIVE_CASE_NAMES = {
    "torch": [
        *GENERIC_NATIVE,
        "a-folder",
        "missing",
        "dtype-f16",
        "dtype-f64",
        "dtype-i64",
        "dtype-bf16",
        "meta-int",
        "meta-hparams-deep",
        "meta-dtype-bad",
        "tensor-missing",
        "shape-wrong",
        "truncated",
    ],
    "keras": [
        *GENERIC_NATIVE,
        "a-folder",
        "missing",
        "dtype-int32",
        "dtype-float16",
        "dtype-float64",
        "dtype-complex",
        "external-link",
        "external-storage",
        "shape-wrong",
        "attr-int",
        "attr-array",
        "attr-not-json",
        "attr-deep",
        "attr-hparams-deep",
        "byte-flip-superblock",
        "renamed-suffix",
    ],
    **{
        fmt: [
            *GENERIC_NATIVE,
            "a-folder",
            "missing",
            "dtype-int32",
            "dtype-float16",
            "dtype-float64",
            "dtype-complex",
            "object-array",
            "declared-huge",
            "shape-wrong",
            "tensor-missing",
            "tensor-extra",
            "comment-not-json",
            "comment-deep",
            "comment-hparams-deep",
            "comment-hparams-int",
            "comment-other-format",
            "comment-huge-model",
            "crc-flip",
        ]
        for fmt in ("chainer", "npz")
    },
}


@pytest.mark.parametrize(
    "fmt,case", [(fmt, case) for fmt, names in NATIVE_CASE_NAMES.items() for case in names]
)
def test_bad_native_checkpoint(
    capsys: pytest.CaptureFixture[str], native_corpus: dict, workdir: Path, fmt: str, case: str
) -> None:
    require_framework(NATIVE[fmt][0])
    path, expect = _native_case_files(fmt, native_corpus, workdir)[case]
    capsys.readouterr()  # what making the corpus printed
    argv = [
        "convert",
        str(path),
        "--from",
        fmt,
        "--model",
        "mlp",
        "--out",
        str(workdir / "out" / "w.safetensors"),
    ]
    assert_refused(capsys, argv, [path.parent, workdir / "out"], str(path), expect)


@pytest.mark.parametrize("fmt", list(NATIVE))
def test_good_checkpoint_of_another_format(
    capsys: pytest.CaptureFixture[str], workdir: Path, fmt: str
) -> None:
    """A good checkpoint of each other format, given as ``fmt``: refused by ``fmt``'s reader."""
    for name in NATIVE:
        require_framework(NATIVE[name][0])
    folder = workdir / f"as-{fmt}"
    folder.mkdir(exist_ok=True)
    for other in NATIVE:
        if other == fmt:
            continue
        path = folder / f"{other}{NATIVE[fmt][1]}"
        path.write_bytes(_native_good(other, workdir).read_bytes())
        capsys.readouterr()
        argv = [
            "convert",
            str(path),
            "--from",
            fmt,
            "--model",
            "mlp",
            "--out",
            str(workdir / "out" / "w.safetensors"),
        ]
        assert_refused(
            capsys,
            argv,
            [folder, workdir / "out"],
            str(path),
            "cannot read|checkpoint|missing tensor|unexpected "
            "tensor|not a safetensors|header length|weight file",
        )


# --- parity JSON (site --parity-json) ---------------------------------------------------------------

RECORD = {
    "model": "mlp",
    "framework": "torch",
    "dtype": "float32",
    "quantity": "logits",
    "tensor": "logits",
    "max_abs_err": 1e-7,
    "max_rel_err": 1e-7,
    "tol": 1e-5,
    "passed": True,
}
PARITY_JSON_CASES: dict[str, tuple[bytes, str]] = {
    "truncated": (json.dumps([RECORD]).encode()[:-5], "not readable JSON"),
    "not-utf8": (b"\xff\xfe[\x00]", "not UTF-8|not readable JSON"),
    "deep": (b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
    "an-object": (json.dumps(RECORD).encode(), "not a list of parity records"),
    "missing-key": (
        json.dumps([{k: v for k, v in RECORD.items() if k != "tol"}]).encode(),
        "not a list of parity records",
    ),
    "wrong-type-err": (json.dumps([{**RECORD, "max_rel_err": "small"}]).encode(), "field 'max_rel_err'"),
    "wrong-type-passed": (json.dumps([{**RECORD, "passed": "yes"}]).encode(), "field 'passed'"),
    "wrong-type-model": (json.dumps([{**RECORD, "model": ["mlp"]}]).encode(), "field 'model'"),
    "pickle": (EXPLOIT_PICKLE, "not readable JSON"),
}


@pytest.mark.parametrize("case", [*PARITY_JSON_CASES, "a-folder", "missing"])
def test_bad_parity_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.json"
    if case == "a-folder":
        path.mkdir()
        expect = "is a folder"
    elif case == "missing":
        expect = "does not exist"
    else:
        path.write_bytes(PARITY_JSON_CASES[case][0])
        expect = PARITY_JSON_CASES[case][1]
    argv = ["site", "--out", str(tmp_path / "site"), "--parity-json", str(path)]
    assert_refused(capsys, argv, tmp_path, str(path), expect)


# --- labels through every adapter -------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["numpy", "torch", "tf", "chainer"])
def test_bad_labels_refused_by_every_adapter(framework: str) -> None:
    """Chainer alone would skip label -1 (its ignore_label) and NumPy would index from the end:
    every adapter refuses it, and any label outside [0, classes), the same way."""
    from rosetta.adapters import make_adapter

    if framework != "numpy":
        require_framework(framework)
    config = MLPConfig(input_size=4, hidden_sizes=(3,), output_size=10)
    adapter = make_adapter(framework, config, init_params(config), "float32")
    adapter.set_optimizer("sgd", lr=0.1)
    x = np.zeros((3, 4), np.float32)
    for labels, message in (
        (np.array([0, -1, 2]), r"label -1 at index 1 is not a class index in \[0, 10\)"),
        (np.array([0, 1, 10]), "label 10 at index 2"),
        (np.array([0.0, 1.0, 2.0]), "labels must be integer class indices"),
    ):
        with pytest.raises(ValueError, match=message):
            adapter.loss_and_grads(x, labels)
        with pytest.raises(ValueError, match=message):
            adapter.train_step(x, labels)


# --- course parameter files (convert --from dlfs) ----------------------------------------------------

COURSE_CASES: dict[str, bytes] = {
    "empty": b"",
    "random-bytes": bytes(np.random.default_rng(5).integers(0, 256, 4096, np.uint8)),
    "exploit-global-reduce": EXPLOIT_PICKLE,
    "exploit-protocol-4": b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system"
    b"\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94.",
    "truncated-pickle": EXPLOIT_PICKLE[:10],
    "deep-nesting": b"\x80\x02" + b"]" * 200_000 + b".",
    "huge-declared-bytes": b"\x80\x04\x8e" + (1 << 60).to_bytes(8, "little") + b"abc",
    "torch-save-zip": _torch_save_zip(),
    "npz": _npz_bytes(init_params(MLPConfig())),
    "canonical-file": st_bytes(good_tensors(), good_meta()),
}


@pytest.mark.parametrize("case", [*COURSE_CASES, "a-folder", "missing"])
def test_bad_course_file(capsys: pytest.CaptureFixture[str], workdir: Path, case: str) -> None:
    folder = workdir / "course"
    folder.mkdir(exist_ok=True)
    path = folder / f"{case}.pkl"
    if case == "a-folder":
        path.mkdir(exist_ok=True)
    elif case in COURSE_CASES:
        path.write_bytes(COURSE_CASES[case])
    argv = ["convert", str(path), "--from", "dlfs", "--out", str(workdir / "out" / "w.safetensors")]
    assert_refused(capsys, argv, [folder, workdir / "out"], str(path), ".")
