"""The framework table: what the project knows about each implementation, in one place.

Every command, ``convert``, ``bench``, ``site``, ``env`` and the tests read this table (and the model
table, :data:`rosetta.configs.MODELS`); nothing else lists frameworks. Adding a framework is one
row here plus its package and adapter (docs/conventions.md, "Adding a framework").

Harness module: the implementations never import it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import types
from collections.abc import Iterator
from dataclasses import dataclass

from rosetta.configs import MODEL_NAMES, MODELS, ModelConfig, config_class

# The names every implementation package exports (docs/conventions.md, "The package surface"),
# besides one class per model of the model table.
SURFACE_FUNCTIONS = ("OPTIMIZERS", "make_optimizer", "set_lr", "loss_fn", "loss_and_grads", "train_step",
                     "load_canonical", "dump_canonical", "save_native", "load_native", "set_dropout_masks")


@dataclass(frozen=True)
class Framework:
    """One implementation: its package, the framework module it needs, and how users name it."""

    name: str  # the one name in every command (--framework torch)
    title: str  # for reports and the page
    package: str  # the implementation package (torch_impl)
    module: str  # the framework's Python module that must import (torch)
    extra: str | None  # the pip extra that installs it (mnist-rosetta[torch])
    adapter: str  # "module:Class" of its rosetta.adapters class
    native_format: str  # the name of its native checkpoint format (convert --to / --from)
    native_suffix: str  # the file suffix that format needs
    native_description: str  # what that checkpoint is and how the framework itself loads it
    aliases: tuple[str, ...] = ()  # other names users type (keras, tensorflow)

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE


REFERENCE = "numpy"
FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("numpy", "NumPy (course reference)", "reference_numpy", "numpy", None,
              "rosetta.adapters.numpy_adapter:NumpyAdapter", "npz", ".npz",
              "np.savez of the canonical arrays by canonical name; np.load(path, allow_pickle=False)",
              aliases=("reference", "reference_numpy")),
    Framework("torch", "PyTorch", "torch_impl", "torch", "torch",
              "rosetta.adapters.torch_adapter:TorchAdapter", "torch", ".safetensors",
              "state_dict names and layouts as safetensors; "
              "model.load_state_dict(safetensors.torch.load_file(path))",
              aliases=("pytorch",)),
    Framework("tf", "TensorFlow / Keras", "tf_impl", "tensorflow", "tf",
              "rosetta.adapters.tf_adapter:TFAdapter", "keras", ".weights.h5",
              "Keras model.save_weights; model.load_weights(path)",
              aliases=("keras", "tensorflow")),
    Framework("chainer", "Chainer", "chainer_impl", "chainer", "chainer",
              "rosetta.adapters.chainer_adapter:ChainerAdapter", "chainer", ".npz",
              "chainer.serializers.save_npz; chainer_impl.load_native(model, path) "
              "(Chainer's own load_npz enables pickle)"),
)}
FRAMEWORK_NAMES = tuple(FRAMEWORKS)
PORTS = tuple(n for n in FRAMEWORKS if n != REFERENCE)
NATIVE_FORMATS = {f.native_format: f for f in FRAMEWORKS.values()}
_ALIASES = {alias: f.name for f in FRAMEWORKS.values() for alias in (f.name, *f.aliases)}
# Format names users also type: the framework's own names (convert --to tf is --to keras).
_FORMAT_ALIASES = {**{alias: f.native_format for f in FRAMEWORKS.values() for alias in (f.name, *f.aliases)},
                   **{fmt: fmt for fmt in NATIVE_FORMATS}}


class FrameworkNotInstalled(ImportError):
    """The framework's package cannot be imported; the message names the extra to install."""

    def __init__(self, framework: str, cause: BaseException):
        entry = FRAMEWORKS[framework]
        super().__init__(
            f"framework {framework!r} is not installed ({type(cause).__name__}: {cause}); "
            f"install it with: pip install 'mnist-rosetta[{entry.extra}]' (or bash .ci/setup for all four)")
        self.framework = framework
        self.extra = entry.extra

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        # Pickled as its message: a parity worker process raises it, the calling process reports it.
        return _framework_not_installed, (self.framework, str(self))


def _framework_not_installed(framework: str, message: str) -> FrameworkNotInstalled:
    exc = FrameworkNotInstalled.__new__(FrameworkNotInstalled)
    ImportError.__init__(exc, message)
    exc.framework, exc.extra = framework, FRAMEWORKS[framework].extra
    return exc


def describe_aliases(names: tuple[str, ...] = FRAMEWORK_NAMES) -> str:
    """The aliases of ``names``, grouped by the name they stand for ("pytorch = torch; ...")."""
    return "; ".join(f"{', '.join(FRAMEWORKS[n].aliases)} = {n}" for n in names if FRAMEWORKS[n].aliases)


def describe_names(names: tuple[str, ...] = FRAMEWORK_NAMES, extra: tuple[str, ...] = ()) -> str:
    """``names`` (canonical) and ``extra`` (``all``), then their aliases: the one text every
    unknown-name message and option help shows, so that they never disagree."""
    aliases = describe_aliases(names)
    return ", ".join((*names, *extra)) + (f" (aliases: {aliases})" if aliases else "")


def resolve_framework(name: str) -> str:
    """The framework's one name for ``name`` or an alias, any case (``keras`` -> ``tf``); ValueError
    naming the accepted names otherwise. Every option that takes a framework goes through this."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown framework {name!r}; choose one of: {describe_names()}")
    return _ALIASES[key]


def framework(name: str) -> Framework:
    """The table row of ``name`` (an alias works too)."""
    return FRAMEWORKS[resolve_framework(name)]


def format_name(native_format: str) -> str:
    """The name the command line shows for a native format: its framework's (``keras`` -> ``tf``).
    The format's own name stays what the files record (their ``native`` field)."""
    return NATIVE_FORMATS[native_format].name


def describe_formats() -> str:
    """The format names ``convert --to/--from`` shows: each framework's, with what else selects it."""
    parts = []
    for f in FRAMEWORKS.values():
        others = list(dict.fromkeys(a for a in (f.native_format, *f.aliases) if a != f.name))
        parts.append(f"{f.name} (*{f.native_suffix}" + (f"; also {', '.join(others)})" if others else ")"))
    return ", ".join(parts)


def resolve_format(name: str) -> str:
    """A native format from a framework name, an alias or a format name (``tf``, ``keras`` ->
    ``keras``; ``numpy``, ``npz`` -> ``npz``)."""
    key = str(name).strip().lower()
    if key not in _FORMAT_ALIASES:
        raise ValueError(f"unknown format {name!r}; choose one of: {describe_formats()}")
    return _FORMAT_ALIASES[key]


# What TensorFlow's C++ runtime writes to the process's stderr while it loads, whatever
# TF_CPP_MIN_LOG_LEVEL says (absl logs it before its flags are read): start-up notices, twice per
# process. Every other line written during an import is passed on.
IMPORT_NOISE = (re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
                re.compile(r"^I\d{4} [^\]]*\] oneDNN custom operations are on"))


@contextlib.contextmanager
def quiet_native_start_up() -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 meanwhile, then pass it on to
    ``sys.stderr`` without the lines of IMPORT_NOISE."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(p.search(line) for p in IMPORT_NOISE)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def package(name: str) -> types.ModuleType:
    """The implementation package of framework ``name``, imported; FrameworkNotInstalled when the
    framework itself is missing (an error inside the project's own code propagates)."""
    entry = framework(name)
    find_installed(entry.name)
    try:
        with quiet_native_start_up():
            return importlib.import_module(entry.package)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in (entry.package, "rosetta"):
            raise
        raise FrameworkNotInstalled(entry.name, exc) from exc


def find_installed(name: str) -> None:
    """FrameworkNotInstalled unless the framework's module is found on the path: looked up, not
    imported (an install that fails to import is found by :func:`package`)."""
    entry = framework(name)
    if importlib.util.find_spec(entry.module) is None:
        raise FrameworkNotInstalled(entry.name, ModuleNotFoundError(f"No module named {entry.module!r}"))


def is_installed(name: str) -> bool:
    try:
        package(name)
    except FrameworkNotInstalled:
        return False
    return True


def model_class(name: str, config: ModelConfig | str) -> type:
    """The class implementing ``config``'s model in framework ``name`` (``torch_impl.CNN``)."""
    cls = config_class(config) if isinstance(config, str) else type(config)
    return getattr(package(name), cls.class_name)


def adapter_class(name: str) -> type:
    """The rosetta.adapters class of framework ``name``; FrameworkNotInstalled when it is missing."""
    entry = framework(name)
    package(entry.name)
    module, _, cls = entry.adapter.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["FRAMEWORKS", "FRAMEWORK_NAMES", "MODELS", "MODEL_NAMES", "NATIVE_FORMATS", "PORTS", "REFERENCE",
           "SURFACE_FUNCTIONS", "Framework", "FrameworkNotInstalled", "adapter_class", "describe_aliases",
           "describe_formats", "describe_names", "find_installed", "format_name", "framework", "is_installed",
           "model_class", "package",
           "resolve_format", "resolve_framework"]
