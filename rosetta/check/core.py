"""``rosetta.check(reference, port)``: copy the reference's weights into the port, run both layer
by layer in eval and train mode, compare every output, the loss, every gradient, the input
gradient and optionally K optimizer steps, and at the first tensor that parts name the porting
difference that explains it."""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

import rosetta.check.diagnose as dg
from rosetta.check.model import KIND_GROUPS, LAYOUT_KINDS, PARAM_KINDS, CheckError, Event, Pass, to_ref_layout
from rosetta.check.numpy_driver import NumpyDriver, is_course_net
from rosetta.check.report import CheckReport, Comparison
from rosetta.tolerances import errors, tolerance

FRAMEWORK_NAMES = {
    "numpy": "NumPy (course style)",
    "torch": "PyTorch",
    "keras": "Keras",
    "chainer": "Chainer",
}


def detect_framework(obj: object) -> str:
    """'numpy', 'torch', 'keras' or 'chainer' from the object's type (its classes' modules)."""
    for cls in type(obj).__mro__:
        mod = cls.__module__.split(".")[0]
        if mod == "torch" and cls.__name__ == "Module":
            return "torch"
        if mod in ("keras", "tf_keras") and cls.__name__ in ("Layer", "Model"):
            return "keras"
        if mod == "chainer" and cls.__name__ == "Link":
            return "chainer"
    if is_course_net(obj):
        return "numpy"
    raise CheckError(
        f"cannot drive a {type(obj).__module__}.{type(obj).__name__}: expected a course-style NumPy "
        "network (params, layers, lastLayer/last_layer), a torch.nn.Module, a keras.Model or a "
        "chainer.Chain"
    )


def make_driver(obj: object, dtype: str, loss_fn: Any = None) -> Any:
    framework = detect_framework(obj)
    if framework == "numpy":
        return NumpyDriver(obj, dtype)
    if framework == "torch":
        from rosetta.check.torch_driver import TorchDriver

        return TorchDriver(obj, dtype, loss_fn)
    if framework == "keras":
        from rosetta.check.keras_driver import KerasDriver

        return KerasDriver(obj, dtype, loss_fn)
    from rosetta.check.chainer_driver import ChainerDriver

    return ChainerDriver(obj, dtype, loss_fn)


def resolve(obj: Any, dtype: str) -> Any:
    """An object, or a zero-argument factory (given ``dtype=`` when it takes one)."""
    if inspect.isclass(obj) or (callable(obj) and inspect.isfunction(obj)):
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}
        return obj(dtype=dtype) if "dtype" in params else obj()
    return obj


def input_shape(ref: Any, driver: Any) -> tuple[int, ...]:
    """The reference's input shape without the batch: attributes, else its first layer."""
    for owner in (ref, getattr(ref, "config", None)):
        for attr in ("input_dim", "input_size", "input_shape"):
            v = getattr(owner, attr, None)
            if isinstance(v, int):
                return (v,)
            if isinstance(v, tuple | list) and all(isinstance(i, int) for i in v):
                return tuple(v)
    if driver.framework == "numpy" and driver.param_layers:
        pl = driver.param_layers[0]
        w = pl.slots["W"].get() if "W" in pl.slots else None
        if w is not None and w.ndim == 4:
            return (w.shape[1], 28, 28)
        if w is not None and w.ndim == 2:
            return (w.shape[0],)
    if driver.framework == "torch":
        import torch

        for m in ref.modules():
            if isinstance(m, torch.nn.Linear):
                return (m.in_features,)
            if isinstance(m, torch.nn.Conv2d):
                return (m.in_channels, 28, 28)
    return (784,)  # an MNIST MLP (lazy layers such as Chainer's L.Linear(None, n))


# --- weight transfer ----------------------------------------------------------------------------
def transfer(
    ref: Any, port: Any, ref_build: Pass, port_build: Pass
) -> tuple[list[str], list[str], dict[int, int]]:
    """Copy every parameter layer of the reference into the port, in order; returns the mapping
    lines, the problems and ref plid -> port plid."""
    lines: list[str] = []
    problems: list[str] = []
    pairs: dict[int, int] = {}
    rl, pls = ref.param_layers, port.param_layers
    for i, r in enumerate(rl):
        if i >= len(pls):
            problems.append(
                f"reference layer {r.label} ({r.kind}) has no counterpart in the port "
                f"(the port has {len(pls)} layers with parameters)"
            )
            continue
        p = pls[i]
        if p.kind != r.kind:
            problems.append(f"reference layer {r.label} is {r.kind}, the port's layer {p.label} is {p.kind}")
            continue
        pairs[i] = i
        for role, rs in r.slots.items():
            ps = p.slots.get(role)
            if ps is None:
                if role not in ("running_mean", "running_var"):
                    problems.append(f"{rs.name} of {r.label}: the port's {p.label} has no {role}")
                continue
            value = rs.canonical()
            _choose_layout(ps, value, port, port_build, ref_build, i, r.kind)
            native = ps.to_native(value)
            if tuple(native.shape) != ps.shape:
                problems.append(f"{rs.name} {value.shape} of {r.label} cannot go into {ps.name} {ps.shape}")
                continue
            ps.set(native.astype(ps.get().dtype))
            how = (f", {ps.how}" if ps.how else "") + (f" ({ps.note})" if ps.note else "")
            if role in ("running_mean", "running_var"):
                continue
            lines.append(f"{rs.name} {value.shape} -> {ps.name} {ps.shape}{how}")
    for p in pls[len(rl) :]:
        problems.append(f"the port's layer {p.label} ({p.kind}) has no counterpart in the reference")
    return lines, problems, pairs


def _choose_layout(
    ps: Any, value: np.ndarray, port: Any, port_build: Pass, ref_build: Pass, plid: int, kind: str
) -> None:
    shape = ps.shape
    if ps.role != "W":
        return
    if kind == "affine":
        if port.framework == "keras":
            src = _last_4d_before(ref_build, plid)
            psrc = _last_4d_before(port_build, plid)
            if src is not None and psrc is not None:
                c, h, w = src.shape[1:]
                if psrc.shape[1:] == (h, w, c) and (h, w, c) != (c, h, w):
                    # NOTE(framework:flatten-order): Keras flattens NHWC features in (H, W, C) order,
                    # so W's rows (C, H, W) are permuted once here.
                    ps.how, ps.perm_shape = "rows (H, W, C)", (c, h, w)
                    return
        if shape == value.shape and shape != value.T.shape:
            ps.how = ""
        elif shape == value.T.shape and shape != value.shape:
            ps.how = "transposed"
        elif shape == value.shape and ps.how:
            ps.note = "square: by the framework's convention"


def _last_4d_before(p: Pass, plid: int) -> np.ndarray | None:
    found = None
    for e in p.events:
        if e.plid == plid:
            if e.inp is not None and e.inp.ndim == 4:
                return e.inp
            return found
        if e.plid is not None:
            found = None
        elif e.out.ndim == 4:
            found = e.out
    return None


# --- comparing one pass -------------------------------------------------------------------------
def _cmp(
    quantity: str,
    name: str,
    port_name: str,
    a: np.ndarray | None,
    r: np.ndarray | None,
    dtype: str,
    floor: float = 0.0,
) -> Comparison:
    tol = tolerance(dtype, quantity)
    if a is None or r is None:
        return Comparison(quantity, name, port_name, float("inf"), tol, False, "missing")
    a = np.asarray(a)
    r = np.asarray(r)
    if a.shape != r.shape:
        return Comparison(
            quantity,
            name,
            port_name,
            float("inf"),
            tol,
            False,
            f"shape {tuple(a.shape)} vs the reference's {tuple(r.shape)}",
        )
    abs_err, rel = errors(a, r, floor)
    if not np.isfinite(rel):
        rel = float("inf")
    return Comparison(quantity, name, port_name, rel, tol, rel <= tol, "")


def _first_diff(a: np.ndarray, r: np.ndarray, k: int = 4) -> str:
    a = np.asarray(a, dtype=np.float64).ravel()
    r = np.asarray(r, dtype=np.float64).ravel()
    idx = np.argsort(-np.abs(a - r))[:k]
    return ", ".join(f"[{i}] port {a[i]:.6g} ref {r[i]:.6g}" for i in sorted(idx))


class PassChecker:
    """Aligns the two traces of one pass, compares, and diagnoses the first divergence."""

    def __init__(
        self,
        mode: str,
        ref: Any,
        port: Any,
        rp: Pass,
        pp: Pass,
        pairs: dict[int, int],
        dtype: str,
        params_before: dict[int, dict[str, np.ndarray]],
        x: np.ndarray,
        t: np.ndarray,
        train: bool,
    ) -> None:
        self.mode, self.ref, self.port, self.rp, self.pp = mode, ref, port, rp, pp
        self.pairs, self.dtype, self.params, self.x, self.t, self.train = (
            pairs,
            dtype,
            params_before,
            x,
            t,
            train,
        )
        self.rows: list[Comparison] = []
        self.diagnosis: dg.Diagnosis | None = None

    def _port_val(self, e: Event, ref_shape: tuple[int, ...]) -> np.ndarray:
        return to_ref_layout(e.out, ref_shape, self.port.framework)

    def _diagnose_layer(
        self,
        rev: Event,
        pev: Event | None,
        pval: np.ndarray,
        mask: np.ndarray | None,
        x4d: np.ndarray | None,
        tol: float,
        ri: int,
    ) -> None:
        params = self.params.get(rev.plid, {}) if rev.plid is not None else {}
        where = f"reference layer {rev.label} / port {pev.label if pev else '(nothing)'}"
        if pev is not None and self.dtype == "float64" and pev.dtype == "float32":
            slug = "keras-dtype" if self.port.framework == "keras" else "model-dtype"
            self.diagnosis = dg.Diagnosis(
                where, "float32 layer inside a float64 model: the port's layer computes in float32", slug
            )
            return
        if rev.kind == "dropout" and not self.train and pev is not None:
            cause = dg.eval_dropout_active(rev, pval, float(rev.attrs.get("ratio", 0.5)), tol)
            if cause:
                self.diagnosis = dg.Diagnosis(where, cause, "train-flag")
                return
        hyps = dg.layer_hypotheses(
            rev, params, self.port.framework, self.train, mask, x4d, pev.kind if pev else None
        )
        found = dg.first(hyps, np.asarray(pval, dtype=np.float64), max(tol, 1e-9) * 10)
        if found:
            cause, slug = found
            if slug == "pool-ceil" and self.port.framework == "chainer":
                slug = "chainer-cover-all"
            self.diagnosis = dg.Diagnosis(where, cause, slug)
            return
        detail = ""
        if pval.shape == rev.out.shape:
            detail = _first_diff(pval, rev.out)
        else:
            detail = f"port shape {tuple(pval.shape)}, reference {tuple(rev.out.shape)}"
        self.diagnosis = dg.Diagnosis(where, "no known porting difference explains it", None, detail)

    def layers(self) -> bool:
        """Compare layer outputs in order; diagnose the first that parts. True when all agree."""
        ref_events = [e for e in self.rp.events if e.kind not in LAYOUT_KINDS]
        pev = [e for e in self.pp.events if e.kind not in LAYOUT_KINDS]
        j = 0
        prev_port: np.ndarray | None = None
        last4d_ref: np.ndarray | None = None
        drop_i = 0
        ok_all = True
        for ri, rev in enumerate(ref_events):
            cand: Event | None = None
            if rev.kind in PARAM_KINDS and rev.plid is not None:
                want = self.pairs.get(rev.plid)
                k = next((k for k in range(j, len(pev)) if pev[k].plid == want and want is not None), None)
                if k is not None:
                    extra = [e for e in pev[j:k] if e.plid is None]
                    if extra and ok_all:
                        e = extra[0]
                        r_in = rev.inp if rev.inp is not None else rev.out
                        self.rows.append(
                            _cmp(
                                "activation",
                                f"(before {rev.label})",
                                e.label,
                                self._port_val(e, r_in.shape),
                                r_in,
                                self.dtype,
                            )
                        )
                        self.diagnosis = dg.Diagnosis(
                            f"port {e.label} before reference layer {rev.label}",
                            f"the port applies {dg.KIND_WORDS.get(e.kind, e.kind)} where the reference "
                            "applies nothing",
                            "activation-differs" if e.kind != "softmax" else "softmax-twice",
                        )
                        ok_all = False
                    cand, j = pev[k], k + 1
            else:
                group = KIND_GROUPS.get(rev.kind, "other")
                stop = next((k for k in range(j, len(pev)) if pev[k].plid is not None), len(pev))
                k = next((k for k in range(j, stop) if KIND_GROUPS.get(pev[k].kind, "other") == group), None)
                if k is None and group != "other":
                    k = next(
                        (
                            k
                            for k in range(j, stop)
                            if pev[k].out.shape == rev.out.shape
                            and KIND_GROUPS.get(pev[k].kind) in ("activation", "other")
                        ),
                        None,
                    )
                if k is not None:
                    cand, j = pev[k], k + 1
            if cand is not None:
                pval = self._port_val(cand, rev.out.shape)
            elif rev.kind not in PARAM_KINDS and prev_port is not None:
                pval = prev_port  # the port has no such layer: its value here is the previous one
            else:
                pval = None
            quantity = "activation"
            row = _cmp(quantity, rev.label, cand.label if cand else "(none)", pval, rev.out, self.dtype)
            self.rows.append(row)
            mask = None
            if rev.kind == "dropout":
                mask = self.pp.masks[drop_i] if drop_i < len(self.pp.masks) else None
                if mask is not None:
                    mask = to_ref_layout(mask, rev.out.shape, self.port.framework)
                drop_i += 1
            if not row.ok and ok_all:
                ok_all = False
                if pval is None:
                    self.diagnosis = dg.Diagnosis(
                        f"reference layer {rev.label}", "the port has no counterpart of this layer", None
                    )
                else:
                    self._diagnose_layer(rev, cand, pval, mask, last4d_ref, row.tol, ri)
            if pval is not None:
                prev_port = pval
            if rev.out.ndim == 4:
                last4d_ref = rev.out
        trailing = [e for e in pev[j:] if e.plid is None]
        if trailing and ok_all:
            e = trailing[0]
            ok_all = False
            self.diagnosis = dg.Diagnosis(
                f"port {e.label} after the reference's last layer",
                f"the port applies {dg.KIND_WORDS.get(e.kind, e.kind)} after its last layer, where the "
                "reference's output goes straight into softmax-with-loss"
                + (" (softmax applied twice: once here, once in the loss)" if e.kind == "softmax" else ""),
                "softmax-twice" if e.kind == "softmax" else "activation-differs",
            )
        return ok_all

    def outputs(self, layers_ok: bool) -> None:
        rl, pl = self.rp.logits, self.pp.logits
        self.rows.append(
            _cmp(
                "logits",
                "output",
                "output",
                None if pl is None else to_ref_layout(pl, rl.shape, self.port.framework),
                rl,
                self.dtype,
            )
        )
        if self.rp.loss is None:
            return
        row = _cmp(
            "loss",
            "loss",
            "loss",
            None if self.pp.loss is None else np.asarray(self.pp.loss),
            np.asarray(self.rp.loss),
            self.dtype,
        )
        self.rows.append(row)
        if row.ok or not layers_ok or self.diagnosis is not None or self.pp.loss is None:
            return
        z = rl
        exact = float(np.mean(dg.ops.cross_entropy(np.asarray(z, dtype=np.float64), self.t)))
        guard = dg.course_guard_loss(z, self.t)
        tol = row.tol
        if (
            self.ref.framework == "numpy"
            and abs(self.rp.loss - guard) <= tol * abs(guard) * 10
            and abs(self.pp.loss - exact) <= tol * abs(exact) * 10
        ):
            row.ok = True
            row.note = (
                "the reference's loss is the course's -log(y + 1e-7); the port's is the exact "
                "cross-entropy (see softmax-ce): accepted"
            )
            return
        found = dg.first(dg.loss_hypotheses(z, self.t), np.asarray(self.pp.loss, dtype=np.float64), tol * 10)
        last = next((e for e in reversed(self.rp.events) if e.kind not in LAYOUT_KINDS), None)
        if (
            found is None
            and last is not None
            and last.kind in ("sigmoid", "softmax")
            and last.inp is not None
        ):
            pre = float(np.mean(dg.ops.cross_entropy(np.asarray(last.inp, dtype=np.float64), self.t)))
            if abs(self.pp.loss - pre) <= tol * 10 * abs(pre):
                # NOTE(framework:activation-differs): a Keras loss given a sigmoid/softmax layer's
                # output with from_logits=True takes the values before that activation instead.
                found = (
                    f"the port's loss skips the output {last.kind}: it computes the cross-entropy of "
                    f"the values before it (Keras: a loss with from_logits=True on the output of "
                    f"Dense(activation='{last.kind}') uses the tensor before the activation)",
                    "activation-differs",
                )
        if (
            found is None
            and self.dtype == "float64"
            and abs(self.pp.loss - self.rp.loss) <= tolerance("float32", "loss") * abs(self.rp.loss)
        ):
            found = (
                "the port's loss is computed in float32 inside a float64 model",
                "keras-loss-float32" if self.port.framework == "keras" else "model-dtype",
            )
        if found:
            self.diagnosis = dg.Diagnosis("loss", found[0], found[1])
        else:
            self.diagnosis = dg.Diagnosis(
                "loss",
                "no known porting difference explains it",
                None,
                f"port {self.pp.loss:.10g}, reference {self.rp.loss:.10g}",
            )

    def gradients(self, labels: dict[tuple[int, str], tuple[str, str]]) -> None:
        grads_ref = self.rp.grads
        if not grads_ref:
            return
        scale = max(float(np.max(np.abs(g))) for g in grads_ref.values())
        first_bad = None
        for key, g in grads_ref.items():
            pkey = (self.pairs.get(key[0]), key[1])
            name, pname = labels.get(key, (str(key), "?"))
            # Round-off-only gradients (a bias before a train-mode BatchNorm) are compared against
            # the largest gradient of the pass, as the parity suite does.
            floor = scale if np.max(np.abs(g)) < 1e-6 * scale else 0.0
            row = _cmp("grad", name, pname, self.pp.grads.get(pkey), g, self.dtype, floor)
            self.rows.append(row)
            if not row.ok and first_bad is None:
                first_bad = (row, key)
        if self.rp.dx is not None:
            dx = self.pp.dx
            self.rows.append(_cmp("grad_input", "input", "input", dx, self.rp.dx, self.dtype))
        if first_bad is not None and self.diagnosis is None:
            row, key = first_bad
            detail = ""
            pg = self.pp.grads.get((self.pairs.get(key[0]), key[1]))
            if pg is not None and pg.shape == grads_ref[key].shape:
                r = grads_ref[key].ravel()
                ratio = float(np.dot(pg.ravel(), r) / max(np.dot(r, r), 1e-300))
                detail = f"port gradient / reference gradient: {ratio:.6g}; " + _first_diff(
                    pg, grads_ref[key]
                )
            self.diagnosis = dg.Diagnosis(
                f"gradient of {row.name}",
                "the forward agrees but this gradient parts; no known porting difference explains it",
                None,
                detail,
            )

    def running_stats(
        self,
        labels: dict[int, str],
        before: dict[int, tuple[np.ndarray, np.ndarray]],
        bn_inputs: dict[int, np.ndarray],
        unbiased: dict[int, bool],
    ) -> None:
        for plid, (rm0, rv0) in before.items():
            rpl = self.ref.param_layers[plid]
            ppid = self.pairs.get(plid)
            if ppid is None or "running_mean" not in self.port.param_layers[ppid].slots:
                continue
            pslots = self.port.param_layers[ppid].slots
            rm, rv = rpl.slots["running_mean"].canonical(), rpl.slots["running_var"].canonical()
            prm, prv = pslots["running_mean"].canonical(), pslots["running_var"].canonical()
            r1 = _cmp(
                "batchnorm", f"{labels[plid]}.running_mean", pslots["running_mean"].name, prm, rm, self.dtype
            )
            r2 = _cmp(
                "batchnorm", f"{labels[plid]}.running_var", pslots["running_var"].name, prv, rv, self.dtype
            )
            self.rows += [r1, r2]
            if (r1.ok and r2.ok) or self.diagnosis is not None or plid not in bn_inputs:
                continue
            m = float(rpl.attrs.get("momentum", 0.9))
            tol = r1.tol * 10
            for cause, slug, compute in dg.running_stat_hypotheses(
                bn_inputs[plid], m, rm0, rv0, unbiased[plid]
            ):
                hm, hv = compute()
                if dg.matches(np.asarray(hm, dtype=np.float64), prm, tol) and dg.matches(
                    np.asarray(hv, dtype=np.float64), prv, tol
                ):
                    if slug == "train-flag" and self.port.framework == "keras":
                        slug = "keras-training-flag"
                    self.diagnosis = dg.Diagnosis(f"running statistics of {labels[plid]}", cause, slug)
                    break
            else:
                self.diagnosis = dg.Diagnosis(
                    f"running statistics of {labels[plid]}",
                    "no known porting difference explains it",
                    None,
                    _first_diff(prv, rv),
                )


def _snapshot(driver: Any) -> dict[int, dict[str, np.ndarray]]:
    return {
        i: {role: s.canonical() for role, s in pl.slots.items()} for i, pl in enumerate(driver.param_layers)
    }


def _unbiased_ref(rpl: Any, x: np.ndarray, rm0: np.ndarray, rv0: np.ndarray) -> bool:
    import rosetta.check.ops as ops

    _, var_b, var_u, _ = ops.batch_stats(np.asarray(x, dtype=np.float64))
    m = float(rpl.attrs.get("momentum", 0.9))
    rv = rpl.slots["running_var"].canonical()
    return bool(np.abs(m * rv0 + (1 - m) * var_u - rv).max() <= np.abs(m * rv0 + (1 - m) * var_b - rv).max())


def check(
    reference: Any,
    port: Any,
    x: np.ndarray | None = None,
    t: np.ndarray | None = None,
    *,
    dtype: str = "float64",
    steps: int = 0,
    optimizer: str = "sgd",
    lr: float = 0.01,
    optimizers: tuple[Any, Any] | None = None,
    batch: int = 8,
    seed: int = 0,
    port_loss: Any = None,
    reference_loss: Any = None,
    train: bool = True,
) -> CheckReport:
    """Check ``port`` against ``reference`` (objects or zero-argument factories).

    ``x``/``t``: the input and integer labels (default: seeded normals shaped like the
    reference's input, batch ``batch``; random labels). ``steps`` > 0 also compares the parameters
    after each of K optimizer steps: ``optimizers=(course_optimizer, port_optimizer)`` or, by
    default, ``optimizer`` ('sgd', 'momentum', 'adam') with ``lr`` on both sides.
    """
    if np.dtype(dtype).name not in ("float32", "float64"):
        raise CheckError(f"dtype must be float32 or float64, got {dtype}")
    dtype = np.dtype(dtype).name
    started = time.perf_counter()
    ref_obj, port_obj = resolve(reference, dtype), resolve(port, dtype)
    ref = make_driver(ref_obj, dtype, reference_loss)
    prt = make_driver(port_obj, dtype, port_loss)
    if prt.framework == "numpy":
        raise CheckError(
            "the port must be a torch.nn.Module, a keras.Model or a chainer.Chain; got a "
            "course-style NumPy network"
        )
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((batch, *input_shape(ref_obj, ref)))
    x = np.asarray(x, dtype=dtype)
    expected = input_shape(ref_obj, ref)
    if x.shape[1:] != expected and int(np.prod(x.shape[1:])) == int(np.prod(expected)):
        x = x.reshape(len(x), *expected)  # MNIST images (N, 1, 28, 28) for an MLP taking (N, 784)
    rb = ref.build(x)
    if rb.error:
        raise CheckError(f"the reference fails on an input of shape {x.shape}: {rb.error}")
    if t is None:
        t = rng.integers(0, rb.logits.shape[1], size=len(x))
    t = np.asarray(t, dtype=np.int64)
    pb = prt.build(x)
    if getattr(prt, "note", ""):
        notes.append(prt.note)
        dtype = prt.dtype
        x = x.astype(dtype)
    if ref.dtype != dtype and ref.framework == "numpy":
        notes.append(f"the reference computes in {ref.dtype}")
        if ref.dtype == "float32":
            dtype = "float32"
    mapping, problems, pairs = transfer(ref, prt, rb, pb)
    labels = {}
    for i, pl in enumerate(ref.param_layers):
        for role, s in pl.slots.items():
            pp = pairs.get(i)
            pname = (
                prt.param_layers[pp].slots[role].name
                if pp is not None and role in prt.param_layers[pp].slots
                else "?"
            )
            labels[(i, role)] = (s.name if s.name != "?" else f"{pl.label}.{role}", pname)
    report = CheckReport(
        FRAMEWORK_NAMES[ref.framework],
        FRAMEWORK_NAMES[prt.framework],
        dtype,
        tuple(x.shape),
        mapping,
        problems,
        notes,
    )
    if pb.error and not pb.events:
        report.error = f"the port fails on an input of shape {x.shape}: {pb.error}"

    modes = [("eval", False)] + ([("train", True)] if train else [])
    for mode, is_train in modes:
        before = _snapshot(ref)
        bn_before = {
            i: (pl.slots["running_mean"].canonical(), pl.slots["running_var"].canonical())
            for i, pl in enumerate(ref.param_layers)
            if "running_mean" in pl.slots
        }
        pp = prt.run(x, t, is_train, backward=is_train)
        rp = ref.run(x, t, is_train, masks=pp.masks if is_train else None, backward=is_train)
        pc = PassChecker(mode, ref, prt, rp, pp, pairs, dtype, before, x, t, is_train)
        # A reference that offers only predict and gradient is compared end to end.
        layers_ok = pc.layers() if rp.events else True
        if not rp.events and ref.framework == "numpy" and mode == "eval":
            report.notes.append(
                "the reference has no layers to run one by one: compared end to end (logits, loss, gradients)"
            )
        if pp.error:
            report.port_errors.append(f"{mode}: {pp.error}")
        pc.outputs(layers_ok)
        if is_train:
            pc.gradients(labels)
            if bn_before:
                bn_inputs = {e.plid: e.inp for e in rp.events if e.plid in bn_before}
                unbiased = {
                    i: _unbiased_ref(ref.param_layers[i], bn_inputs[i], *bn_before[i])
                    for i in bn_before
                    if i in bn_inputs
                }
                pc.running_stats(
                    {i: ref.param_layers[i].label for i in bn_before}, bn_before, bn_inputs, unbiased
                )
        report.add_pass(mode, pc.rows, pc.diagnosis)
    if steps > 0:
        _steps(report, ref, prt, pairs, labels, x, t, dtype, steps, optimizer, lr, optimizers)
    report.seconds = time.perf_counter() - started
    return report


def _steps(
    report: CheckReport,
    ref: Any,
    prt: Any,
    pairs: dict[int, int],
    labels: dict,
    x: np.ndarray,
    t: np.ndarray,
    dtype: str,
    steps: int,
    optimizer: str,
    lr: float,
    optimizers: tuple[Any, Any] | None,
) -> None:
    if ref.framework != "numpy":
        report.notes.append("optimizer steps need a course-style reference (update(params, grads)); skipped")
        return
    from reference_numpy.optimizers import make_optimizer

    if optimizers is not None:
        ref_opt, port_opt = optimizers
        port_opt = (
            port_opt(prt.model)
            if callable(port_opt)
            and not hasattr(port_opt, "step")
            and not hasattr(port_opt, "apply_gradients")
            and not hasattr(port_opt, "update")
            else port_opt
        )
    else:
        ref_opt = make_optimizer(optimizer, lr=lr)
        port_opt = prt.make_optimizer(optimizer, lr)
    for k in range(1, steps + 1):
        pp = prt.run(x, t, True)
        rp = ref.run(x, t, True, masks=pp.masks)
        if pp.error or rp.loss is None:
            report.notes.append(f"step {k}: the port failed: {pp.error}")
            return
        prt.step(port_opt)
        ref.step(ref_opt, rp.grads)
        rows = []
        for (i, role), (name, pname) in labels.items():
            if role in ("running_mean", "running_var"):
                continue
            pi = pairs.get(i)
            if pi is None or role not in prt.param_layers[pi].slots:
                continue
            rows.append(
                _cmp(
                    "optimizer",
                    name,
                    pname,
                    prt.param_layers[pi].slots[role].canonical(),
                    ref.param_layers[i].slots[role].canonical(),
                    dtype,
                )
            )
        diag = None
        bad = next((r for r in rows if not r.ok), None)
        if bad is not None:
            diag = dg.Diagnosis(
                f"step {k}, {bad.name}",
                f"the parameters part after optimizer step {k} "
                "while the gradients agree: the two optimizers differ (see the optimizer "
                "sections of the porting guide)",
                optimizer if optimizer in ("adam", "adagrad", "rmsprop") else "sgd-lr",
            )
        report.add_pass(f"step {k}", rows, diag)
        if diag is not None:
            return
