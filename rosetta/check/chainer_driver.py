"""Driving a ``chainer.Chain``: a link hook keeps every leaf link's output, and
``FunctionNode.apply`` is wrapped for the duration of a pass so that the functions a model calls
itself (``F.relu``, ``F.max_pooling_2d``, ``F.reshape``) are kept too."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any

import numpy as np

from chainer_impl.compat import import_chainer
from rosetta.check.model import Event, ParamLayer, Pass, Slot, kind_from_name

chainer = import_chainer()

import chainer.functions as F  # noqa: E402, N812
import chainer.links as L  # noqa: E402, N812

LOSS_ATTRS = ("last_layer", "lastLayer", "loss_fn", "criterion", "lossfun", "loss_function")
LINK_KINDS: list[tuple[type, str]] = [
    (L.Linear, "affine"),
    (L.Convolution2D, "conv"),
    (L.BatchNormalization, "batchnorm"),
]


def _np(v: Any) -> np.ndarray:
    return np.array(v.array if isinstance(v, chainer.Variable) else v)


def link_kind(link: chainer.Link) -> str:
    for cls, kind in LINK_KINDS:
        if isinstance(link, cls):
            return kind
    shapes = [p.shape for p in link.params(include_uninit=False)]
    if any(len(s) == 4 for s in shapes):
        return "conv"
    if any(len(s) == 2 for s in shapes):
        return "affine"
    return kind_from_name(type(link).__name__)


def link_attrs(link: chainer.Link, kind: str) -> dict[str, object]:
    if kind == "conv" and isinstance(link, L.Convolution2D):
        return {"stride": int(link.stride[0]), "pad": int(link.pad[0])}
    if kind == "batchnorm" and isinstance(link, L.BatchNormalization):
        return {"eps": float(link.eps), "momentum": float(link.decay)}
    if kind == "dropout":
        return {"ratio": float(getattr(link, "ratio", 0.5))}
    return {}


def _param_slot(link: chainer.Link, attr: str, role: str, label: str, how: str = "") -> Slot:
    def get() -> np.ndarray:
        return np.array(getattr(link, attr).array)

    def set_(a: np.ndarray) -> None:
        getattr(link, attr).array[...] = a

    def grad() -> np.ndarray | None:
        g = getattr(link, attr).grad
        return None if g is None else np.array(g)

    return Slot(role, f"{label}.{attr}", get, set_, grad, how)


def _state_slot(link: chainer.Link, attr: str, role: str, label: str) -> Slot:
    def get() -> np.ndarray:
        return np.array(getattr(link, attr))

    def set_(a: np.ndarray) -> None:
        getattr(link, attr)[...] = a

    return Slot(role, f"{label}.{attr}", get, set_)


class ChainerDriver:
    framework = "chainer"

    def __init__(self, model: chainer.Link, dtype: str, loss_fn: Any = None) -> None:
        self.model = model
        self.dtype = dtype
        self.names = {link: (name.strip("/") or type(model).__name__) for name, link in model.namedlinks()}
        self.leaves = {id(link) for link in model.links() if not list(link.children())}
        forward = getattr(type(model), "forward", None)
        self.train_arg = forward is not None and "train" in inspect.signature(forward).parameters
        self.loss_fn = loss_fn or next(
            (getattr(model, a) for a in LOSS_ATTRS if callable(getattr(model, a, None))), None
        )
        self.param_layers: list[ParamLayer] = []
        self.plid: dict[int, int] = {}
        self._cast()

    def _cast(self) -> None:
        """Every initialised parameter and BatchNorm statistic in the check's dtype."""
        for link in self.model.links():
            for p in link.params(include_uninit=False):
                if p.array.dtype != self.dtype:
                    p.array = p.array.astype(self.dtype)
            if isinstance(link, L.BatchNormalization):
                link.avg_mean = link.avg_mean.astype(self.dtype)
                link.avg_var = link.avg_var.astype(self.dtype)

    def _param_layer(self, link: chainer.Link, kind: str) -> ParamLayer:
        label = self.names.get(link, "?")
        slots: dict[str, Slot] = {}
        if isinstance(link, L.BatchNormalization):
            slots["gamma"] = _param_slot(link, "gamma", "gamma", label)
            slots["beta"] = _param_slot(link, "beta", "beta", label)
            slots["running_mean"] = _state_slot(link, "avg_mean", "running_mean", label)
            slots["running_var"] = _state_slot(link, "avg_var", "running_var", label)
        else:
            ndim = 2 if kind == "affine" else 4
            params = dict(link.namedparams())
            w = next((n for n, p in params.items() if p.array is not None and p.ndim == ndim), None)
            b = next((n for n, p in params.items() if p.array is not None and p.ndim == 1), None)
            # NOTE(framework:dense-layout): L.Linear's W is (out, in), the course's W (in, out).
            if w is not None:
                slots["W"] = _param_slot(
                    link, w.strip("/"), "W", label, "transposed" if kind == "affine" else ""
                )
            if b is not None:
                slots["b"] = _param_slot(link, b.strip("/"), "b", label)
        return ParamLayer(label, kind, slots, link_attrs(link, kind), link)

    @contextmanager
    def _tracing(self, events: list[Event]):  # noqa: ANN202
        depth = [0]
        driver = self

        class Hook(chainer.LinkHook):
            name = "rosetta-check"

            def forward_preprocess(self, args: Any) -> None:
                if id(args.link) in driver.leaves:
                    depth[0] += 1

            def forward_postprocess(self, args: Any) -> None:
                link = args.link
                if id(link) not in driver.leaves:
                    return
                depth[0] -= 1
                if depth[0] != 0 or not isinstance(args.out, chainer.Variable):
                    return
                kind = link_kind(link)
                plid = None
                if kind in ("affine", "conv", "batchnorm"):
                    if id(link) not in driver.plid:
                        driver.plid[id(link)] = len(driver.param_layers)
                        driver.param_layers.append(driver._param_layer(link, kind))
                    plid = driver.plid[id(link)]
                src = args.args[0] if args.args else None
                events.append(
                    Event(
                        f"{driver.names.get(link, '?')} ({type(link).__name__})",
                        kind,
                        _np(args.out),
                        None if src is None else _np(src),
                        link_attrs(link, kind),
                        plid,
                        args.out.dtype.name,
                    )
                )

        original_apply = chainer.FunctionNode.apply

        def apply(node: Any, inputs: Any) -> Any:
            # Every function application (F.relu, also one a model stored as self.activation =
            # F.relu before the pass) goes through FunctionNode.apply.
            if depth[0] > 0:
                return original_apply(node, inputs)
            depth[0] += 1
            try:
                ret = original_apply(node, inputs)
            finally:
                depth[0] -= 1
            kind = kind_from_name(type(node).__name__)
            if kind != "other" and len(ret) == 1:
                events.append(
                    Event(
                        f"F.{type(node).__name__}",
                        kind,
                        _np(ret[0]),
                        _np(inputs[0]) if inputs else None,
                        _node_attrs(node, kind),
                        None,
                        ret[0].dtype.name,
                    )
                )
            return ret

        chainer.FunctionNode.apply = apply
        try:
            with Hook():
                yield
        finally:
            chainer.FunctionNode.apply = original_apply

    def build(self, x: np.ndarray) -> Pass:
        with chainer.using_config("dtype", np.dtype(self.dtype)):
            result = self.run(x, None, train=False, backward=False)
        self._cast()
        return result

    def run(
        self, x: np.ndarray, t: np.ndarray | None, train: bool, masks: Any = None, backward: bool = True
    ) -> Pass:
        del masks
        xv = chainer.Variable(np.asarray(x, dtype=self.dtype))
        events: list[Event] = []
        result = Pass(events)
        try:
            with chainer.using_config("train", train), self._tracing(events):
                y = self.model(xv, **({"train": train} if self.train_arg else {}))
        except Exception as exc:  # noqa: BLE001 - a port that fails is reported, not raised
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        result.logits = _np(y)
        result.masks = [(e.out != 0) for e in events if e.kind == "dropout" and train]
        if t is None:
            return result
        tt = np.asarray(t, dtype=np.int32)
        try:
            loss = self.loss_fn(y, tt) if self.loss_fn is not None else F.softmax_cross_entropy(y, tt)
        except Exception as exc:  # noqa: BLE001
            result.error = f"the loss failed: {type(exc).__name__}: {exc}"
            return result
        result.loss = float(_np(loss))
        if not backward:
            return result
        self.model.cleargrads()
        loss.backward()
        result.dx = np.array(xv.grad)
        for plid, pl in enumerate(self.param_layers):
            for role, slot in pl.slots.items():
                g = slot.grad()
                if g is not None:
                    result.grads[(plid, role)] = slot.from_native(g)
        return result

    def make_optimizer(self, name: str, lr: float) -> Any:
        if name == "adam":
            opt = chainer.optimizers.Adam(alpha=lr)
        elif name == "momentum":
            opt = chainer.optimizers.MomentumSGD(lr=lr, momentum=0.9)
        else:
            opt = chainer.optimizers.SGD(lr=lr)
        opt.setup(self.model)
        return opt

    def step(self, optimizer: Any) -> None:
        optimizer.update()


def _node_attrs(node: Any, kind: str) -> dict[str, object]:
    if kind in ("pool", "avgpool"):
        return {
            "size": int(getattr(node, "kh", 2)),
            "stride": int(getattr(node, "sy", 2)),
            "pad": int(getattr(node, "ph", 0)),
            "ceil": bool(getattr(node, "cover_all", False)),
        }
    if kind == "dropout":
        return {"ratio": float(getattr(node, "dropout_ratio", 0.5))}
    return {}
