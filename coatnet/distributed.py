"""Several processes (``torchrun``): process-group set-up, agreement checks, and gathering state.

Backends: NCCL on CUDA, gloo on CPU. With one process every function is a cheap no-op.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from coatnet.evaluation import EvalResult


def init(device: str | None, *, timeout: timedelta | None = None) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, or (0, 1) for a single process. Each CUDA process
    takes the GPU of its local rank. ``timeout``: how long a collective (a barrier) may wait for the
    others (the backend's default when None)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def finish(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_have_data(n: int, world: int) -> bool:
    """Under DDP every process must step together: skip a batch everywhere if one process has none."""
    if world == 1:
        return n > 0
    flag = torch.tensor([1 if n > 0 else 0])
    all_reduce(flag, world, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def all_reduce(tensor: torch.Tensor, world: int, op: dist.ReduceOp = dist.ReduceOp.SUM) -> None:
    """In-place all-reduce of a CPU tensor (through the GPU when the backend is NCCL)."""
    if world == 1:
        return
    wire = _to_wire(tensor)
    dist.all_reduce(wire, op=op)
    tensor.copy_(wire.cpu())


def all_gather(tensor: torch.Tensor, world: int) -> list[torch.Tensor]:
    """Every process's copy of an equally shaped CPU tensor, on the CPU."""
    if world == 1:
        return [tensor]
    wire = _to_wire(tensor)
    gathered = [torch.empty_like(wire) for _ in range(world)]
    dist.all_gather(gathered, wire)
    return [g.cpu() for g in gathered]


def _to_wire(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.cuda() if dist.get_backend() == "nccl" else tensor


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def gather_rng(world: int) -> dict[str, list[torch.Tensor]]:
    """The random-number states of every process (CPU, and CUDA when in use), for exact resumption."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "cpu": all_gather(torch.get_rng_state(), world),
        "cuda": all_gather(torch.cuda.get_rng_state(), world) if cuda else [],
    }


def average_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating buffers (BatchNorm running statistics) over the processes.

    DDP keeps parameters equal, but each process updates its running statistics from its own batches.
    """
    if world == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            total = buffer.detach().cpu().clone()
            all_reduce(total, world)
            buffer.copy_(total / world)


def rank_checksums(model: torch.nn.Module, world: int) -> list[tuple[float, ...]]:
    """Under DDP, checksums of each process's weights and buffers (they must agree); empty for one."""
    if world == 1:
        return []
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    flat = torch.cat([t.detach().double().flatten().cpu() for t in tensors])
    ramp = torch.linspace(1.0, 2.0, len(flat), dtype=torch.float64)
    sums = torch.stack([flat.sum(), (flat * flat).sum(), (flat * ramp).sum()])
    return [tuple(s.tolist()) for s in all_gather(sums, world)]


def merge_eval(result: EvalResult, world: int) -> EvalResult:
    """Sum the evaluations of every process's share of a dataset into one result."""
    if world == 1:
        return result
    sums = torch.tensor(
        [result.loss * result.count, result.top5 * result.count, result.count], dtype=torch.float64
    )
    confusion = torch.tensor(result.confusion, dtype=torch.long)
    all_reduce(sums, world)
    all_reduce(confusion, world)
    count = max(sums[2].item(), 1)
    totals = confusion.sum(1)
    return EvalResult(
        top1=confusion.diagonal().sum().item() / count, top5=sums[1].item() / count,
        loss=sums[0].item() / count,
        per_class=[None if t == 0 else confusion[i, i].item() / t.item() for i, t in enumerate(totals)],
        confusion=confusion.tolist(), class_names=result.class_names, count=int(sums[2].item()),
        skipped=result.skipped,
    )  # fmt: skip
