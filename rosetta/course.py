"""The course's own parameter files: a safe reader, the course-name map and the architecture.

The course saves a network's ``params`` dict (``W1``, ``b1``, ..., ``gamma1``, ``beta1``, ...)
with ``pickle.dump`` (its ``save_params``). A pickle can call any function while it loads, so
this module never hands one to :mod:`pickle`. :func:`read_course_pickle` walks the opcodes
with :func:`pickletools.genops` (which decodes, never executes) and interprets the few a NumPy
array pickle uses itself; the only globals it admits are, by name:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` (protocols 2-4),
  with the fixed arguments ``(numpy.ndarray, (0,), b'b')`` an array pickle passes;
* ``numpy.ndarray`` (only as that argument) and ``numpy.dtype`` (plain numeric codes only);
* ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``: what NumPy's own
  ``__reduce_ex__`` writes for protocol 5;
* ``_codecs.encode`` with ``'latin1'``: how protocol 2 stores ``bytes`` (the raw array data), and
  ``bytes()`` without arguments (``__builtin__.bytes``): how it stores empty ``bytes``.

None of them is imported or called: each is recognised by name and its effect (an array from
validated shape, dtype and bytes) is computed here. Any other global is refused when the opcode
stream reaches it and before any array exists, with one message naming the file and the global.
Sizes are capped (:data:`MAX_ARRAY_BYTES` per array and in total, :data:`MAX_FILE_BYTES`,
:data:`MAX_OPCODES`, :data:`MAX_MEMO`), object and structured dtypes are refused, the top level
must be a dict of string keys to arrays. Every failure is a :class:`CourseFileError`.

The same dict saved with ``np.savez`` is read by :func:`read_course_npz` (headers checked
before any data is read, never with pickle).

Then :func:`import_course_params` maps the course names to the canonical ones and infers the
network from the shapes (see :func:`course_name_map` and docs/porting.md, ``course-names``).
"""

from __future__ import annotations

import io
import math
import os
import pickletools
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rosetta.configs import (
    DEEP_CONV_PARAMS,
    CNNConfig,
    MLPConfig,
    ModelConfig,
    conv_output,
    make_config,
    pool_output,
)
from rosetta.weights import WeightFileError

MiB = 1 << 20
MAX_ARRAY_BYTES = 64 * MiB  # the largest course network here holds < 4 MiB
MAX_TOTAL_BYTES = 64 * MiB
MAX_FILE_BYTES = MAX_TOTAL_BYTES + MiB  # arrays plus the pickle's own bytes
MAX_OPCODES = 100_000  # the book's files have < 600
MAX_MEMO = 100_000
MAX_NDIM = 8

# (module, name) -> what it stands for; both NumPy 1 and NumPy 2 module paths.
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",  # protocol 2's empty bytes (a zero-size array's data)
    ("builtins", "bytes"): "bytes",
}
# numpy.dtype codes an array pickle may name (plain numbers; object/structured/strings refused).
DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
BYTE_ORDERS = frozenset({"<", ">", "|", "="})


class CourseFileError(WeightFileError):
    """A course parameter file cannot be read safely or mapped; the message names the file and why."""


# --- the restricted pickle reader ---------------------------------------------------------------
class _Mark:
    """The MARK sentinel on the interpreter's stack."""


_MARK = _Mark()


@dataclass(eq=False)
class _Global:
    module: str
    name: str
    kind: str


@dataclass(eq=False)
class _DType:
    code: str
    order: str = "="

    def dtype(self) -> np.dtype:
        base = np.dtype(self.code)
        return base if self.order in ("|", "=") else base.newbyteorder(self.order)


@dataclass(eq=False)
class _Array:
    """An array described by the stream; built only after the whole stream was accepted."""

    shape: tuple[int, ...] | None = None
    dtype: _DType | None = None
    fortran: bool = False
    data: bytes | None = None

    def build(self) -> np.ndarray:
        assert self.shape is not None and self.dtype is not None and self.data is not None
        dtype = self.dtype.dtype()
        flat = np.frombuffer(self.data, dtype=dtype, count=math.prod(self.shape))
        arr = flat.reshape(self.shape, order="F" if self.fortran else "C")
        return np.array(arr, dtype=dtype.newbyteorder("="), order="C")  # a writable native-order copy


class _Refused(Exception):
    """Internal: the reason a stream is refused (turned into one CourseFileError)."""


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_flag(v: object) -> bool:
    """A bool, or the 0/1 integers older NumPy writes for one."""
    return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))


class _Interpreter:
    """A stack machine for the opcodes an array-dict pickle uses; nothing here calls out."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.total = 0

    # helpers
    def pop(self) -> object:
        if not self.stack:
            raise _Refused("stack underflow")
        value = self.stack.pop()
        if value is _MARK:
            raise _Refused("unexpected MARK")
        return value

    def pop_mark(self) -> list[object]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        raise _Refused("no MARK on the stack")

    def top(self) -> object:
        if not self.stack or self.stack[-1] is _MARK:
            raise _Refused("stack underflow")
        return self.stack[-1]

    def put(self, index: object, value: object) -> None:
        if not _is_int(index) or not 0 <= index < MAX_MEMO or len(self.memo) >= MAX_MEMO:
            raise _Refused(f"memo index {index!r} out of range")
        self.memo[index] = value

    def check_global(self, module: object, name: object) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused("a global whose name is not a string")
        kind = ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise _Refused(f"refused global {module}.{name}")
        return _Global(module, name, kind)

    def array_size(self, shape: object, dtype: _DType) -> tuple[tuple[int, ...], int]:
        if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or not all(
                _is_int(s) and s >= 0 for s in shape):
            raise _Refused(f"bad array shape {shape!r}")
        nbytes = math.prod(shape) * np.dtype(dtype.code).itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise _Refused(f"an array of shape {shape} ({nbytes} bytes) exceeds the cap of "
                           f"{MAX_ARRAY_BYTES // MiB} MiB per array")
        if self.total + nbytes > MAX_TOTAL_BYTES:
            raise _Refused(f"the arrays exceed the cap of {MAX_TOTAL_BYTES // MiB} MiB in total")
        self.total += nbytes
        return shape, nbytes

    # the calls
    def reduce(self, func: object, args: object) -> object:
        if not isinstance(func, _Global):
            raise _Refused("REDUCE of something that is not an admitted global")
        if not isinstance(args, tuple):
            raise _Refused(f"REDUCE arguments of {func.module}.{func.name} are not a tuple")
        if func.kind == "reconstruct":
            if (len(args) != 3 or not isinstance(args[0], _Global) or args[0].kind != "ndarray"
                    or not isinstance(args[1], tuple) or not isinstance(args[2], bytes)):
                raise _Refused(f"{func.module}.{func.name} called with other arguments than an "
                               "array pickle's (numpy.ndarray, (0,), b'b')")
            return _Array()
        if func.kind == "dtype":
            if (not 1 <= len(args) <= 3 or not isinstance(args[0], str)
                    or not all(_is_flag(a) for a in args[1:])):
                raise _Refused(f"numpy.dtype called with {args!r}")
            if args[0] not in DTYPE_CODES:
                raise _Refused(f"dtype {args[0]!r} (object, string, structured and complex arrays "
                               "are refused)")
            return _DType(args[0])
        if func.kind == "frombuffer":
            if (len(args) != 4 or not isinstance(args[0], bytes | bytearray)
                    or not isinstance(args[1], _DType) or args[3] not in ("C", "F")):
                raise _Refused(f"{func.module}.{func.name} called with other arguments than an "
                               "array pickle's (buffer, dtype, shape, order)")
            shape, nbytes = self.array_size(args[2], args[1])
            if len(args[0]) != nbytes:
                raise _Refused(f"array data holds {len(args[0])} bytes, its shape {shape} needs {nbytes}")
            return _Array(shape, args[1], args[3] == "F", bytes(args[0]))
        if func.kind == "encode":
            if len(args) != 2 or not isinstance(args[0], str) or args[1] != "latin1":
                raise _Refused("_codecs.encode called with other arguments than (str, 'latin1')")
            try:
                return args[0].encode("latin1")
            except UnicodeEncodeError:
                raise _Refused("_codecs.encode of a string that is not latin-1") from None
        if func.kind == "bytes":
            if args != ():
                raise _Refused(f"{func.module}.{func.name} called with arguments (only bytes() is admitted)")
            return b""
        raise _Refused(f"{func.module}.{func.name} cannot be called")

    def build(self, obj: object, state: object) -> None:
        if isinstance(obj, _DType):
            # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
            if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
                    or state[1] not in BYTE_ORDERS or state[2:5] != (None, None, None)
                    or state[5:8] != (-1, -1, 0) or (len(state) == 9 and state[8] is not None)):
                raise _Refused(f"dtype state {state!r} is not a plain numeric dtype's")
            obj.order = state[1]
            return
        if isinstance(obj, _Array) and obj.data is None:
            if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
                state = state[1:]
            if (not isinstance(state, tuple) or len(state) != 4 or not isinstance(state[1], _DType)
                    or not _is_flag(state[2]) or not isinstance(state[3], bytes | bytearray)):
                raise _Refused("array state is not (version, shape, dtype, is_fortran, bytes)")
            shape, nbytes = self.array_size(state[0], state[1])
            if len(state[3]) != nbytes:
                raise _Refused(f"array data holds {len(state[3])} bytes, its shape {shape} needs {nbytes}")
            obj.shape, obj.dtype, obj.fortran, obj.data = shape, state[1], bool(state[2]), bytes(state[3])
            return
        raise _Refused(f"BUILD on a {type(obj).__name__}")

    def run(self, ops: Iterable[tuple[pickletools.OpcodeInfo, object, int | None]]) -> object:
        handlers = self._handlers()
        for count, (op, arg, pos) in enumerate(ops):
            if count >= MAX_OPCODES:
                raise _Refused(f"more than {MAX_OPCODES} opcodes")
            if count == 0 and (op.name != "PROTO" or not 2 <= int(arg) <= 5):  # type: ignore[call-overload]
                raise _Refused("not a pickle of protocol 2 to 5")
            if op.name == "STOP":
                value = self.pop()
                return value
            handler = handlers.get(op.name)
            if handler is None:
                raise _Refused(f"opcode {op.name} at byte {pos} (not used by a NumPy array pickle)")
            handler(arg)
        raise _Refused("no STOP opcode")

    def _handlers(self) -> dict[str, Callable[[object], None]]:
        push = self.stack.append

        def literal(arg: object) -> None:
            push(arg)

        def tuple_n(n: int) -> Callable[[object], None]:
            def handler(_: object) -> None:
                if len(self.stack) < n:
                    raise _Refused("stack underflow")
                items = [self.pop() for _ in range(n)][::-1]
                push(tuple(items))
            return handler

        def setitems(_: object) -> None:
            items = self.pop_mark()
            target = self.top()
            if not isinstance(target, dict) or len(items) % 2:
                raise _Refused("SETITEMS on something that is not a dict")
            for k, v in zip(items[::2], items[1::2], strict=True):
                target[k] = v

        def setitem(_: object) -> None:
            value, key = self.pop(), self.pop()
            target = self.top()
            if not isinstance(target, dict):
                raise _Refused("SETITEM on something that is not a dict")
            target[key] = value

        def make_dict(_: object) -> None:
            items = self.pop_mark()
            if len(items) % 2:
                raise _Refused("DICT with an odd number of items")
            push(dict(zip(items[::2], items[1::2], strict=True)))

        def appends(_: object) -> None:
            items = self.pop_mark()
            target = self.top()
            if not isinstance(target, list):
                raise _Refused("APPENDS on something that is not a list")
            target.extend(items)

        def append(_: object) -> None:
            value = self.pop()
            target = self.top()
            if not isinstance(target, list):
                raise _Refused("APPEND on something that is not a list")
            target.append(value)

        def memo_get(arg: object) -> None:
            if arg not in self.memo:
                raise _Refused(f"memo index {arg!r} was never stored")
            push(self.memo[arg])  # type: ignore[index]

        def memo_put(arg: object) -> None:
            self.put(arg, self.top())

        def memoize(_: object) -> None:
            self.put(len(self.memo), self.top())

        def global_(arg: object) -> None:
            module, _, name = str(arg).partition(" ")
            push(self.check_global(module, name))

        def stack_global(_: object) -> None:
            name, module = self.pop(), self.pop()
            push(self.check_global(module, name))

        def reduce(_: object) -> None:
            args, func = self.pop(), self.pop()
            push(self.reduce(func, args))

        def build(_: object) -> None:
            state = self.pop()
            self.build(self.top(), state)

        def pop_mark(_: object) -> None:
            self.pop_mark()

        def dup(_: object) -> None:
            push(self.top())

        def nothing(_: object) -> None:
            return None

        return {
            "PROTO": nothing, "FRAME": nothing,
            "MARK": lambda _: push(_MARK), "POP": lambda _: self.pop() and None, "POP_MARK": pop_mark,
            "DUP": dup,
            "NONE": lambda _: push(None), "NEWTRUE": lambda _: push(True), "NEWFALSE": lambda _: push(False),
            "BININT": literal, "BININT1": literal, "BININT2": literal, "LONG1": literal,
            "BINFLOAT": literal,
            "SHORT_BINUNICODE": literal, "BINUNICODE": literal, "BINUNICODE8": literal,
            "SHORT_BINBYTES": literal, "BINBYTES": literal, "BINBYTES8": literal, "BYTEARRAY8": literal,
            "EMPTY_TUPLE": lambda _: push(()), "TUPLE1": tuple_n(1), "TUPLE2": tuple_n(2),
            "TUPLE3": tuple_n(3), "TUPLE": lambda _: push(tuple(self.pop_mark())),
            "EMPTY_LIST": lambda _: push([]), "LIST": lambda _: push(self.pop_mark()),
            "APPEND": append, "APPENDS": appends,
            "EMPTY_DICT": lambda _: push({}), "DICT": make_dict, "SETITEM": setitem, "SETITEMS": setitems,
            "BINPUT": memo_put, "LONG_BINPUT": memo_put, "MEMOIZE": memoize,
            "BINGET": memo_get, "LONG_BINGET": memo_get,
            "GLOBAL": global_, "STACK_GLOBAL": stack_global, "REDUCE": reduce, "BUILD": build,
        }


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise CourseFileError(f"{p}: is a folder, not a course parameter file")
    if not p.is_file():
        raise CourseFileError(f"{p}: no such file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CourseFileError(f"{p}: {size} bytes exceeds the cap of {MAX_FILE_BYTES // MiB} MiB for "
                              "a course parameter file")
    try:
        with open(p, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CourseFileError(f"{p}: cannot read ({exc.strerror or exc})") from None


def _check_tensor_dict(value: object, source: str, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CourseFileError(f"{source}: holds a {type(value).__name__}, not the dict name -> array "
                              f"the course's save_params writes{what}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise CourseFileError(f"{source}: key {key!r} ({type(key).__name__}) is not a tensor name "
                                  "(a string)")
        if not isinstance(item, _Array | np.ndarray) or (isinstance(item, _Array) and item.data is None):
            kind = "an unfinished array" if isinstance(item, _Array) else type(item).__name__
            raise CourseFileError(f"{source}: tensor {key!r} is {kind}, not an array")
    return value  # type: ignore[return-value]


def parse_course_pickle(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """The arrays of a course pickle held in ``data``; CourseFileError for anything else."""
    if len(data) > MAX_FILE_BYTES:
        raise CourseFileError(f"{source}: {len(data)} bytes exceeds the cap of {MAX_FILE_BYTES // MiB} MiB")
    interpreter = _Interpreter()
    try:
        result = interpreter.run(pickletools.genops(io.BytesIO(data)))
    except _Refused as exc:
        raise CourseFileError(f"{source}: {exc}; nothing was loaded (a course parameter file holds only "
                              "a dict of NumPy arrays)") from None
    except RecursionError:
        raise CourseFileError(f"{source}: not a course parameter file (nesting too deep)") from None
    except (ValueError, TypeError, KeyError, IndexError, EOFError, OverflowError) as exc:
        # pickletools reports truncated or malformed opcodes as ValueError; a dict key that cannot
        # be hashed (a list) is a TypeError: the bytes are not a course parameter file.
        raise CourseFileError(f"{source}: not a readable course parameter file ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    arrays = _check_tensor_dict(result, source, "")
    return {k: v.build() for k, v in arrays.items()}  # type: ignore[union-attr]


def read_course_pickle(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``pickle.load`` of a course ``save_params`` file, without pickle (see the module docstring)."""
    return parse_course_pickle(_read_bytes(path), os.fspath(path))


def read_course_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The course's params dict saved as ``np.savez``: headers and sizes checked before any data."""
    return parse_course_npz(_read_bytes(path), os.fspath(path))


def parse_course_npz(raw: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """The arrays of an .npz held in ``raw``, never with pickle; CourseFileError for anything else."""
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise CourseFileError(f"{source}: member {info.filename!r} is not an .npy array")
                name = info.filename[:-4]
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version in ((2, 0), (3, 0)):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise CourseFileError(f"{source}: tensor {name!r} has .npy version {version}")
                    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
                        raise CourseFileError(f"{source}: tensor {name!r} has dtype {dtype} (object, "
                                              "string, structured and complex arrays are refused)")
                    if len(shape) > MAX_NDIM:
                        raise CourseFileError(f"{source}: tensor {name!r} has {len(shape)} dimensions")
                    nbytes = math.prod(shape) * dtype.itemsize
                    total += nbytes
                    if nbytes > MAX_ARRAY_BYTES or total > MAX_TOTAL_BYTES:
                        raise CourseFileError(f"{source}: tensor {name!r} of shape {shape} exceeds the "
                                              f"cap of {MAX_ARRAY_BYTES // MiB} MiB")
                    data = f.read(nbytes)
                if len(data) != nbytes:
                    raise CourseFileError(f"{source}: tensor {name!r} is truncated ({len(data)} of "
                                          f"{nbytes} bytes)")
                arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
                arrays[name] = np.array(arr, dtype=dtype.newbyteorder("="), order="C")
    except CourseFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, NotImplementedError,
            RuntimeError, zlib.error) as exc:
        # Python's zipfile and NumPy's header parser report damaged members with these.
        raise CourseFileError(f"{source}: not a readable .npz of arrays ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    return arrays


def read_course_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a course file (pickle or .npz, told by its first bytes) and what it was."""
    raw = _read_bytes(path)
    if raw.startswith(b"PK"):
        return parse_course_npz(raw, os.fspath(path)), "npz"
    arrays = parse_course_pickle(raw, os.fspath(path))
    return arrays, f"pickle protocol {raw[1]}"


# --- the course-name map and the architecture ----------------------------------------------------
# NOTE(framework:course-names): the course names tensors by position (W1, b1, ... and gamma1,
# beta1 for the BatchNorm after affine 1), the contract by layer (fc1.W, conv1.W, bn1.gamma);
# layouts already agree (affine W (in, out), conv W OIHW, flatten (C, H, W)), so the import is a
# renaming. The course's BatchNorm keeps running_mean/running_var outside ``params``: its files
# have none, and its eps is 1e-6 (``10e-7``), its Dropout scales by 1 - ratio at test time.
COURSE_BN_EPS = 1e-6
COURSE_PAD_SEARCH = "pad 0..filter_size-1, stride 1..filter_size"


@dataclass
class CourseImport:
    """What :func:`import_course_params` found: canonical tensors, the config and every reason."""

    params: dict[str, np.ndarray]
    config: ModelConfig
    network: str  # the course's class: TwoLayerNet, MultiLayerNet, MultiLayerNetExtend, ...
    names: dict[str, str]  # course name -> canonical name
    from_tensors: dict[str, str] = field(default_factory=dict)  # field -> why
    from_options: dict[str, str] = field(default_factory=dict)  # field -> option
    assumed: dict[str, str] = field(default_factory=dict)  # field -> why
    notes: list[str] = field(default_factory=list)


def course_name_map(network: str, n_affine: int = 3, n_bn: int = 0) -> dict[str, str]:
    """Course tensor name -> canonical name for ``network`` (mlp / cnn / deepcnn)."""
    names: dict[str, str] = {}
    if network == "mlp":
        for i in range(1, n_affine + 1):
            names[f"W{i}"], names[f"b{i}"] = f"fc{i}.W", f"fc{i}.b"
        for i in range(1, n_bn + 1):
            names[f"gamma{i}"], names[f"beta{i}"] = f"bn{i}.gamma", f"bn{i}.beta"
    elif network == "cnn":
        for i, layer in enumerate(("conv1", "fc1", "fc2"), 1):
            names[f"W{i}"], names[f"b{i}"] = f"{layer}.W", f"{layer}.b"
    elif network == "deepcnn":
        for i, layer in enumerate([f"conv{j}" for j in range(1, 7)] + ["fc1", "fc2"], 1):
            names[f"W{i}"], names[f"b{i}"] = f"{layer}.W", f"{layer}.b"
    else:
        raise ValueError(f"no course names for {network!r}")
    return names


def _indexed(arrays: Mapping[str, np.ndarray], prefix: str) -> list[int]:
    found = []
    for name in arrays:
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            found.append(int(name[len(prefix):]))
    return sorted(found)


def _expect_consecutive(source: str, prefix: str, found: list[int], n: int) -> None:
    if found != list(range(1, n + 1)):
        raise CourseFileError(f"{source}: expected tensors {prefix}1..{prefix}{n}, found "
                              f"{', '.join(f'{prefix}{i}' for i in found) or 'none'}")


def detect_network(arrays: Mapping[str, np.ndarray], source: str) -> tuple[str, str]:
    """(model, course class) from the course names and shapes."""
    unknown = sorted(n for n in arrays if not any(
        n.startswith(p) and n[len(p):].isdigit() for p in ("W", "b", "gamma", "beta")))
    if unknown:
        raise CourseFileError(f"{source}: tensor {unknown[0]!r} is not a course parameter name "
                              "(W1.., b1.., gamma1.., beta1..)")
    ws = _indexed(arrays, "W")
    if not ws:
        raise CourseFileError(f"{source}: no W1 tensor: not a course network's params")
    _expect_consecutive(source, "W", ws, len(ws))
    _expect_consecutive(source, "b", _indexed(arrays, "b"), len(ws))
    ndims = [np.ndim(arrays[f"W{i}"]) for i in ws]
    n_conv = sum(1 for d in ndims if d == 4)
    if any(d not in (2, 4) for d in ndims) or ndims != sorted(ndims, reverse=True):
        raise CourseFileError(f"{source}: W tensors of ranks {ndims}: not a course network (convolution "
                              "kernels are 4-D and come first, affine weights 2-D)")
    has_bn = bool(_indexed(arrays, "gamma") or _indexed(arrays, "beta"))
    if n_conv == 0:
        if has_bn:
            return "mlp", "MultiLayerNetExtend"
        return "mlp", "TwoLayerNet" if len(ws) == 2 else "MultiLayerNet"
    if has_bn:
        raise CourseFileError(f"{source}: gamma/beta tensors in a convolutional network: no course "
                              "network has those")
    if n_conv == 1 and len(ws) == 3:
        return "cnn", "SimpleConvNet"
    if n_conv == 6 and len(ws) == 8:
        return "deepcnn", "DeepConvNet"
    raise CourseFileError(f"{source}: {n_conv} convolution kernel(s) and {len(ws) - n_conv} affine "
                          "weight(s): neither SimpleConvNet (1 + 2) nor DeepConvNet (6 + 2)")


def _shape(arrays: Mapping[str, np.ndarray], name: str) -> tuple[int, ...]:
    return tuple(np.shape(arrays[name]))


def _conv_fits(input_hw: int, k: int, pad: int, stride: int) -> int:
    side = conv_output(input_hw, k, pad, stride)
    return pool_output(side) if side >= 2 else 0


def simple_conv_candidates(filter_num: int, filter_size: int, fc_in: int, hw: int = 28,
                           ) -> list[tuple[int, int]]:
    """Every (pad, stride) with pad < filter_size, stride <= filter_size that gives ``fc_in``."""
    found = []
    for pad in range(filter_size):
        for stride in range(1, filter_size + 1):
            side = _conv_fits(hw, filter_size, pad, stride)
            if side and filter_num * side * side == fc_in:
                found.append((pad, stride))
    return found


def _deep_fc_in(conv: tuple[tuple[int, int, int, int], ...], hw: int = 28) -> int:
    side = hw
    for i, (_, k, pad, stride) in enumerate(conv, 1):
        side = conv_output(side, k, pad, stride)
        if side < 1:
            return 0
        if i % 2 == 0:
            if side < 2:
                return 0
            side = pool_output(side)
    return conv[-1][0] * side * side


def deep_conv_pad_candidates(kernels: list[tuple[int, int]], fc_in: int) -> list[tuple[int, ...]]:
    """Every pad setting (each < its filter size, strides 1) that gives ``fc_in`` features."""
    found: list[tuple[int, ...]] = []

    def walk(i: int, pads: tuple[int, ...]) -> None:
        if i == len(kernels):
            conv = tuple((fn, k, p, 1) for (fn, k), p in zip(kernels, pads, strict=True))
            if _deep_fc_in(conv) == fc_in:
                found.append(pads)
            return
        for p in range(kernels[i][1]):
            walk(i + 1, (*pads, p))
    walk(0, ())
    return found


def infer_architecture(
    arrays: Mapping[str, np.ndarray], source: str, hints: Mapping[str, object] | None = None,
) -> tuple[str, str, dict[str, object], dict[str, str]]:
    """(model, course class, the hyper-parameters the shapes fix, why each).

    ``hints`` holds what options said about hyper-parameters the shapes leave open (``pad``,
    ``stride`` for the CNN; ``conv_params`` for the deep CNN), used only where shapes cannot tell.
    """
    hints = dict(hints or {})
    model, network = detect_network(arrays, source)
    fixed: dict[str, object] = {}
    why: dict[str, str] = {}
    n = len(_indexed(arrays, "W"))
    if model == "mlp":
        sizes = [_shape(arrays, "W1")[0]] + [_shape(arrays, f"W{i}")[1] for i in range(1, n + 1)]
        for i in range(1, n + 1):
            w = _shape(arrays, f"W{i}")
            if w[0] != sizes[i - 1]:
                raise CourseFileError(f"{source}: W{i} has shape {w}, but W{i - 1} outputs {sizes[i - 1]}")
        bn = _indexed(arrays, "gamma")
        if bn:
            _expect_consecutive(source, "gamma", bn, n - 1)
            _expect_consecutive(source, "beta", _indexed(arrays, "beta"), n - 1)
        fixed = {"input_size": sizes[0], "hidden_sizes": tuple(sizes[1:-1]), "output_size": sizes[-1],
                 "use_batchnorm": bool(bn)}
        why = {"input_size": "W1 rows", "hidden_sizes": f"W1..W{n} shapes", "output_size": f"W{n} columns",
               "use_batchnorm": f"gamma1..gamma{n - 1}, beta1..beta{n - 1} present" if bn
               else "no gamma/beta tensors"}
        return model, network, fixed, why
    w1 = _shape(arrays, "W1")
    if w1[2] != w1[3]:
        raise CourseFileError(f"{source}: W1 has shape {w1}: the course's convolutions are square")
    if model == "cnn":
        fn, c, k = w1[0], w1[1], w1[2]
        fc_in, hidden = _shape(arrays, "W2")
        fixed = {"input_dim": (c, 28, 28), "filter_num": fn, "filter_size": k, "hidden_size": hidden,
                 "output_size": _shape(arrays, "W3")[1]}
        why = {"input_dim": f"{c} channel(s) from W1; 28x28: MNIST", "filter_num": "W1 shape",
               "filter_size": "W1 shape", "hidden_size": "W2 columns", "output_size": "W3 columns"}
        if "pad" in hints or "stride" in hints:
            return model, network, fixed, why  # options decide; the shape check follows
        fits = simple_conv_candidates(fn, k, fc_in)
        if not fits:
            raise CourseFileError(f"{source}: no pad/stride ({COURSE_PAD_SEARCH}) gives W2's {fc_in} "
                                  f"inputs from {fn} filters of {k}x{k}; pass --pad and --stride")
        if len(fits) > 1:
            listed = ", ".join(f"pad {p} stride {s}" for p, s in fits)
            raise CourseFileError(f"{source}: pad and stride are not in the file and several settings "
                                  f"give W2's {fc_in} inputs ({listed}); pass --pad and --stride")
        fixed["pad"], fixed["stride"] = fits[0]
        why["pad"] = why["stride"] = (f"the only setting ({COURSE_PAD_SEARCH}) that gives W2's {fc_in} "
                                      "inputs")
        return model, network, fixed, why
    kernels = []
    c_in = w1[1]
    for i in range(1, 7):
        w = _shape(arrays, f"W{i}")
        if w[1] != c_in or w[2] != w[3]:
            raise CourseFileError(f"{source}: W{i} has shape {w}, expected ({w[0]}, {c_in}, k, k)")
        kernels.append((w[0], w[2]))
        c_in = w[0]
    fc_in, hidden = _shape(arrays, "W7")
    fixed = {"input_dim": (w1[1], 28, 28), "hidden_size": hidden, "output_size": _shape(arrays, "W8")[1]}
    why = {"input_dim": f"{w1[1]} channel(s) from W1; 28x28: MNIST", "hidden_size": "W7 columns",
           "output_size": "W8 columns", "conv_params": "filter_num, filter_size from W1..W6"}
    fixed["conv_kernels"] = tuple(kernels)
    if "conv_params" not in hints:
        book = tuple((fn, k) for fn, k, _, _ in DEEP_CONV_PARAMS)
        fits = deep_conv_pad_candidates(kernels, fc_in)
        example = ""
        if tuple(kernels) == book and len(fits) > 1:
            other = next(p for p in fits if p != tuple(p_ for _, _, p_, _ in DEEP_CONV_PARAMS))
            example = (f" (the book's pads 1,1,1,2,1,1 and e.g. {','.join(map(str, other))} both do, "
                       "and compute differently)")
        if len(fits) != 1:
            raise CourseFileError(
                f"{source}: pad and stride of conv1..conv6 are not in the file and {len(fits)} pad "
                f"settings (stride 1) give W7's {fc_in} inputs{example}; pass --preset deepconvnet "
                "(the book's conv_param_1..6) or --pad P1..P6 --stride S1..S6")
        fixed["conv_params"] = tuple((fn, k, p, 1) for (fn, k), p in zip(kernels, fits[0], strict=True))
        why["conv_params"] = f"the only pad setting with stride 1 that gives W7's {fc_in} inputs"
    return model, network, fixed, why


def to_canonical(arrays: Mapping[str, np.ndarray], config: ModelConfig, source: str,
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rename the course tensors to ``config``'s canonical names and check every shape."""
    if isinstance(config, MLPConfig):
        n = len(config.hidden_sizes) + 1
        names = course_name_map("mlp", n, n - 1 if config.use_batchnorm else 0)
    else:
        names = course_name_map("cnn" if isinstance(config, CNNConfig) else "deepcnn")
    spec = config.param_spec()
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise CourseFileError(f"{source}: tensor {extra[0]!r} has no place in {config.describe()}")
    params: dict[str, np.ndarray] = {}
    for course, canonical in names.items():
        if course not in arrays:
            raise CourseFileError(f"{source}: missing tensor {course!r} ({canonical})")
        value = np.asarray(arrays[course])
        if value.shape != spec[canonical]:
            raise CourseFileError(f"{source}: tensor {course!r} ({canonical}) has shape {value.shape}, "
                                  f"expected {spec[canonical]} for {config.describe()}")
        if value.dtype not in (np.float32, np.float64):
            raise CourseFileError(f"{source}: tensor {course!r} has dtype {value.dtype}, expected float32 "
                                  "or float64")
        params[canonical] = value
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) > 1:
        first = next(iter(names))
        other = next(c for c, n in names.items() if params[n].dtype != params[names[first]].dtype)
        raise CourseFileError(f"{source}: tensor {other!r} has dtype {np.asarray(arrays[other]).dtype}, "
                              f"{first!r} {np.asarray(arrays[first]).dtype} (one dtype for all tensors)")
    return params, names


# --- BatchNorm statistics over the training set ----------------------------------------------------
def bn_stats_from_data(params: Mapping[str, np.ndarray], config: MLPConfig, x_train: np.ndarray,
                       batch_size: int = 100) -> dict[str, np.ndarray]:
    """``bn{i}.running_mean`` and ``bn{i}.running_var`` of an MLP computed over ``x_train``.

    The network runs in train mode over ``x_train`` in order, in batches of ``batch_size``
    (the last one may be smaller): every BatchNorm normalises with its batch's statistics,
    Dropout is in eval mode (deterministic: ``x`` inverted, ``x * (1 - ratio)`` course). For
    BatchNorm layer ``i`` with batch inputs ``x_b`` (``m_b`` rows) over ``B`` batches:

        running_mean = sum_b m_b * mean(x_b) / sum_b m_b                  (the mean over all rows)
        running_var  = sum_b m_b * var(x_b) / sum_b m_b * M / (M - 1),    M = sum_b m_b / B

    with ``var`` the biased batch variance: the population estimate of Ioffe and Szegedy
    (2015, Algorithm 2) that a running average with momentum approaches, stored unbiased as the
    contract's ``running_var`` is.
    """
    dtype = np.asarray(params["fc1.W"]).dtype
    n_hidden = len(config.hidden_sizes)
    sums_mu = [np.zeros(h, dtype=np.float64) for h in config.hidden_sizes]
    sums_var = [np.zeros(h, dtype=np.float64) for h in config.hidden_sizes]
    rows = 0
    batches = 0
    keep = 1.0 if config.dropout_mode == "inverted" else 1.0 - config.dropout_ratio
    for start in range(0, len(x_train), batch_size):
        h = np.asarray(x_train[start:start + batch_size], dtype=dtype)
        m = len(h)
        for i in range(1, n_hidden + 1):
            h = h @ params[f"fc{i}.W"] + params[f"fc{i}.b"]  # (m, hidden_i)
            mu = h.mean(axis=0)
            var = ((h - mu) ** 2).mean(axis=0)  # biased: what normalises in train mode
            sums_mu[i - 1] += m * mu
            sums_var[i - 1] += m * var
            h = params[f"bn{i}.gamma"] * (h - mu) / np.sqrt(var + config.bn_eps) + params[f"bn{i}.beta"]
            h = np.maximum(h, 0) if config.activation == "relu" else 1 / (1 + np.exp(-h))
            if config.dropout_ratio > 0:
                h = h * np.asarray(keep, dtype=dtype)
        rows += m
        batches += 1
    if rows < 2:
        raise CourseFileError("BatchNorm statistics need at least 2 training images")
    mean_m = rows / batches
    stats: dict[str, np.ndarray] = {}
    for i in range(1, n_hidden + 1):
        stats[f"bn{i}.running_mean"] = (sums_mu[i - 1] / rows).astype(dtype)
        stats[f"bn{i}.running_var"] = (sums_var[i - 1] / rows * mean_m / (mean_m - 1)).astype(dtype)
    return stats


# --- the whole import ------------------------------------------------------------------------------
def course_defaults(model: str) -> dict[str, object]:
    """What the course's own code computes where the tensors say nothing (eval-relevant)."""
    if model == "mlp":
        return {"bn_eps": COURSE_BN_EPS, "dropout_mode": "course"}
    if model == "deepcnn":
        return {"dropout_ratio": 0.5, "dropout_mode": "course"}
    return {}


DEFAULT_REASONS = {
    "bn_eps": "the course's BatchNormalization eps 1e-6 (10e-7)",
    "dropout_mode": "the course's Dropout: scale by 1 - ratio at test time",
    "dropout_ratio": "the book's DeepConvNet Dropout(0.5)",
}


def assumed_reason(config: ModelConfig, name: str, defaults: Mapping[str, object]) -> str:
    """Why a hyper-parameter nobody gave has its value, and whether it matters at eval."""
    uses_bn = getattr(config, "use_batchnorm", False)
    ratio = getattr(config, "dropout_ratio", 0.0)
    if name in ("bn_eps", "bn_momentum") and not uses_bn:
        return "unused: no BatchNorm"
    if name == "dropout_mode" and ratio == 0:
        return "unused: no Dropout"
    if name in defaults:
        return DEFAULT_REASONS.get(name, "the course's")
    if name in ("weight_decay", "weight_decay_l1", "bn_momentum"):
        return "default; used only in training"
    if name == "output_activation":
        return "default: softmax of the last affine output (the course's predict: the same argmax)"
    if name == "dropout_ratio":
        return ("no Dropout assumed: a ratio cannot be seen in the tensors; pass --dropout RATIO "
                "if the network had Dropout")
    if name == "dropout_mode":
        return "default; pass --dropout-mode course if it was trained with the course's Dropout"
    if name == "bn_eps":
        return "default; pass --bn-eps if it was trained with another"
    return "default"


def build_course_config(
    model: str, fixed: Mapping[str, object], options: Mapping[str, object], option_names: Mapping[str, str],
    source: str, defaults: Mapping[str, object] | None = None,
) -> tuple[ModelConfig, dict[str, str], dict[str, str]]:
    """The config from the shapes (``fixed``), the options and ``defaults`` (the course's,
    :func:`course_defaults`, unless given), over the model's own defaults.

    Returns (config, from_options, assumed). Raises CourseFileError where an option contradicts
    the tensors or where nothing settles a hyper-parameter that changes the result.
    """
    defaults = course_defaults(model) if defaults is None else dict(defaults)
    fixed = dict(fixed)
    kernels = fixed.pop("conv_kernels", None)
    values: dict[str, object] = {**defaults}
    from_options: dict[str, str] = {}
    known = set(_init_fields(make_config(model)))
    for name, value in options.items():
        if name not in known:
            raise CourseFileError(f"{source}: {option_names.get(name, name)} does not apply to a "
                                  f"{model} model")
        if name in fixed:
            if fixed[name] != value:
                raise CourseFileError(f"{source}: {option_names.get(name, name)} {_fmt(value)} contradicts "
                                      f"the tensors' {name}={_fmt(fixed[name])}")
            continue  # the tensors say so already
        from_options[name] = option_names.get(name, name)
        if name == "conv_params" and kernels is not None:
            got = tuple((fn, k) for fn, k, _, _ in value)  # type: ignore[attr-defined]
            if got != tuple(kernels):
                raise CourseFileError(f"{source}: {option_names.get(name, name)} gives filters "
                                      f"{list(got)}, the tensors W1..W6 hold {list(kernels)}")
            from_options[name] += "; filter_num and filter_size agree with W1..W6"
        values[name] = value
    if model == "mlp" and "activation" not in values:
        raise CourseFileError(
            f"{source}: the activation of a {_fmt(fixed.get('hidden_sizes'))} MLP cannot be seen in its "
            "tensors and sigmoid or ReLU give different results: pass --activation sigmoid or "
            "--activation relu (the book's ch03 network and TwoLayerNet of ch04 use sigmoid, "
            "MultiLayerNet(Extend) relu by default)")
    try:
        config = make_config(model, **{**values, **fixed})
    except ValueError as exc:
        raise CourseFileError(f"{source}: {exc}") from None
    assumed = {f: assumed_reason(config, f, defaults) for f in _init_fields(config)
               if f not in fixed and f not in from_options and f != "input_dim"}
    return config, from_options, assumed


def _init_fields(config: ModelConfig) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(config) if f.init]


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value) if isinstance(value, str) else str(value)


def import_course_params(
    arrays: Mapping[str, np.ndarray], source: str, options: Mapping[str, object] | None = None,
    option_names: Mapping[str, str] | None = None, model: str | None = None,
) -> CourseImport:
    """Canonical tensors and config of a course params dict; see :func:`build_course_config`."""
    options = dict(options or {})
    option_names = dict(option_names or {})
    found_model, network, fixed, why = infer_architecture(arrays, source, options)
    if model is not None and model != found_model:
        raise CourseFileError(f"{source}: holds a {network} ({found_model}), not a {model!r} model")
    config, from_options, assumed = build_course_config(found_model, fixed, options, option_names, source)
    params, names = to_canonical(arrays, config, source)
    from_tensors = {k: v for k, v in why.items() if k in fixed and k != "conv_kernels"}
    return CourseImport(params, config, network, names, from_tensors, from_options, assumed)


def describe_sources(config: ModelConfig, groups: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per hyper-parameter: value, where it came from (group title) and why."""
    lines = []
    for title, group in groups.items():
        for name, reason in group.items():
            lines.append(f"  {title + ':':<17} {name}={_fmt(getattr(config, name))}  ({reason})")
    return lines


def describe_import(imp: CourseImport) -> list[str]:
    """The lines ``convert --from dlfs`` prints: the network, every value and where it came from."""
    lines = [f"course network: {imp.network} -> {imp.config.name}"]
    lines += describe_sources(imp.config, {"from the tensors": imp.from_tensors,
                                           "from options": imp.from_options, "assumed": imp.assumed})
    lines.append("  names: " + ", ".join(f"{c}->{n}" for c, n in imp.names.items()))
    lines += [f"  note: {n}" for n in imp.notes]
    return lines


__all__ = ["ALLOWED_GLOBALS", "COURSE_BN_EPS", "MAX_ARRAY_BYTES", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES",
           "CourseFileError", "CourseImport", "bn_stats_from_data", "build_course_config",
           "course_name_map", "describe_import", "detect_network", "import_course_params",
           "infer_architecture", "parse_course_pickle", "read_course_file", "read_course_npz",
           "read_course_pickle", "simple_conv_candidates", "to_canonical"]
