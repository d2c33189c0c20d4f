"""Driving a ``torch.nn.Module``: forward hooks on every leaf module, and a TorchFunctionMode for
the functional calls a port makes outside its modules (``F.relu``, ``F.max_pool2d``, ``x.view``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.overrides import TorchFunctionMode

from rosetta.check.model import Event, ParamLayer, Pass, Slot, kind_from_name

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSS_ATTRS = ("last_layer", "lastLayer", "loss_fn", "criterion", "lossfun", "loss_function")
MODULE_KINDS: list[tuple[type, str]] = [
    (nn.Linear, "affine"),
    (nn.Conv2d, "conv"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    (nn.ReLU, "relu"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.Identity, "identity"),
    (nn.Softmax, "softmax"),
    (nn.LogSoftmax, "log_softmax"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.MaxPool2d, "pool"),
    (nn.AvgPool2d, "avgpool"),
    (nn.Flatten, "flatten"),
    (nn.modules.dropout._DropoutNd, "dropout"),
]
FUNCTION_KINDS = {
    "relu": "relu",
    "relu_": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "leaky_relu": "leaky_relu",
    "max_pool2d": "pool",
    "avg_pool2d": "avgpool",
    "dropout": "dropout",
    "flatten": "flatten",
    "view": "layout",
    "reshape": "layout",
    "permute": "layout",
    "transpose": "layout",
    "contiguous": "layout",
}


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def module_kind(m: nn.Module) -> str:
    for cls, kind in MODULE_KINDS:
        if isinstance(m, cls):
            return kind
    params = dict(m.named_parameters(recurse=False))
    if any(p.ndim == 4 for p in params.values()):
        return "conv"
    if any(p.ndim == 2 for p in params.values()):
        return "affine"
    return kind_from_name(type(m).__name__)


def _pair(v: Any) -> int:
    return int(v[0] if isinstance(v, tuple | list) else v)


def module_attrs(m: nn.Module, kind: str) -> dict[str, object]:
    if kind == "conv" and isinstance(m, nn.Conv2d):
        return {
            "stride": _pair(m.stride),
            "pad": _pair(m.padding) if not isinstance(m.padding, str) else m.padding,
        }
    if kind in ("pool", "avgpool") and isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        return {
            "size": _pair(m.kernel_size),
            "stride": _pair(m.stride or m.kernel_size),
            "pad": _pair(m.padding),
            "ceil": bool(m.ceil_mode),
        }
    if kind == "batchnorm" and isinstance(m, nn.modules.batchnorm._BatchNorm):
        return {"eps": float(m.eps), "momentum": 1.0 - float(m.momentum or 0.0)}
    if kind == "dropout" and hasattr(m, "p"):
        return {"ratio": float(m.p)}
    return {}


def _tensor_slot(owner: Any, attr: str, role: str, label: str, how: str = "") -> Slot:
    def get() -> np.ndarray:
        return _np(getattr(owner, attr))

    def set_(a: np.ndarray) -> None:
        with torch.no_grad():
            getattr(owner, attr).copy_(torch.from_numpy(np.ascontiguousarray(a)))

    def grad() -> np.ndarray | None:
        g = getattr(owner, attr).grad
        return None if g is None else _np(g)

    return Slot(role, f"{label}.{attr}", get, set_, grad, how)


class TorchDriver:
    framework = "torch"

    def __init__(self, model: nn.Module, dtype: str, loss_fn: Any = None) -> None:
        self.dtype = dtype
        self.model = model.to(DTYPES[dtype])
        self.names = {m: (n or type(model).__name__) for n, m in model.named_modules()}
        self.leaves = [m for m in model.modules() if not list(m.children())]
        self.train_arg = "train" in inspect.signature(model.forward).parameters
        self.loss_fn = loss_fn or next(
            (getattr(model, a) for a in LOSS_ATTRS if callable(getattr(model, a, None))), None
        )
        self.param_layers: list[ParamLayer] = []
        self.plid: dict[int, int] = {}

    def _label(self, m: nn.Module) -> str:
        return f"{self.names.get(m, '?')} ({type(m).__name__})"

    def _param_layer(self, m: nn.Module, kind: str) -> ParamLayer:
        label = self.names.get(m, "?")
        slots: dict[str, Slot] = {}
        params = dict(m.named_parameters(recurse=False))
        if kind == "batchnorm" and isinstance(m, nn.modules.batchnorm._BatchNorm):
            slots["gamma"] = _tensor_slot(m, "weight", "gamma", label)
            slots["beta"] = _tensor_slot(m, "bias", "beta", label)
            slots["running_mean"] = _tensor_slot(m, "running_mean", "running_mean", label)
            slots["running_var"] = _tensor_slot(m, "running_var", "running_var", label)
        else:
            ndim = 2 if kind == "affine" else 4
            w = next((n for n, p in params.items() if p.ndim == ndim), None)
            b = next((n for n, p in params.items() if p.ndim == 1), None)
            # NOTE(framework:dense-layout): nn.Linear's weight is (out, in), the course's W (in, out).
            if w is not None:
                slots["W"] = _tensor_slot(m, w, "W", label, "transposed" if kind == "affine" else "")
            if b is not None:
                slots["b"] = _tensor_slot(m, b, "b", label)
        return ParamLayer(label, kind, slots, module_attrs(m, kind), m)

    def build(self, x: np.ndarray) -> Pass:
        return self.run(x, None, train=False, backward=False)

    def run(
        self, x: np.ndarray, t: np.ndarray | None, train: bool, masks: Any = None, backward: bool = True
    ) -> Pass:
        del masks  # the port draws its own masks; the reference gets them
        events: list[Event] = []
        depth = [0]
        driver = self

        def pre(m: nn.Module, inputs: Any) -> None:
            depth[0] += 1

        def post(m: nn.Module, inputs: Any, output: Any) -> None:
            depth[0] -= 1
            if depth[0] == 0 and isinstance(output, torch.Tensor):
                kind = module_kind(m)
                plid = None
                if (
                    kind in ("affine", "conv", "batchnorm")
                    and (m.weight if hasattr(m, "weight") else True) is not None
                ):
                    if id(m) not in driver.plid:
                        driver.plid[id(m)] = len(driver.param_layers)
                        driver.param_layers.append(driver._param_layer(m, kind))
                    plid = driver.plid[id(m)]
                inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
                events.append(
                    Event(
                        driver._label(m),
                        kind,
                        _np(output),
                        None if inp is None else _np(inp),
                        module_attrs(m, kind),
                        plid,
                        str(output.dtype).replace("torch.", ""),
                    )
                )

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
                out = func(*args, **(kwargs or {}))
                name = getattr(func, "__name__", "")
                if (
                    depth[0] == 0
                    and name in FUNCTION_KINDS
                    and isinstance(out, torch.Tensor)
                    and out.is_floating_point()
                ):
                    kind = FUNCTION_KINDS[name]
                    attrs: dict[str, object] = {}
                    if kind in ("pool", "avgpool"):
                        attrs = _pool_call_attrs(args, kwargs or {})
                    src = args[0] if args and isinstance(args[0], torch.Tensor) else None
                    events.append(
                        Event(
                            f"{name}()",
                            kind,
                            _np(out),
                            None if src is None else _np(src),
                            attrs,
                            None,
                            str(out.dtype).replace("torch.", ""),
                        )
                    )
                return out

        handles = []
        for m in self.leaves:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        xt = torch.tensor(np.asarray(x), dtype=DTYPES[self.dtype], requires_grad=backward and t is not None)
        result = Pass(events)
        self.model.train(train)
        try:
            with Mode():
                y = self.model(xt, **({"train": train} if self.train_arg else {}))
        except Exception as exc:  # noqa: BLE001 - a port that fails is reported, not raised
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        finally:
            for h in handles:
                h.remove()
            self.model.train(False)
        result.logits = _np(y)
        result.masks = [(e.out != 0) for e in events if e.kind == "dropout" and train]
        if t is None:
            return result
        tt = torch.tensor(np.asarray(t), dtype=torch.long)
        try:
            loss = self.loss_fn(y, tt) if self.loss_fn is not None else F.cross_entropy(y, tt)
        except Exception as exc:  # noqa: BLE001
            result.error = f"the loss failed: {type(exc).__name__}: {exc}"
            return result
        result.loss = float(loss.detach())
        if not backward:
            return result
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        result.dx = _np(xt.grad)
        for plid, pl in enumerate(self.param_layers):
            for role, slot in pl.slots.items():
                g = slot.grad()
                if g is not None:
                    result.grads[(plid, role)] = slot.from_native(g)
        return result

    def make_optimizer(self, name: str, lr: float) -> Any:
        cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "momentum": torch.optim.SGD}[name]
        kw = {"momentum": 0.9} if name == "momentum" else {}
        return cls(self.model.parameters(), lr=lr, **kw)

    def step(self, optimizer: Any) -> None:
        optimizer.step()


def _pool_call_attrs(args: tuple, kwargs: dict) -> dict[str, object]:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    bound = dict(zip(names, args, strict=False)) | kwargs
    k = _pair(bound.get("kernel_size", 2))
    s = bound.get("stride") or k
    return {
        "size": k,
        "stride": _pair(s),
        "pad": _pair(bound.get("padding", 0)),
        "ceil": bool(bound.get("ceil_mode", False)),
    }
