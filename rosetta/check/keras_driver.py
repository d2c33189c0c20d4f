"""Driving a ``keras.Model`` eagerly: ``Layer.__call__`` is wrapped for the duration of a pass so
every leaf layer's output is kept, and the ``keras.ops`` / ``tf.nn`` functions a model's ``call``
uses directly are wrapped the same way. Tensors are NHWC; the comparison transposes to NCHW."""

from __future__ import annotations

import inspect
from contextlib import ExitStack, contextmanager
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rosetta.check.model import Event, ParamLayer, Pass, Slot, kind_from_name

LOSS_ATTRS = ("last_layer", "lastLayer", "loss_fn", "criterion", "lossfun", "loss_function")
LAYER_KINDS: list[tuple[type, str]] = [
    (keras.layers.Dense, "affine"),
    (keras.layers.Conv2D, "conv"),
    (keras.layers.BatchNormalization, "batchnorm"),
    (keras.layers.ReLU, "relu"),
    (keras.layers.Softmax, "softmax"),
    (keras.layers.LeakyReLU, "leaky_relu"),
    (keras.layers.MaxPooling2D, "pool"),
    (keras.layers.AveragePooling2D, "avgpool"),
    (keras.layers.Flatten, "flatten"),
    (keras.layers.Reshape, "layout"),
    (keras.layers.Permute, "layout"),
    (keras.layers.Dropout, "dropout"),
    (keras.layers.Identity, "identity"),
    (keras.layers.ZeroPadding2D, "layout"),
]
OPS = (
    [
        (keras.ops, n)
        for n in (
            "relu",
            "sigmoid",
            "tanh",
            "softmax",
            "log_softmax",
            "transpose",
            "reshape",
            "max_pool",
            "average_pool",
            "pad",
            "leaky_relu",
        )
    ]
    + [(tf.nn, n) for n in ("relu", "sigmoid", "softmax", "max_pool2d", "tanh")]
    + [(tf, n) for n in ("transpose", "reshape", "sigmoid", "tanh")]
)


def _np(t: Any) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(t))


def _dtype_name(t: Any) -> str:
    return str(getattr(t.dtype, "name", t.dtype))


def _activation_name(fn: Any) -> str:
    return getattr(fn, "__name__", str(fn))


def leaf_layers(model: keras.Layer) -> list[keras.Layer]:
    found: list[keras.Layer] = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not list(layer._flatten_layers(include_self=False, recursive=False)):
            found.append(layer)
    return found


def layer_kind(layer: keras.Layer) -> str:
    for cls, kind in LAYER_KINDS:
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, keras.layers.Activation):
        return kind_from_name(_activation_name(layer.activation))
    shapes = [tuple(w.shape) for w in layer.weights]
    names = [w.name for w in layer.weights]
    if any("gamma" in n for n in names):
        return "batchnorm"
    if any(len(s) == 4 for s in shapes):
        return "conv"
    if any(len(s) == 2 for s in shapes):
        return "affine"
    return kind_from_name(type(layer).__name__)


def layer_attrs(layer: keras.Layer, kind: str) -> dict[str, object]:
    if kind == "conv" and isinstance(layer, keras.layers.Conv2D):
        return {"stride": int(layer.strides[0]), "pad": layer.padding}
    if kind in ("pool", "avgpool") and hasattr(layer, "pool_size"):
        return {
            "size": int(layer.pool_size[0]),
            "stride": int((layer.strides or layer.pool_size)[0]),
            "pad": 0,
            "ceil": layer.padding == "same",
        }
    if kind == "batchnorm":
        if isinstance(layer, keras.layers.BatchNormalization):
            return {"eps": float(layer.epsilon), "momentum": float(layer.momentum)}
        return {"eps": float(getattr(layer, "eps", 1e-5)), "momentum": float(getattr(layer, "momentum", 0.9))}
    if kind == "dropout":
        return {"ratio": float(getattr(layer, "rate", getattr(layer, "ratio", 0.5)))}
    return {}


def _var_slot(var: Any, role: str, label: str, how: str = "") -> Slot:
    def get() -> np.ndarray:
        return _np(var)

    def set_(a: np.ndarray) -> None:
        var.assign(np.asarray(a, dtype=var.dtype))

    return Slot(role, f"{label}.{var.name}", get, set_, lambda: None, how)


class KerasDriver:
    framework = "keras"

    def __init__(self, model: keras.Layer, dtype: str, loss_fn: Any = None) -> None:
        self.model = model
        self.dtype = dtype
        self.leaves: list[keras.Layer] = []
        self.loss_fn = loss_fn or next(
            (getattr(model, a) for a in LOSS_ATTRS if callable(getattr(model, a, None))), None
        )
        if self.loss_fn is None and isinstance(getattr(model, "loss", None), str | keras.losses.Loss):
            self.loss_fn = keras.losses.get(model.loss)
        self.param_layers: list[ParamLayer] = []
        self.plid: dict[int, int] = {}
        self.var_of: dict[tuple[int, str], Any] = {}
        self.note = ""

    def _param_layer(self, layer: keras.Layer, kind: str, plid: int) -> ParamLayer:
        label = layer.name
        slots: dict[str, Slot] = {}
        ws = list(layer.weights)
        if kind == "batchnorm":
            by = {}
            for w in ws:
                n = w.name.split("/")[-1]
                role = (
                    "gamma"
                    if "gamma" in n
                    else "beta"
                    if "beta" in n
                    else "running_mean"
                    if "mean" in n
                    else "running_var"
                    if "var" in n
                    else None
                )
                if role:
                    by[role] = w
            for role, w in by.items():
                slots[role] = _var_slot(w, role, label)
        else:
            ndim = 2 if kind == "affine" else 4
            w = next((v for v in ws if len(v.shape) == ndim), None)
            b = next((v for v in ws if len(v.shape) == 1), None)
            # NOTE(framework:conv-layout): Keras conv kernels are HWIO, the course's W is OIHW.
            if w is not None:
                slots["W"] = _var_slot(w, "W", label, "HWIO" if kind == "conv" else "")
            if b is not None:
                slots["b"] = _var_slot(b, "b", label)
        for role, s in slots.items():
            self.var_of[(plid, role)] = next(v for v in ws if f"{label}.{v.name}" == s.name)
        return ParamLayer(label, kind, slots, layer_attrs(layer, kind), layer)

    def build(self, x: np.ndarray) -> Pass:
        result = self.run(x, None, train=False, backward=False)
        self.leaves = leaf_layers(self.model)
        dtypes = {v.dtype for v in self.model.weights if "float" in str(v.dtype)}
        if self.dtype == "float64" and dtypes == {"float32"}:
            self.note = (
                "the Keras model's variables are float32: checked at float32 "
                "(build the model with dtype='float64' to check at float64)"
            )
            self.dtype = "float32"
        return result

    @contextmanager
    def _tracing(self, events: list[Event]):  # noqa: ANN202
        depth = [0]
        driver = self
        original = keras.layers.Layer.__call__
        model = self.model

        def call(layer: keras.Layer, *args: Any, **kwargs: Any) -> Any:
            if layer is model or list(layer._flatten_layers(include_self=False, recursive=False)):
                return original(layer, *args, **kwargs)
            depth[0] += 1
            split = None
            act = getattr(layer, "activation", None)
            if (
                act is not None
                and not isinstance(layer, keras.layers.Activation)
                and _activation_name(act) not in ("linear", "identity")
            ):
                # Dense(..., activation="relu"): the affine part and the activation are two layers
                # of the course, so they are two events here.
                split = act
                layer.activation = keras.activations.linear
            try:
                out = original(layer, *args, **kwargs)
            finally:
                if split is not None:
                    layer.activation = split
                depth[0] -= 1
            if depth[0] == 0 and not keras.backend.is_keras_tensor(out):
                kind = layer_kind(layer)
                plid = None
                if kind in ("affine", "conv", "batchnorm"):
                    if id(layer) not in driver.plid:
                        driver.plid[id(layer)] = len(driver.param_layers)
                        driver.param_layers.append(driver._param_layer(layer, kind, driver.plid[id(layer)]))
                    plid = driver.plid[id(layer)]
                src = args[0] if args else None
                events.append(
                    Event(
                        f"{layer.name} ({type(layer).__name__})",
                        kind,
                        _np(out),
                        None if src is None else _np(src),
                        layer_attrs(layer, kind),
                        plid,
                        _dtype_name(out),
                    )
                )
                if split is not None:
                    pre = out
                    depth[0] += 1
                    try:
                        out = split(pre)
                    finally:
                        depth[0] -= 1
                    events.append(
                        Event(
                            f"{layer.name} (activation={_activation_name(split)})",
                            kind_from_name(_activation_name(split)),
                            _np(out),
                            _np(pre),
                            {},
                            None,
                            _dtype_name(out),
                        )
                    )
            elif split is not None:
                depth[0] += 1
                try:
                    out = split(out)
                finally:
                    depth[0] -= 1
            return out

        def wrap(fn: Any, name: str) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if depth[0] > 0 or (args and keras.backend.is_keras_tensor(args[0])):
                    return fn(*args, **kwargs)
                depth[0] += 1
                try:
                    out = fn(*args, **kwargs)
                finally:
                    depth[0] -= 1
                kind = kind_from_name(name)
                if kind == "other":
                    kind = "layout"
                events.append(
                    Event(
                        f"{name}()",
                        kind,
                        _np(out),
                        _np(args[0]) if args else None,
                        {},
                        None,
                        _dtype_name(out),
                    )
                )
                return out

            return wrapper

        saved = [(mod, n, getattr(mod, n)) for mod, n in OPS if hasattr(mod, n)]
        keras.layers.Layer.__call__ = call
        for mod, n, fn in saved:
            setattr(mod, n, wrap(fn, n))
        try:
            with ExitStack():
                yield
        finally:
            keras.layers.Layer.__call__ = original
            for mod, n, fn in saved:
                setattr(mod, n, fn)

    def _loss(self, y: Any, t: Any) -> Any:
        fn = self.loss_fn
        if fn is None:
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y))
        try:
            first = next(iter(inspect.signature(fn).parameters))
        except (TypeError, ValueError, StopIteration):
            first = ""
        if isinstance(fn, keras.losses.Loss) or first in ("y_true", "target", "labels"):
            return fn(t, y)
        return fn(y, t)

    def run(
        self, x: np.ndarray, t: np.ndarray | None, train: bool, masks: Any = None, backward: bool = True
    ) -> Pass:
        del masks
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        xt = tf.constant(x)
        events: list[Event] = []
        result = Pass(events)
        try:
            with tf.GradientTape() as tape:
                tape.watch(xt)
                with self._tracing(events):
                    y = self.model(xt, training=train)
                loss = None if t is None else self._loss(y, tf.constant(np.asarray(t), dtype=tf.int64))
        except Exception as exc:  # noqa: BLE001 - a port that fails is reported, not raised
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        result.logits = _np(y)
        result.masks = [(e.out != 0) for e in events if e.kind == "dropout" and train]
        if loss is None:
            return result
        result.loss = float(_np(loss))
        if not backward:
            return result
        keys = list(self.var_of)
        grads = tape.gradient(loss, [self.var_of[k] for k in keys] + [xt])
        for key, g in zip(keys, grads[:-1], strict=True):
            if g is not None and key[1] in ("W", "b", "gamma", "beta"):
                result.grads[key] = self.param_layers[key[0]].slots[key[1]].from_native(_np(g))
        dx = _np(grads[-1])
        result.dx = dx.transpose(0, 3, 1, 2) if dx.ndim == 4 else dx
        self._last_grads = (keys, grads[:-1])
        return result

    def make_optimizer(self, name: str, lr: float) -> Any:
        if name == "adam":
            return keras.optimizers.Adam(learning_rate=lr)
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9 if name == "momentum" else 0.0)

    def step(self, optimizer: Any) -> None:
        keys, grads = self._last_grads
        pairs = [
            (g, self.var_of[k])
            for k, g in zip(keys, grads, strict=True)
            if g is not None and k[1] in ("W", "b", "gamma", "beta")
        ]
        optimizer.apply_gradients(pairs)
