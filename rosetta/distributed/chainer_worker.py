"""One ChainerMN worker: rank ``comm.rank`` of ``WORLD_SIZE`` MPI processes, CPU.

Started by :func:`rosetta.distributed.run_workers` through ``mpirun -n WORLD_SIZE python -m
rosetta.distributed chainer FOLDER``. Each scenario builds the Chainer port's model
(``make_adapter("chainer", ...)``), wraps the port's optimizer in ChainerMN's multi-node optimizer
(which averages the gradients over the ranks) and trains on this rank's rows of every global
batch; rank 0 writes the canonical parameters after every step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from chainer_impl.compat import import_chainer

chainer = import_chainer()

import chainermn  # noqa: E402
from mpi4py import MPI  # noqa: E402

from chainer_impl.optimizers import make_optimizer  # noqa: E402
from chainer_impl.train import loss_fn  # noqa: E402
from rosetta.adapters import make_adapter, optimizer_hparams  # noqa: E402
from rosetta.distributed import (  # noqa: E402
    GLOBAL_BATCH,
    WORLD_SIZE,
    Scenario,
    _read_plan,
    _save,
    _scenario_masks,
    eval_input,
    mask_rows,
    model_input,
    replica_rows,
    rescale_running_var,
)
from rosetta.weights import init_params  # noqa: E402


class MultiNodeBatchNorm(chainermn.links.MultiNodeBatchNormalization):
    """ChainerMN's synchronised BatchNorm, counting the values per feature it sees."""

    values_per_feature = 0

    def __call__(self, x: chainer.Variable, finetune: bool = False) -> chainer.Variable:
        if chainer.config.train:
            self.values_per_feature = x.size // x.shape[1]
        return super().__call__(x, finetune)


def contract_running_var(stored: np.ndarray, initial: np.ndarray, layer: MultiNodeBatchNorm, steps: int,
                         ) -> np.ndarray:
    """NOTE(framework:bn-per-replica): MultiNodeBatchNormalization normalises with the global
    statistics but unbiases its running variance with the *local* count (m_l / (m_l - 1), m_l = 50
    values per feature here, not the global 100): 1% too large on the MLP after 20 steps. The
    contract's running variance is recovered exactly from the stored one."""
    m_local = layer.values_per_feature
    m_global = m_local * WORLD_SIZE
    factor = (m_global / (m_global - 1)) * ((m_local - 1) / m_local)
    return rescale_running_var(stored, initial, layer.decay, steps, factor).astype(stored.dtype)


def sync_batchnorm(model: chainer.Chain, comm: object, dtype: str) -> None:
    """Every L.BatchNormalization child replaced by ChainerMN's MultiNodeBatchNormalization (the
    statistics of the global batch), with the same parameters and running statistics."""
    for name, child in list(model.namedlinks(skipself=True)):
        name = name.lstrip("/")
        if "/" in name or not isinstance(child, chainer.links.BatchNormalization):
            continue
        new = MultiNodeBatchNorm(child.avg_mean.size, comm, decay=child.decay, eps=child.eps,
                                 dtype=np.dtype(dtype))
        new.gamma.array[...] = child.gamma.array
        new.beta.array[...] = child.beta.array
        new.avg_mean[...] = child.avg_mean
        new.avg_var[...] = child.avg_var
        delattr(model, name)
        with model.init_scope():
            setattr(model, name, new)


def replica_spread(model: chainer.Chain, comm: object) -> float:
    """Largest difference of any trainable parameter between this rank and rank 0 (all ranks)."""
    flat = np.concatenate([p.array.ravel() for _, p in sorted(model.namedparams())]).astype(np.float64)
    rank0 = flat.copy()
    comm.mpi_comm.Bcast(rank0, root=0)  # buffer API: no pickling
    gap = np.array(np.max(np.abs(flat - rank0)))
    total = np.zeros_like(gap)
    comm.mpi_comm.Allreduce(gap, total, op=MPI.MAX)
    return float(total)


def run_scenario(scenario: Scenario, comm: object, data: dict[str, np.ndarray], folder: Path) -> None:
    config, dtype, rank = scenario.config(), scenario.dtype, comm.rank
    initial = init_params(config, seed=0, dtype=dtype)
    adapter = make_adapter("chainer", config, initial, dtype)
    model = adapter.model
    if scenario.batchnorm == "sync":
        sync_batchnorm(model, comm, dtype)
    optimizer = chainermn.create_multi_node_optimizer(
        make_optimizer("sgd", model, **optimizer_hparams("sgd", lr=scenario.lr)), comm)
    # ChainerMN's first update() only broadcasts rank 0's parameters (it skips the step); the
    # replicas already start from the same canonical weights, so take that first call now.
    optimizer.is_changed(model)
    comm.bcast_data(model)
    x, t = model_input(data, config, dtype), data["t"]
    history = []
    for step in range(scenario.steps):
        rows = replica_rows(rank)
        start = step * GLOBAL_BATCH
        masks = _scenario_masks(data, scenario, step)
        if masks:
            adapter.set_dropout_masks({n: m[mask_rows(scenario, rank)] for n, m in masks.items()})
        # The port's train step (chainer_impl.train.train_step) with the multi-node optimizer:
        # its update() averages the gradients over the ranks (multi_node_mean_grad) first.
        logits = model.forward(x[start:start + GLOBAL_BATCH][rows], train=True)
        loss = loss_fn(model, logits, t[start:start + GLOBAL_BATCH][rows])
        model.cleargrads()
        loss.backward()
        optimizer.update()
        if rank == 0:
            params = adapter.params()
            for name, layer in model.namedlinks(skipself=True):
                if isinstance(layer, MultiNodeBatchNorm):
                    key = f"{name.lstrip('/')}.running_var"
                    params[key] = contract_running_var(params[key], initial[key], layer, step + 1)
            history.append(params)
    spread = replica_spread(model, comm)
    if rank == 0:
        port = make_adapter("chainer", config, history[-1], dtype)
        predictions = port.predict(eval_input(data, config, dtype, scenario.eval_images))
        _save(folder, "chainer", scenario, history, predictions, spread)


def worker(folder: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    comm = chainermn.create_communicator("naive")
    plan, data = _read_plan(folder, "chainer")
    for scenario in plan:
        start = time.perf_counter()
        run_scenario(scenario, comm, data, folder)
        print(f"rank {comm.rank}: {scenario.label} {scenario.dtype}: {time.perf_counter() - start:.2f} s",
              flush=True)
