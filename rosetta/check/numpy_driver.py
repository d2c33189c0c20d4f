"""Driving a course-style NumPy network: ``params``, ``layers`` (OrderedDict, dict or list) of
layers with ``forward``/``backward``, and ``lastLayer`` / ``last_layer`` (softmax with loss).

The checker runs the layers itself, one by one, so it sees every output, and backpropagates
through them in reverse, as the course's ``gradient`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from rosetta.check.model import CheckError, Event, ParamLayer, Pass, Slot, kind_from_name

GRAD_ATTRS = {"W": "dW", "b": "db", "gamma": "dgamma", "beta": "dbeta"}


def is_end_to_end_net(obj: object) -> bool:
    """A network that offers only ``params``, ``predict`` and ``gradient`` (checked end to end)."""
    return (
        hasattr(obj, "params")
        and callable(getattr(obj, "predict", None))
        and callable(getattr(obj, "gradient", None))
        and not hasattr(obj, "layers")
    )


def is_course_net(obj: object) -> bool:
    return is_end_to_end_net(obj) or (
        hasattr(obj, "params")
        and hasattr(obj, "layers")
        and (hasattr(obj, "lastLayer") or hasattr(obj, "last_layer"))
    )


def _takes_train_flag(method: Any) -> bool:
    try:
        return len(inspect.signature(method).parameters) >= 2
    except (TypeError, ValueError):
        return False


class NumpyDriver:
    framework = "numpy"

    def __init__(self, net: object, dtype: str) -> None:
        if not is_course_net(net):
            raise CheckError(
                f"{type(net).__name__} is not a course-style network: expected an object with a "
                "'params' dict, 'layers' (an OrderedDict or list of layers with forward/backward) "
                "and 'lastLayer' or 'last_layer'; or 'params', 'predict' and 'gradient'"
            )
        self.net = net
        self.end_to_end = is_end_to_end_net(net)
        if self.end_to_end:
            self._init_end_to_end(net)
            return
        layers = net.layers
        if isinstance(layers, Mapping):
            self.layers = [(str(k), v) for k, v in layers.items()]
        else:
            self.layers = [(f"layers[{i}] {type(v).__name__}", v) for i, v in enumerate(layers)]
        self.last = getattr(net, "last_layer", None) or net.lastLayer
        params = net.params
        first = next(iter(params.values()))
        self.dtype = np.asarray(first).dtype.name
        self.requested_dtype = dtype
        self.param_layers: list[ParamLayer] = []
        self.layer_plid: dict[int, int] = {}
        for i, (label, layer) in enumerate(self.layers):
            pl = self._param_layer(label, layer)
            if pl is not None:
                self.layer_plid[i] = len(self.param_layers)
                self.param_layers.append(pl)
        self.weight_decay = float(
            getattr(net, "weight_decay_lambda", 0.0) or getattr(net, "weight_decay", 0.0) or 0.0
        )

    def _init_end_to_end(self, net: object) -> None:
        """Parameter layers from the names W1, b1, gamma1, beta1, ...: by index, affine or conv
        (W, b) before BatchNorm (gamma, beta)."""
        import re

        self.layers = []
        self.last = None
        self.dtype = np.asarray(next(iter(net.params.values()))).dtype.name
        self.weight_decay = 0.0  # the network's own loss and gradient include it
        groups: dict[tuple[int, int], dict[str, str]] = {}
        for name in net.params:
            m = re.fullmatch(r"(W|b|gamma|beta)(\d+)", str(name))
            if m is None:
                raise CheckError(
                    f"{type(net).__name__}.params[{name!r}]: an end-to-end check needs the "
                    "course's names W1, b1, gamma1, beta1, ..."
                )
            role, index = m.group(1), int(m.group(2))
            groups.setdefault((index, 0 if role in ("W", "b") else 1), {})[role] = str(name)
        self.param_layers = []
        for (index, sub), names in sorted(groups.items()):
            if sub == 0:
                kind = "affine" if np.ndim(net.params[names["W"]]) == 2 else "conv"
            else:
                kind = "batchnorm"
            slots = {role: self._param_slot(name) for role, name in names.items()}
            self.param_layers.append(ParamLayer(f"{kind} {index}", kind, slots, {}, None))

    def _param_slot(self, name: str) -> Slot:
        def get() -> np.ndarray:
            return self.net.params[name]

        def set_(a: np.ndarray) -> None:
            self.net.params[name][...] = a

        return Slot(name.rstrip("0123456789"), name, get, set_)

    def _run_end_to_end(self, x: np.ndarray, t: np.ndarray | None, train: bool, backward: bool) -> Pass:
        net = self.net
        takes = _takes_train_flag(net.predict)
        logits = net.predict(x, train) if takes else net.predict(x)
        result = Pass([], logits=np.array(logits))
        if t is None:
            return result
        result.loss = float(net.loss(x, t)) if callable(getattr(net, "loss", None)) else None
        if backward:
            grads = net.gradient(x, t)
            for plid, pl in enumerate(self.param_layers):
                for role, slot in pl.slots.items():
                    if slot.name in grads:
                        result.grads[(plid, role)] = np.array(grads[slot.name])
        return result

    def _param_name(self, array: np.ndarray) -> str:
        for k, v in self.net.params.items():
            if v is array:
                return str(k)
        return "?"

    def _param_layer(self, label: str, layer: object) -> ParamLayer | None:
        if hasattr(layer, "W") and hasattr(layer, "b"):
            W = np.asarray(layer.W)  # noqa: N806
            kind = "affine" if W.ndim == 2 else "conv"
            roles = ("W", "b")
        elif hasattr(layer, "gamma") and hasattr(layer, "beta"):
            kind, roles = "batchnorm", ("gamma", "beta")
        else:
            return None
        slots: dict[str, Slot] = {}
        for role in roles:
            slots[role] = self._slot(layer, role, self._param_name(getattr(layer, role)))
        if kind == "batchnorm":
            for role in ("running_mean", "running_var"):
                slots[role] = self._state_slot(layer, role)
        return ParamLayer(label, kind, slots, self._attrs(layer, kind), layer)

    def _slot(self, layer: object, role: str, name: str) -> Slot:
        def get() -> np.ndarray:
            return getattr(layer, role)

        def set_(a: np.ndarray) -> None:
            getattr(layer, role)[...] = a

        def grad() -> np.ndarray | None:
            g = getattr(layer, GRAD_ATTRS[role], None)
            return None if g is None else np.asarray(g)

        return Slot(role, name, get, set_, grad)

    def _state_slot(self, layer: object, role: str) -> Slot:
        n = np.asarray(layer.gamma).size

        def get() -> np.ndarray:
            value = getattr(layer, role, None)
            # The course creates running_mean and running_var (zeros) at the first forward.
            return np.zeros(n) if value is None else np.asarray(value)

        def set_(a: np.ndarray) -> None:
            setattr(layer, role, np.array(a))

        return Slot(role, f"{role}", get, set_)

    @staticmethod
    def _attrs(layer: object, kind: str) -> dict[str, object]:
        if kind == "conv":
            return {"stride": int(getattr(layer, "stride", 1)), "pad": int(getattr(layer, "pad", 0))}
        if kind == "batchnorm":
            eps = getattr(layer, "eps", None)
            return {
                "momentum": float(getattr(layer, "momentum", 0.9)),
                "eps": float(10e-7 if eps is None else eps),
            }  # the course's BN adds 10e-7
        return {}

    def _event_attrs(self, layer: object, kind: str) -> dict[str, object]:
        if kind == "pool":
            return {
                "size": int(getattr(layer, "pool_h", 2)),
                "stride": int(getattr(layer, "stride", 2)),
                "pad": int(getattr(layer, "pad", 0)),
            }
        if kind == "dropout":
            return {"ratio": float(getattr(layer, "dropout_ratio", 0.5))}
        return self._attrs(layer, kind)

    # --- one pass -------------------------------------------------------------------------------
    def build(self, x: np.ndarray) -> Pass:
        return self.run(x, None, train=False, backward=False)

    @contextmanager
    def _mask(self, layer: object, mask: np.ndarray | None):  # noqa: ANN202
        if mask is None:
            yield
            return
        if hasattr(layer, "set_mask"):
            layer.set_mask(mask)
            try:
                yield
            finally:
                layer.set_mask(None)
            return
        # The course's Dropout draws ``np.random.rand(*x.shape) > ratio``: 1.0 keeps, 0.0 drops.
        original = np.random.rand
        np.random.rand = lambda *shape: mask.astype(np.float64)  # type: ignore[assignment]
        try:
            yield
        finally:
            np.random.rand = original  # type: ignore[assignment]

    def run(
        self,
        x: np.ndarray,
        t: np.ndarray | None,
        train: bool,
        masks: list[np.ndarray] | None = None,
        backward: bool = True,
    ) -> Pass:
        if self.end_to_end:
            return self._run_end_to_end(np.asarray(x, dtype=self.dtype), t, train, backward)
        h = np.asarray(x, dtype=self.dtype)
        events: list[Event] = []
        masks = list(masks or [])
        n_drop = 0
        for i, (label, layer) in enumerate(self.layers):
            kind = kind_from_name(type(layer).__name__)
            plid = self.layer_plid.get(i)
            if plid is not None:
                kind = self.param_layers[plid].kind
            inp = h
            if kind in ("batchnorm", "dropout") or _takes_train_flag(layer.forward) and kind != "affine":
                mask = None
                if kind == "dropout" and train:
                    mask = masks[n_drop] if n_drop < len(masks) else None
                    n_drop += 1
                with self._mask(layer, mask):
                    h = layer.forward(h, train)
            else:
                h = layer.forward(h)
            events.append(
                Event(label, kind, np.array(h), inp, self._event_attrs(layer, kind), plid, h.dtype.name)
            )
        result = Pass(events, logits=np.array(h))
        if t is None:
            return result
        loss = float(self.last.forward(h, t))
        for pl in self.param_layers:
            if "W" in pl.slots and self.weight_decay:
                loss += 0.5 * self.weight_decay * float(np.sum(pl.slots["W"].get() ** 2))
        result.loss = loss
        if not backward:
            return result
        dout = self.last.backward(1)
        for _, layer in reversed(self.layers):
            dout = layer.backward(dout)
        result.dx = np.array(dout)
        for plid, pl in enumerate(self.param_layers):
            for role, slot in pl.slots.items():
                g = slot.grad()
                if g is not None and role in GRAD_ATTRS:
                    if role == "W" and self.weight_decay:
                        g = g + self.weight_decay * slot.get()
                    result.grads[(plid, role)] = np.array(g)
        return result

    # --- optimizer steps ------------------------------------------------------------------------
    def step(self, optimizer: object, grads: dict[tuple[int, str], np.ndarray]) -> None:
        """One ``optimizer.update(params, grads)`` with the course's parameter names."""
        named = {}
        for (plid, role), g in grads.items():
            named[self.param_layers[plid].slots[role].name] = g
        optimizer.update(self.net.params, {k: named[k] for k in self.net.params if k in named})
