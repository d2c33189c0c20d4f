"""The course-file reader (rosetta/course.py): hostile pickles are refused before anything runs,
and any bytes at all either load as a dict of arrays or raise CourseFileError.

The payloads are built here with the real pickle module (tests may; the project's code never
does) and each one is first shown to be live: plain ``pickle.loads`` creates its marker file.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosetta.cli import main
from rosetta.course import (
    MAX_ARRAY_BYTES,
    CourseFileError,
    parse_course_npz,
    parse_course_pickle,
    read_course_file,
    read_course_pickle,
)
from rosetta.weights import WeightFileError


# --- crafted payloads ---------------------------------------------------------------------------
class _Call:
    """Pickles as ``func(*args)``: what an attacker's object does in ``__reduce__``."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):  # noqa: ANN204
        return self.func, self.args


def _touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def payloads(marker: Path, tmp: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global the refusal must name)."""
    evil_npy = tmp / f"{marker.name}.npy"
    np.save(evil_npy, np.array([_Call(builtins.eval, _touch_code(marker))], dtype=object), allow_pickle=True)
    good = np.arange(3, dtype=np.float32)
    out = {
        "os.system": (pickle.dumps({"W1": _Call(os.system, f"touch '{marker}'")}, protocol=2), "posix.system"
                      if os.name == "posix" else "nt.system"),
        "eval": (pickle.dumps(_Call(builtins.eval, _touch_code(marker)), protocol=4), "builtins.eval"),
        "exec via __reduce__": (pickle.dumps({"W1": good, "b1": _Call(builtins.exec, _touch_code(marker))},
                                             protocol=5), "builtins.exec"),
        "subprocess.Popen": (pickle.dumps(_Call(subprocess.Popen, ["touch", str(marker)]), protocol=3),
                             "subprocess.Popen"),
        "numpy.load of an object .npy": (
            pickle.dumps(_Call(np.load, str(evil_npy), None, True), protocol=4), "numpy.load"),
        # getattr(__import__('os'), 'system')('touch marker'): a call on a call's result
        "builtins.getattr nested REDUCE": (
            b"\x80\x02" + _g("builtins", "getattr") + b"(" + _g("builtins", "__import__") + b"(" + _u("os")
            + b"tR" + _u("system") + b"tR(" + _u(f"touch '{marker}'") + b"tR.", "builtins.getattr"),
        # an admitted global's result called again: _reconstruct(...)(...) -> refused as a REDUCE target
        "REDUCE on an admitted global's result": (
            b"\x80\x02" + _g("numpy.core.multiarray", "_reconstruct") + _g("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R)R.", "REDUCE of something that is not an admitted global"),
        # STACK_GLOBAL with the names put in the memo, popped and fetched back, after valid arrays
        "STACK_GLOBAL from memo": (
            pickle.dumps({"W1": good, "W0": good}, protocol=4)[:-2]  # drop SETITEMS + STOP: MARK stays
            + b"\x8c\x02b1" + b"\x8c\x08builtinsq\xc80" + b"\x8c\x04evalq\xc90" + b"h\xc8h\xc9\x93"
            + b"\x8c" + bytes([len(_touch_code(marker))]) + _touch_code(marker).encode() + b"\x85R" + b"u.",
            "builtins.eval"),
        "copyreg._reconstructor": (b"\x80\x02" + _g("copyreg", "_reconstructor") + b"(" + _g("os", "system")
                                   + _u("x") + b"tR.", "copyreg._reconstructor"),
        "numpy.frombuffer (not the pickle helper)": (
            b"\x80\x02" + _g("numpy", "frombuffer") + b"(C\x04abcdtR.", "numpy.frombuffer"),
        "numpy scalar": (pickle.dumps({"W1": np.float64(1.0)}, protocol=4), "numpy._core.multiarray.scalar"),
    }
    return out


LIVE = ("os.system", "eval", "exec via __reduce__", "subprocess.Popen", "numpy.load of an object .npy",
        "builtins.getattr nested REDUCE", "STACK_GLOBAL from memo")


def _wait_for(marker: Path, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if marker.exists():
            return True
        time.sleep(0.02)
    return marker.exists()


def test_payloads_are_live_under_real_pickle(tmp_path: Path) -> None:
    """The payloads do what they say when pickle runs them: the refusals below prove something."""
    files = {}
    for i, name in enumerate(LIVE):
        marker = tmp_path / f"marker{i}"
        files[name] = (tmp_path / f"payload{i}.pkl", marker)
        files[name][0].write_bytes(payloads(marker, tmp_path)[name][0])
    code = ("import pickle, sys\nfor p in sys.argv[1:]:\n    try:\n"
            "        pickle.loads(open(p, 'rb').read())\n    except Exception:\n        pass\n")
    subprocess.run([sys.executable, "-c", code, *(str(p) for p, _ in files.values())], capture_output=True,
                   timeout=120, check=False)
    dead = [name for name, (_, marker) in files.items() if not _wait_for(marker)]
    assert not dead, f"payloads that did not create their marker under pickle.loads: {dead}"


REFUSED = (*LIVE, "REDUCE on an admitted global's result", "copyreg._reconstructor",
           "numpy.frombuffer (not the pickle helper)", "numpy scalar")


@pytest.mark.parametrize("name", REFUSED)
def test_payload_refused_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    marker = tmp_path / "marker"
    data, refused = payloads(marker, tmp_path)[name]
    path = tmp_path / "params.pkl"
    path.write_bytes(data)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CourseFileError) as info:
        read_course_pickle(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    if name == "REDUCE on an admitted global's result":
        assert refused in message, message
    else:
        assert f"refused global {refused}" in message, message
    # the same through the command: exit 1, one line, nothing written
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(path), "--from", "dlfs", "--activation", "relu", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not _wait_for(marker, 0.3 if "Popen" in name else 0.0), "a refused payload ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_refusal_comes_before_any_array(tmp_path: Path) -> None:
    """A valid tensor before the hostile global is never built: nothing is returned or kept."""
    marker = tmp_path / "marker"
    data, _ = payloads(marker, tmp_path)["exec via __reduce__"]
    assert b"W1" in data and data.index(b"W1") < data.index(b"exec")
    with pytest.raises(CourseFileError, match="refused global builtins.exec"):
        parse_course_pickle(data, "x.pkl")


@pytest.mark.parametrize("opcode, name", [(b"\x81", "NEWOBJ"), (b"\x82\x01", "EXT1"),
                                          (b"\x97", "NEXT_BUFFER"), (b"P0\n", "PERSID"),
                                          (b"ios\nsystem\n", "INST")])
def test_other_calling_opcodes_refused(opcode: bytes, name: str) -> None:
    with pytest.raises(CourseFileError, match=name):
        parse_course_pickle(b"\x80\x05N" + opcode + b".", "x.pkl")


# --- what loads -----------------------------------------------------------------------------------
PARAMS = {"W1": np.arange(12, dtype=np.float32).reshape(3, 4), "b1": np.zeros(4, np.float32),
          "W2": np.asfortranarray(np.linspace(-1, 1, 8).reshape(4, 2)), "e": np.zeros((0, 3))}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_loads_bit_exact(tmp_path: Path, protocol: int) -> None:
    params = {**PARAMS, "be": np.arange(3, dtype=">f8"), "i": np.arange(3, dtype=np.int64),
              "flag": np.array([True, False])}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(params, protocol=protocol))
    loaded = read_course_pickle(path)
    assert list(loaded) == list(params)
    for name, value in params.items():
        assert loaded[name].dtype == value.dtype.newbyteorder("=") and loaded[name].flags.writeable
        np.testing.assert_array_equal(loaded[name], value)


def test_numpy1_module_path_loads() -> None:
    data = pickle.dumps(PARAMS, protocol=4).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    data = data.replace(b"\x8c\x16numpy.core.multiarray", b"\x8c\x15numpy.core.multiarray")
    loaded = parse_course_pickle(data, "x.pkl")
    np.testing.assert_array_equal(loaded["W1"], PARAMS["W1"])


def test_npz_form_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, **PARAMS)
    arrays, kind = read_course_file(path)
    assert kind == "npz" and list(arrays) == list(PARAMS)
    np.testing.assert_array_equal(arrays["W2"], PARAMS["W2"])


@pytest.mark.parametrize("value, match", [
    ([np.zeros(2)], "holds a list"), ({"W1": {"W": np.zeros(2)}}, "tensor 'W1' is dict"),
    ({1: np.zeros(2)}, "key 1 .int."), ({"W1": np.array([1, "a"], dtype=object)}, "dtype 'O"),
    ({"W1": np.zeros(2, np.complex128)}, "dtype 'c16'"), ({"W1": 3}, "tensor 'W1' is int"),
    ({"W1": np.zeros(2, dtype=[("a", "f4")])}, "dtype"), ("W1", "holds a str"),
])
def test_wrong_structures_refused(value: object, match: str) -> None:
    for protocol in (2, 4, 5):
        with pytest.raises(CourseFileError, match=match):
            parse_course_pickle(pickle.dumps(value, protocol=protocol), "x.pkl")


def test_npz_object_and_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.npz"
    np.savez(path, W1=np.array([1, "a"], dtype=object))
    with pytest.raises(CourseFileError, match="dtype object"):
        read_course_file(path)
    # a header declaring 2**40 floats in a member of a few bytes: refused before any allocation
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (1 << 20, 1 << 20)})
        z.writestr("W1.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\x00" * 16)
    with pytest.raises(CourseFileError, match="exceeds the cap"):
        parse_course_npz(buf.getvalue(), "bomb.npz")


# --- sizes and memory -------------------------------------------------------------------------------
def _array_pickle(shape_ints: bytes, data_op: bytes) -> bytes:
    """A protocol-2 dict {'W1': array} with the shape tuple and the data opcode given raw."""
    return (b"\x80\x02}(" + _u("W1") + _g("numpy.core.multiarray", "_reconstruct") + _g("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R(K\x01(" + shape_ints + b"t" + _g("numpy", "dtype") + _u("f8")
            + b"\x89\x88\x87R(K\x03" + _u("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
            + data_op + b"tbu.")


def _long(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


HUGE = {
    "shape 2**40 x 2**40": _array_pickle(_long(1 << 40) + _long(1 << 40), b"C\x08" + b"\x00" * 8),
    "shape above the cap": _array_pickle(_long(MAX_ARRAY_BYTES // 8 + 1), b"C\x08" + b"\x00" * 8),
    "BINBYTES8 of 2**60 bytes": _array_pickle(b"K\x01", b"\x8e" + struct.pack("<Q", 1 << 60) + b"\x00" * 8),
    "BINBYTES of 2**31 bytes": _array_pickle(b"K\x01", b"B" + struct.pack("<I", (1 << 31) - 1)),
    "memo index 2**31": b"\x80\x02}r\xff\xff\xff\x7f.",
    "negative shape": _array_pickle(b"J\xff\xff\xff\xff", b"C\x08" + b"\x00" * 8),
    "200k MARKs": b"\x80\x02" + b"(" * 200_000 + b".",
}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_declared_sizes_refused_in_bounded_memory(name: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CourseFileError):
            parse_course_pickle(HUGE[name], "huge.pkl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * (1 << 20), f"{name}: peak {peak / 2**20:.1f} MiB"


def test_the_array_builder_is_right() -> None:
    """The hand-assembled pickle used above loads when its sizes are honest."""
    data = _array_pickle(b"K\x02", b"C\x10" + np.array([1.5, -2.0]).tobytes())
    np.testing.assert_array_equal(parse_course_pickle(data, "x.pkl")["W1"], [1.5, -2.0])
    assert pickle.loads(data)["W1"].tolist() == [1.5, -2.0]


def test_file_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    with open(path, "wb") as f:
        f.truncate(MAX_ARRAY_BYTES + (2 << 20))
    with pytest.raises(CourseFileError, match="exceeds the cap"):
        read_course_pickle(path)
    with pytest.raises(CourseFileError, match="no such file"):
        read_course_pickle(tmp_path / "missing.pkl")
    with pytest.raises(CourseFileError, match="folder"):
        read_course_pickle(tmp_path)
    assert issubclass(CourseFileError, WeightFileError)


# --- the fuzz: every input loads or raises CourseFileError, quickly ----------------------------------
VALID = [pickle.dumps(PARAMS, protocol=p) for p in (2, 3, 4, 5)] + [
    pickle.dumps({"W1": np.ones((2, 2), np.float64), "b1": np.zeros(2, np.float64)}, protocol=4)]
_npz = io.BytesIO()
np.savez(_npz, **PARAMS)
VALID_NPZ = _npz.getvalue()
WRONG = [pickle.dumps(v, protocol=p) for p in (2, 4, 5) for v in (
    [np.zeros(2)], {"a": {"b": np.zeros(2)}}, {1: np.zeros(1)}, {"W": np.array([None], dtype=object)},
    {"W": (np.zeros(1),)}, None, 3.5, b"bytes", {"W": np.zeros(2, np.complex64)}, {(1, 2): np.zeros(1)})]
FUZZ = settings(max_examples=200, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _loads_or_refuses(data: bytes, npz: bool = False) -> None:
    try:
        arrays = parse_course_npz(data, "f.npz") if npz else parse_course_pickle(data, "f.pkl")
    except CourseFileError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(arrays, dict)
    for key, value in arrays.items():
        assert isinstance(key, str) and isinstance(value, np.ndarray) and value.dtype != object


@FUZZ
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(data: bytes) -> None:
    _loads_or_refuses(data)
    _loads_or_refuses(b"\x80\x04" + data)


@FUZZ
@given(st.sampled_from(VALID + WRONG), st.integers(min_value=0))
def test_fuzz_truncations(data: bytes, cut: int) -> None:
    _loads_or_refuses(data[:cut % (len(data) + 1)])


@FUZZ
@given(st.sampled_from(VALID + WRONG), st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                                                min_size=1, max_size=4))
def test_fuzz_byte_flips(data: bytes, flips: list[tuple[int, int]]) -> None:
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    _loads_or_refuses(bytes(buf))


@FUZZ
@given(st.lists(st.integers(min_value=-(1 << 70), max_value=1 << 70), max_size=4), st.binary(max_size=64))
def test_fuzz_declared_shapes(shape: list[int], raw: bytes) -> None:
    ints = b"".join(_long(s) for s in shape)
    _loads_or_refuses(_array_pickle(ints, b"C" + bytes([len(raw)]) + raw))


@FUZZ
@given(st.integers(min_value=0), st.integers(0, 255), st.integers(min_value=0))
def test_fuzz_npz(pos: int, value: int, cut: int) -> None:
    buf = bytearray(VALID_NPZ)
    buf[pos % len(buf)] = value
    _loads_or_refuses(bytes(buf), npz=True)
    _loads_or_refuses(VALID_NPZ[:cut % (len(VALID_NPZ) + 1)], npz=True)
