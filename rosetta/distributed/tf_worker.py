"""The TF worker: ``tf.distribute.MirroredStrategy`` over ``WORLD_SIZE`` logical CPU devices.

Started by :func:`rosetta.distributed.run_workers` (``python -m rosetta.distributed tf FOLDER``):
the logical devices must be configured before TensorFlow initialises, so this runs in a fresh
process. Each scenario builds the TF port's model under the strategy's scope
(``make_adapter("tf", ...)``: every variable mirrored), runs the port's loss on each replica's rows
and applies the port's optimizer to the gradients the strategy reduces.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import tensorflow as tf

from rosetta.distributed import (
    GLOBAL_BATCH,
    LOCAL_BATCH,
    WORLD_SIZE,
    Scenario,
    _read_plan,
    _save,
    _scenario_masks,
    eval_input,
    model_input,
    replica_rows,
    running_var_from_biased,
)
from rosetta.weights import init_params, param_spec, trainable_names

NCHW_TO_NHWC = (0, 2, 3, 1)


def native(x: np.ndarray) -> np.ndarray:
    """Canonical NCHW input to Keras's NHWC (flat inputs unchanged)."""
    return np.ascontiguousarray(np.transpose(x, NCHW_TO_NHWC) if x.ndim == 4 else x)


def _keras_sync_bn() -> type:
    import keras

    class SyncBatchNorm(keras.layers.BatchNormalization):
        """Keras's BatchNormalization(synchronized=True) under the port's attribute names.

        NOTE(framework:bn-per-replica): synchronized=True all-reduces the sum, the sum of squares and
        the count over the replicas (variance as E[x^2] - E[x]^2, one pass) and keeps the
        biased variance in moving_variance; the worker converts it to the contract's unbiased
        running variance (running_var_from_biased).
        """

        def __init__(self, momentum: float, eps: float, **kwargs: object) -> None:
            super().__init__(momentum=momentum, epsilon=eps, synchronized=True, **kwargs)
            self.values_per_feature = 0

        @property
        def running_mean(self) -> keras.Variable:
            return self.moving_mean

        @property
        def running_var(self) -> keras.Variable:
            return self.moving_variance

        def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
            if training:  # at trace time: the global number of values per feature
                self.values_per_feature = WORLD_SIZE * math.prod(x.shape[:-1])
            return super().call(x, training=training)

    return SyncBatchNorm


class ReplicaDropout:
    """Inverted dropout whose keep-mask is this replica's rows of the reference's global mask.

    The global mask lives in a mirrored variable assigned before each step, so the compiled step
    is traced once (a mask held as a graph constant would need a retrace per step).
    """

    def __init__(self, ratio: float, mask: tf.Variable, same_mask: bool) -> None:
        self.ratio, self.mask, self.same_mask = ratio, mask, same_mask

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if not training:
            return x
        n = tf.shape(x)[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        # NOTE(framework:dropout-same-mask): rows replica * n .. (replica + 1) * n of the global
        # mask; the same rows on every replica is the pitfall.
        start = 0 if self.same_mask else replica * n
        keep = self.mask[start:start + n]
        # y = x * mask / (1 - ratio)
        return x * keep / (1.0 - self.ratio)


def _swap_layers(model: object, scenario: Scenario, dtype: str) -> dict[str, tf.Variable]:
    """Synchronised BatchNorm and per-replica Dropout layers in place of the port's; returns the
    global-mask variables by Dropout layer name. Called under the strategy's scope."""
    from tf_impl.layers import BatchNorm, Dropout

    acts = model.forward(tf.zeros((1, *_native_shape(model.config)), dtype=dtype), train=False,
                         return_activations=True)[1]
    masks = {}
    for name in list(acts):
        layer = getattr(model, name, None)
        if scenario.batchnorm == "sync" and isinstance(layer, BatchNorm):
            new = _keras_sync_bn()(layer.momentum, layer.eps, dtype=dtype, name=name)
            new.build((None, *acts[name].shape[1:]))
            pairs = ((new.gamma, layer.gamma), (new.beta, layer.beta),
                     (new.moving_mean, layer.running_mean), (new.moving_variance, layer.running_var))
            for ours, theirs in pairs:
                ours.assign(theirs)
            # Bypasses Keras's layer tracking on purpose: the variables the step trains and dumps
            # come from tf_impl.weights.conversions, which reads the attribute.
            object.__setattr__(model, name, new)
        elif isinstance(layer, Dropout):
            masks[name] = tf.Variable(tf.ones((GLOBAL_BATCH, *acts[name].shape[1:]), dtype=dtype),
                                      trainable=False)
            object.__setattr__(model, name, ReplicaDropout(layer.ratio, masks[name],
                                                           scenario.variant == "same-dropout-mask"))
    return masks


def variable_table(model: object) -> dict[str, tuple[object, tuple[int, ...] | None]]:
    """Canonical name -> (Keras variable, permutation), from the port's conversion table
    (tf_impl.weights.CONVERSIONS) applied to the layers the model holds now: the swapped layers
    are not tracked by Keras, so tf_impl.weights.conversions, which checks the tracked variables,
    would refuse the model."""
    from tf_impl.weights import CONVERSIONS

    table = {}
    for name in param_spec(model.config):
        layer, _ = name.split(".")
        (native, perm), = [(n, p) for pattern, n, p in CONVERSIONS if fnmatchcase(name, pattern)]
        table[name] = (getattr(getattr(model, layer), native), perm)
    return table


def _to_canonical(native: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    return np.ascontiguousarray(native if perm is None else np.transpose(native, np.argsort(perm)))


def _native_shape(config: object) -> tuple[int, ...]:
    from rosetta.distributed import input_shape

    shape = input_shape(config)  # type: ignore[arg-type]
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _spread(strategy: tf.distribute.Strategy, variables: Sequence[tf.Variable]) -> float:
    """Largest difference of any trainable variable between a replica and replica 0."""
    gap = 0.0
    for v in variables:
        values = [np.asarray(c) for c in strategy.experimental_local_results(getattr(v, "value", v))]
        gap = max([gap, *(float(np.max(np.abs(c - values[0]))) for c in values[1:])])
    return gap


def run_scenario(strategy: tf.distribute.Strategy, scenario: Scenario, data: dict[str, np.ndarray],
                 folder: Path) -> None:
    from rosetta.adapters import make_adapter, optimizer_hparams
    from tf_impl.optimizers import OPTIMIZERS
    from tf_impl.train import loss_fn

    config, dtype = scenario.config(), scenario.dtype
    initial = init_params(config, seed=0, dtype=dtype)
    with strategy.scope():
        model = make_adapter("tf", config, initial, dtype).model
        masks = _swap_layers(model, scenario, dtype)
        table = variable_table(model)
        trainable = [table[n][0] for n in trainable_names(config)]
        optimizer = OPTIMIZERS["sgd"](trainable, **optimizer_hparams("sgd", lr=scenario.lr))
    # NOTE(framework:loss-per-replica-batch): MirroredStrategy sums the replicas' gradients (as
    # a Keras optimizer's apply_gradients does inside strategy.run), so each replica's loss must
    # be its share of the global mean: mean over its rows x LOCAL_BATCH / GLOBAL_BATCH (what
    # tf.nn.compute_average_loss(per_example, global_batch_size) computes; it also divides the
    # L2 term by the number of replicas). The port's mean over the replica's own rows alone
    # gives WORLD_SIZE times the gradient.
    scale = 1.0 if scenario.variant == "loss-per-replica-batch" else LOCAL_BATCH / GLOBAL_BATCH

    def replica_step(x: tf.Tensor, t: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(model, model(x, training=True), t) * tf.constant(scale, dtype)
        return tape.gradient(loss, trainable)

    # autograph=False, as in the port's train_step: no tensor-dependent Python control flow, and
    # the trace is faster without the conversion.
    @tf.function(autograph=False)
    def step(x: object, t: object) -> None:
        per_replica = strategy.run(replica_step, args=(x, t))
        # The strategy's reduction (SUM over replicas), then the port's update equations in
        # cross-replica context: every mirror of a variable gets the same update.
        grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]
        optimizer.update(grads)

    x, t = native(model_input(data, config, dtype)), data["t"]

    def shard(a: np.ndarray) -> object:
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[replica_rows(ctx.replica_id_in_sync_group)]))

    sync_bns = [n for n in param_spec(config) if n.endswith(".running_var") and scenario.batchnorm == "sync"]
    history = []
    for s in range(scenario.steps):
        start = s * GLOBAL_BATCH
        for name, mask in _scenario_masks(data, scenario, s).items():
            masks[name].assign(tf.constant(native(mask).astype(dtype)))
        step(shard(x[start:start + GLOBAL_BATCH]), shard(t[start:start + GLOBAL_BATCH]))
        params = {name: _to_canonical(var.numpy(), perm) for name, (var, perm) in table.items()}
        for name in sync_bns:
            layer = getattr(model, name.split(".")[0])
            params[name] = running_var_from_biased(params[name], initial[name], layer.momentum, s + 1,
                                                   layer.values_per_feature).astype(dtype)
        history.append(params)
    port = make_adapter("tf", config, history[-1], dtype)
    predictions = port.predict(eval_input(data, config, dtype, scenario.eval_images))
    _save(folder, "tf", scenario, history, predictions, _spread(strategy, trainable))


def worker(folder: Path) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * WORLD_SIZE)
    threads = int(os.environ.get("ROSETTA_WORKER_THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(WORLD_SIZE)])
    plan, data = _read_plan(folder, "tf")
    for scenario in plan:
        start = time.perf_counter()
        run_scenario(strategy, scenario, data, folder)
        print(f"{scenario.label} {scenario.dtype}: {time.perf_counter() - start:.2f} s", flush=True)
