"""Model configs: the hyper-parameters of each model, and the shapes they imply.

This is the one model table of the project. Each config class owns everything that depends on the
architecture: the input shape and layout, the canonical tensors (:meth:`param_spec`), the layer
order (:meth:`layer_names`), and the class that implements it in every package
(``module``/``class_name``: ``reference_numpy.mlp.MLP``, ``torch_impl.mlp.MLP``, ...). Code outside
this file and the model files never branches on the config's type: it asks the config.

Contract module: the implementations may import it.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

ACTIVATIONS = ("relu", "sigmoid")
OUTPUT_ACTIVATIONS = ("identity", "sigmoid")
DROPOUT_MODES = ("inverted", "course")
BN_TENSORS = ("gamma", "beta", "running_mean", "running_var")


class _KeepNothing(dict):  # type: ignore[type-arg]
    """The activation store of a forward pass nobody asked the activations of: its writes are
    dropped, so ``x = a[name] = layer(x)`` holds no layer's output alive after the next layer ran
    (measured: keeping all of them made torch's DeepCNN inference over 1000 images 8-21% slower,
    the port 1.21x torch's nn.Sequential in one bench run)."""

    def __setitem__(self, key: str, value: object) -> None:
        pass


def activation_store(keep: bool) -> dict[str, Any]:
    """Where ``forward`` writes every layer's output by name: a dict when the caller asked for the
    activations (``return_activations``), otherwise a store that keeps nothing."""
    return {} if keep else _KeepNothing()


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: object, low: float, high: float | None = None,
                 high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    bad = not value >= low or (high is not None and (value >= high if high_open else value > high))
    if bad:
        upper = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")


def _bn_spec(spec: dict[str, tuple[int, ...]], layer: str, n: int) -> None:
    for tensor in BN_TENSORS:
        spec[f"{layer}.{tensor}"] = (n,)


def pool_output(size: int, pool: int = 2, stride: int = 2) -> int:
    """Max-pool output size, floor mode (no padding)."""
    return (size - pool) // stride + 1


def conv_output(size: int, filter_size: int, pad: int, stride: int) -> int:
    """Convolution output size: (size + 2 * pad - filter_size) // stride + 1."""
    return (size + 2 * pad - filter_size) // stride + 1


@dataclass(frozen=True)
class _Config:
    """What every model config shares: regularisation and the model table's class attributes."""

    name: ClassVar[str]
    module: ClassVar[str]  # file name in every implementation package (mlp -> mlp.py)
    class_name: ClassVar[str]  # class name in every implementation package
    course_name: ClassVar[str]  # the course's class this model follows

    def _check_regularisation(self) -> None:
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("weight_decay_l1", self.weight_decay_l1, 0.0)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape in the canonical layout (MLP ``(784,)``, CNNs ``(C, H, W)``)."""
        raise NotImplementedError

    def param_spec(self) -> dict[str, tuple[int, ...]]:
        """Every canonical tensor name and shape, in forward order (parameters and BN state)."""
        raise NotImplementedError

    def layer_names(self) -> list[str]:
        """Every layer's name in forward order (the activation names of ``forward``)."""
        raise NotImplementedError

    def forward_flops(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one example's forward pass, GEMMs and convolutions."""
        raise NotImplementedError

    def dropout_layers(self) -> list[str]:
        return [n for n in self.layer_names() if n.startswith("drop")]

    def describe(self) -> str:
        """One line with every hyper-parameter, for command headers."""
        values = ", ".join(f"{k}={v}" for k, v in to_metadata(self).items())
        return f"{self.name} ({self.course_name}): {values}"


# [rosetta:config-mlp]
@dataclass(frozen=True)
class MLPConfig(_Config):
    """The MLP (course: TwoLayerNet, MultiLayerNet, MultiLayerNetExtend). Default 784-100-100-10, ReLU.

    Blocks ``fc_i, [bn_i], act_i, [drop_i]`` per hidden size, then the last affine layer and the
    ``output_activation`` (``identity``: the logits go into softmax-with-loss; ``sigmoid``: a
    sigmoid first, as a Chainer program in the course notes does).
    """

    name: ClassVar[str] = "mlp"
    module: ClassVar[str] = "mlp"
    class_name: ClassVar[str] = "MLP"
    course_name: ClassVar[str] = "MultiLayerNetExtend"

    input_size: int = 784
    hidden_sizes: tuple[int, ...] = (100, 100)
    output_size: int = 10
    activation: str = "relu"  # "relu" | "sigmoid"
    output_activation: str = "identity"  # "identity" | "sigmoid" (applied before the softmax)
    use_batchnorm: bool = False
    dropout_ratio: float = 0.0  # 0 disables the Dropout layers
    dropout_mode: str = "inverted"  # "inverted" (frameworks) | "course" (scale by 1 - ratio at eval)
    weight_decay: float = 0.0  # L2: loss += 0.5 * weight_decay * sum(W**2) over every W
    weight_decay_l1: float = 0.0  # L1: loss += weight_decay_l1 * sum(|W|) over every W
    bn_momentum: float = 0.9  # running = momentum * running + (1 - momentum) * batch
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if isinstance(self.hidden_sizes, str | bytes) or not hasattr(self.hidden_sizes, "__iter__"):
            raise ValueError(f"hidden_sizes must be a sequence of integers, got {self.hidden_sizes!r}")
        for h in self.hidden_sizes:
            _check_int("hidden_sizes", h, 1)
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        _check_int("input_size", self.input_size, 1)
        _check_int("output_size", self.output_size, 1)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        _check_choice("dropout_mode", self.dropout_mode, DROPOUT_MODES)
        if not isinstance(self.use_batchnorm, bool):
            raise ValueError(f"use_batchnorm must be true or false, got {self.use_batchnorm!r}")
        _check_float("dropout_ratio", self.dropout_ratio, 0.0, 1.0, high_open=True)
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0)
        _check_float("bn_eps", self.bn_eps, 0.0)
        if not self.bn_eps > 0:
            raise ValueError(f"bn_eps must be > 0, got {self.bn_eps}")
        self._check_regularisation()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.input_size,)

    @property
    def sizes(self) -> list[int]:
        return [self.input_size, *self.hidden_sizes, self.output_size]

    def param_spec(self) -> dict[str, tuple[int, ...]]:
        spec: dict[str, tuple[int, ...]] = {}
        sizes = self.sizes
        for i in range(1, len(sizes)):
            spec[f"fc{i}.W"] = (sizes[i - 1], sizes[i])  # (in, out)
            spec[f"fc{i}.b"] = (sizes[i],)
            if self.use_batchnorm and i < len(sizes) - 1:
                _bn_spec(spec, f"bn{i}", sizes[i])
        return spec

    def forward_flops(self) -> int:
        return sum(2 * a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def layer_names(self) -> list[str]:
        names: list[str] = []
        n_affine = len(self.sizes) - 1
        for i in range(1, n_affine):
            names.append(f"fc{i}")
            if self.use_batchnorm:
                names.append(f"bn{i}")
            names.append(f"act{i}")
            if self.dropout_ratio > 0:
                names.append(f"drop{i}")
        names.append(f"fc{n_affine}")
        if self.output_activation != "identity":
            names.append("out_act")
        return names
# [/rosetta:config-mlp]


@dataclass(frozen=True)
class CNNConfig(_Config):
    """The CNN (course: SimpleConvNet with its conv_param)."""

    name: ClassVar[str] = "cnn"
    module: ClassVar[str] = "cnn"
    class_name: ClassVar[str] = "CNN"
    course_name: ClassVar[str] = "SimpleConvNet"

    input_dim: tuple[int, int, int] = (1, 28, 28)
    filter_num: int = 30
    filter_size: int = 5
    pad: int = 0
    stride: int = 1
    hidden_size: int = 100
    output_size: int = 10
    use_batchnorm: bool = False  # BatchNorm (per channel) between conv1 and relu1
    weight_decay: float = 0.0
    weight_decay_l1: float = 0.0
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dim", tuple(self.input_dim))
        if len(self.input_dim) != 3:
            raise ValueError(f"input_dim must be (C, H, W), got {self.input_dim}")
        for d in self.input_dim:
            _check_int("input_dim", d, 1)
        for name in ("filter_num", "filter_size", "stride", "hidden_size", "output_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("pad", self.pad, 0)
        if not isinstance(self.use_batchnorm, bool):
            raise ValueError(f"use_batchnorm must be true or false, got {self.use_batchnorm!r}")
        _check_float("bn_momentum", self.bn_momentum, 0.0, 1.0)
        if not (isinstance(self.bn_eps, int | float) and self.bn_eps > 0):
            raise ValueError(f"bn_eps must be > 0, got {self.bn_eps!r}")
        self._check_regularisation()
        if min(self.conv_output_hw) < 2:
            raise ValueError(f"conv_param leaves no output after conv and 2x2 pooling "
                             f"(conv output {self.conv_output_hw})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input_dim

    @property
    def conv_output_hw(self) -> tuple[int, int]:
        """Spatial size after conv1: (H + 2*pad - filter_size) // stride + 1."""
        _, h, w = self.input_dim
        return (conv_output(h, self.filter_size, self.pad, self.stride),
                conv_output(w, self.filter_size, self.pad, self.stride))

    @property
    def pool_output_size(self) -> int:
        """Number of features after the 2x2 max-pool, flattened in (C, H, W) order."""
        oh, ow = self.conv_output_hw
        return self.filter_num * pool_output(oh) * pool_output(ow)

    def param_spec(self) -> dict[str, tuple[int, ...]]:
        spec: dict[str, tuple[int, ...]] = {}
        k = self.filter_size
        spec["conv1.W"] = (self.filter_num, self.input_dim[0], k, k)  # (out, in, kh, kw)
        spec["conv1.b"] = (self.filter_num,)
        if self.use_batchnorm:
            _bn_spec(spec, "bn1", self.filter_num)
        spec["fc1.W"] = (self.pool_output_size, self.hidden_size)
        spec["fc1.b"] = (self.hidden_size,)
        spec["fc2.W"] = (self.hidden_size, self.output_size)
        spec["fc2.b"] = (self.output_size,)
        return spec

    def forward_flops(self) -> int:
        oh, ow = self.conv_output_hw
        conv = 2 * self.filter_num * oh * ow * self.input_dim[0] * self.filter_size ** 2
        return conv + 2 * self.pool_output_size * self.hidden_size + 2 * self.hidden_size * self.output_size

    def layer_names(self) -> list[str]:
        bn = ["bn1"] if self.use_batchnorm else []
        return ["conv1", *bn, "relu1", "pool1", "flatten", "fc1", "relu2", "fc2"]


# The book's DeepConvNet conv_param_1..6: (filter_num, filter_size, pad, stride).
DEEP_CONV_PARAMS: tuple[tuple[int, int, int, int], ...] = (
    (16, 3, 1, 1), (16, 3, 1, 1), (32, 3, 1, 1), (32, 3, 2, 1), (64, 3, 1, 1), (64, 3, 1, 1))
CONV_PARAM_KEYS = ("filter_num", "filter_size", "pad", "stride")


@dataclass(frozen=True)
class DeepCNNConfig(_Config):
    """The deep CNN (course: DeepConvNet, the book's 99%+ network).

    ``conv1, relu1, conv2, relu2, pool1, conv3, relu3, conv4, relu4, pool2, conv5, relu5, conv6,
    relu6, pool3, flatten, fc1, relu7, drop1, fc2, drop2``; every pool 2x2 stride 2 (floor).
    ``conv_params`` holds the course's ``conv_param_1..6`` as (filter_num, filter_size, pad, stride).
    """

    name: ClassVar[str] = "deepcnn"
    module: ClassVar[str] = "deepcnn"
    class_name: ClassVar[str] = "DeepCNN"
    course_name: ClassVar[str] = "DeepConvNet"

    input_dim: tuple[int, int, int] = (1, 28, 28)
    conv_params: tuple[tuple[int, int, int, int], ...] = DEEP_CONV_PARAMS
    hidden_size: int = 50
    output_size: int = 10
    dropout_ratio: float = 0.5  # both Dropout layers (after relu7 and after fc2); 0 disables them
    dropout_mode: str = "inverted"  # "inverted" | "course" (the book's: scale by 1 - ratio at eval)
    weight_decay: float = 0.0
    weight_decay_l1: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dim", tuple(self.input_dim))
        if len(self.input_dim) != 3:
            raise ValueError(f"input_dim must be (C, H, W), got {self.input_dim}")
        for d in self.input_dim:
            _check_int("input_dim", d, 1)
        params = tuple(tuple(p.values()) if isinstance(p, Mapping) else tuple(p) for p in self.conv_params)
        if len(params) != 6 or any(len(p) != 4 for p in params):
            raise ValueError("conv_params must be six (filter_num, filter_size, pad, stride) entries, "
                             f"got {self.conv_params!r}")
        object.__setattr__(self, "conv_params", params)
        for i, (fn, k, pad, stride) in enumerate(params, 1):
            _check_int(f"conv_params[{i}].filter_num", fn, 1)
            _check_int(f"conv_params[{i}].filter_size", k, 1)
            _check_int(f"conv_params[{i}].pad", pad, 0)
            _check_int(f"conv_params[{i}].stride", stride, 1)
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("output_size", self.output_size, 1)
        _check_float("dropout_ratio", self.dropout_ratio, 0.0, 1.0, high_open=True)
        _check_choice("dropout_mode", self.dropout_mode, DROPOUT_MODES)
        self._check_regularisation()
        self.feature_shapes()  # raises when the convs and pools leave no output

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input_dim

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) after each of conv1..conv6 (pools after conv2, conv4, conv6)."""
        c, h, w = self.input_dim
        shapes = []
        for i, (fn, k, pad, stride) in enumerate(self.conv_params, 1):
            h, w, c = conv_output(h, k, pad, stride), conv_output(w, k, pad, stride), fn
            if min(h, w) < 1:
                raise ValueError(f"conv_params leave no output after conv{i} ({h}x{w})")
            shapes.append((c, h, w))
            if i % 2 == 0:
                if min(h, w) < 2:
                    raise ValueError(f"conv_params leave no output after pool{i // 2} ({h}x{w} before it)")
                h, w = pool_output(h), pool_output(w)
        return shapes

    @property
    def pool_output_size(self) -> int:
        """Features after pool3, flattened in (C, H, W) order (1024 for the book's network)."""
        c, h, w = self.feature_shapes()[-1]
        return c * pool_output(h) * pool_output(w)

    def param_spec(self) -> dict[str, tuple[int, ...]]:
        spec: dict[str, tuple[int, ...]] = {}
        c_in = self.input_dim[0]
        for i, (fn, k, _, _) in enumerate(self.conv_params, 1):
            spec[f"conv{i}.W"] = (fn, c_in, k, k)  # (out, in, kh, kw)
            spec[f"conv{i}.b"] = (fn,)
            c_in = fn
        spec["fc1.W"] = (self.pool_output_size, self.hidden_size)  # (in, out)
        spec["fc1.b"] = (self.hidden_size,)
        spec["fc2.W"] = (self.hidden_size, self.output_size)
        spec["fc2.b"] = (self.output_size,)
        return spec

    def forward_flops(self) -> int:
        flops, c_in = 0, self.input_dim[0]
        for (fn, k, _, _), (_, oh, ow) in zip(self.conv_params, self.feature_shapes(), strict=True):
            flops += 2 * fn * oh * ow * c_in * k * k
            c_in = fn
        return flops + 2 * self.pool_output_size * self.hidden_size + 2 * self.hidden_size * self.output_size

    def layer_names(self) -> list[str]:
        names: list[str] = []
        for i in range(1, 7):
            names += [f"conv{i}", f"relu{i}"]
            if i % 2 == 0:
                names.append(f"pool{i // 2}")
        names += ["flatten", "fc1", "relu7"]
        names += ["drop1"] if self.dropout_ratio > 0 else []
        names.append("fc2")
        names += ["drop2"] if self.dropout_ratio > 0 else []
        return names


ModelConfig = MLPConfig | CNNConfig | DeepCNNConfig
# The model table: name -> config class (which names the class in every package).
MODELS: dict[str, type[_Config]] = {c.name: c for c in (MLPConfig, CNNConfig, DeepCNNConfig)}
MODEL_NAMES = tuple(MODELS)


def config_class(model: str) -> type[_Config]:
    """The config class of ``model``; ValueError listing the choices for an unknown name."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return MODELS[model]


def make_config(model: str, **hparams: object) -> ModelConfig:
    """Build the config of ``model`` from keyword hyper-parameters (unknown ones raise ValueError)."""
    cls = config_class(model)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"model {model!r} has no hyper-parameter {unknown[0]!r} "
                         f"(it has: {', '.join(sorted(known))})")
    return cls(**hparams)  # type: ignore[return-value]


def replace(config: ModelConfig, **changes: Any) -> ModelConfig:
    """A copy of ``config`` with ``changes`` (validated like a new config)."""
    return dataclasses.replace(config, **changes)


def _plain(value: object) -> object:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def to_metadata(config: ModelConfig) -> dict[str, object]:
    """The config as plain JSON-able values (stored in the weight file's metadata)."""
    return {f.name: _plain(getattr(config, f.name)) for f in fields(config) if f.init}


def from_metadata(model: str, hparams: Mapping[str, object]) -> ModelConfig:
    """Inverse of :func:`to_metadata`."""
    return make_config(model, **dict(hparams))


def non_default_fields(config: ModelConfig) -> dict[str, object]:
    """The hyper-parameters that differ from the model's defaults."""
    default = type(config)()
    return {f.name: getattr(config, f.name) for f in fields(config)
            if f.init and getattr(config, f.name) != getattr(default, f.name)}


__all__ = ["ACTIVATIONS", "CONV_PARAM_KEYS", "DEEP_CONV_PARAMS", "DROPOUT_MODES", "MODELS", "MODEL_NAMES",
           "OUTPUT_ACTIVATIONS", "CNNConfig", "DeepCNNConfig", "MLPConfig", "ModelConfig", "config_class",
           "conv_output", "from_metadata", "make_config", "non_default_fields", "pool_output",
           "replace", "to_metadata"]
