"""One torch DDP worker: rank ``RANK`` of ``WORLD_SIZE`` processes over gloo, CPU.

Started by :func:`rosetta.distributed.run_workers` (``python -m rosetta.distributed torch
FOLDER``): the process imports torch once and forks the other ranks (:func:`launch`). Each
scenario builds the torch port's model (``make_adapter("torch", ...)``), wraps it in
``DistributedDataParallel`` and trains it with the port's loss and optimizer on this rank's rows
of every global batch; rank 0 writes the canonical parameters after every step.
"""

# No ``from __future__ import annotations``: DDP's register_comm_hook checks the hook's
# annotations as objects (dist.GradBucket), not strings.
import copy
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - DDP's constructor imports it (1.5 s); here, before the fork
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rosetta.adapters import make_adapter, optimizer_hparams
from rosetta.distributed import (
    GLOBAL_BATCH,
    WORLD_SIZE,
    Scenario,
    _read_plan,
    _save,
    _scenario_masks,
    eval_input,
    fork_ranks,
    mask_rows,
    model_input,
    replica_rows,
)
from rosetta.weights import init_params
from torch_impl.layers import Dropout
from torch_impl.optimizers import make_optimizer
from torch_impl.train import loss_fn
from torch_impl.weights import dump_canonical


def allreduce_sum_hook(state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """A DDP communication hook that sums the gradients (the grads-summed pitfall)."""
    # NOTE(framework:grads-summed): DDP's own all-reduce divides by the world size (the mean of
    # the replicas' mean-loss gradients = the global-batch gradient). A hook (or a Horovod-style
    # all-reduce) that only sums takes WORLD_SIZE times the step with SGD.
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class _AllReduceSum(torch.autograd.Function):
    """torch.distributed.all_reduce (SUM) with its gradient: the gradient is all-reduced too (every
    rank's loss depends on every rank's input through the sum). torch's own
    torch.distributed.nn.functional.all_reduce does the same and is deprecated."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with statistics over the global batch, from torch.distributed's differentiable
    all-reduce: the CPU stand-in for ``torch.nn.SyncBatchNorm``.

    NOTE(framework:bn-per-replica): torch.nn.SyncBatchNorm runs only on accelerators: on CPU tensors its
    forward raises "SyncBatchNorm expected input tensor to be on GPU" and its kernels
    (batch_norm_stats, batch_norm_gather_stats_with_counts) have no CPU implementation. This
    layer computes the same global mean and biased variance with
    torch.distributed's all_reduce, differentiable (its backward all-reduces the gradient, as
    SyncBatchNorm's backward does); on CUDA the worker uses convert_sync_batchnorm itself.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        axes = [0, *range(2, x.dim())]  # per feature (2-D) or per channel over (N, H, W)
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype)
        dist.all_reduce(count)  # values per feature in the global batch
        mean = _AllReduceSum.apply(x.sum(axes)) / count
        xc = x - mean.view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(axes)) / count  # biased, two-pass like the reference
        with torch.no_grad():
            # running = (1 - m) * running + m * batch, torch's momentum m = 1 - bn_momentum;
            # the running variance is the unbiased one (the contract's).
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var * (count / (count - 1)), alpha=self.momentum)
            self.num_batches_tracked.add_(1)
        y = xc / torch.sqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape)


def sync_batchnorm(module: nn.Module, device: str) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised over the process group (in place)."""
    if device != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            layer = GlobalBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum,
                                    dtype=child.weight.dtype)
            layer.load_state_dict(child.state_dict())
            setattr(module, name, layer)
        else:
            sync_batchnorm(child, device)
    return module


def canonical(module: nn.Module, device: str) -> dict[str, np.ndarray]:
    return dump_canonical(module if device == "cpu" else copy.deepcopy(module).cpu())


def replica_spread(module: nn.Module) -> float:
    """Largest difference of any trainable parameter between this rank and rank 0 (all ranks)."""
    flat = torch.cat([p.detach().flatten() for p in module.parameters()])
    rank0 = flat.clone()
    dist.broadcast(rank0, src=0)
    gap = (flat - rank0).abs().max().to(torch.float64)
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap)


def run_scenario(scenario: Scenario, rank: int, data: dict[str, np.ndarray], folder: Path,
                 device: str) -> None:
    config, dtype = scenario.config(), scenario.dtype
    adapter = make_adapter("torch", config, init_params(config, seed=0, dtype=dtype), dtype)
    module = adapter.model
    if scenario.batchnorm == "sync":
        module = sync_batchnorm(module, device)
    module.to(device)
    # broadcast_buffers (the default): rank 0's BatchNorm running statistics are copied to every
    # rank before each forward.
    ddp = DistributedDataParallel(module)
    if scenario.variant == "grads-summed":
        ddp.register_comm_hook(None, allreduce_sum_hook)
    optimizer = make_optimizer("sgd", module, **optimizer_hparams("sgd", lr=scenario.lr))
    dropouts = {n: m for n, m in module.named_children() if isinstance(m, Dropout)}
    x, t = model_input(data, config, dtype), data["t"]
    history = []
    for step in range(scenario.steps):
        rows = replica_rows(rank)
        start = step * GLOBAL_BATCH
        xs = torch.from_numpy(x[start:start + GLOBAL_BATCH][rows]).to(device)
        ts = torch.from_numpy(t[start:start + GLOBAL_BATCH][rows]).to(device)
        masks = _scenario_masks(data, scenario, step)
        for name, layer in dropouts.items():
            layer.set_mask(torch.from_numpy(np.ascontiguousarray(masks[name][mask_rows(scenario, rank)]))
                           .to(device))
        # The port's train step (torch_impl.train.train_step) with the DDP wrapper in the forward:
        # DDP's backward hooks all-reduce (average) the gradients before optimizer.step().
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(module, ddp(xs, train=True), ts)
        loss.backward()
        optimizer.step()
        if rank == 0:
            history.append(canonical(module, device))
    spread = replica_spread(module)
    if rank == 0:
        port = make_adapter("torch", config, history[-1], dtype)
        predictions = port.predict(eval_input(data, config, dtype, scenario.eval_images))
        _save(folder, "torch", scenario, history, predictions, spread)


def worker(rank: int, folder: Path) -> None:
    torch.set_num_threads(int(os.environ.get("ROSETTA_WORKER_THREADS", "1")))
    device = os.environ.get("ROSETTA_DDP_DEVICE", "cpu")
    if device != "cpu":
        torch.backends.cudnn.allow_tf32 = False  # float32 convolutions in float32
        torch.backends.cuda.matmul.allow_tf32 = False
    plan, data = _read_plan(folder, "torch")
    dist.init_process_group("gloo", init_method=f"file://{folder}/torch-store", rank=rank,
                            world_size=WORLD_SIZE, timeout=timedelta(seconds=120))
    try:
        for scenario in plan:
            start = time.perf_counter()
            run_scenario(scenario, rank, data, folder, device)
            print(f"rank {rank}: {scenario.label} {scenario.dtype}: {time.perf_counter() - start:.2f} s",
                  flush=True)
    finally:
        dist.destroy_process_group()


def launch(folder: Path) -> None:
    """Every rank: rank 0 in this process, ranks 1.. forked from it after the imports (one torch
    import for all ranks instead of one per process: 2.5 s of CPU each here, with the 2 cores
    shared by every worker). The fork comes before torch has run an op, so no thread pool or
    process group is inherited; each rank opens its own gloo process group."""
    fork_ranks(lambda rank: worker(rank, folder), WORLD_SIZE, folder, "torch")
