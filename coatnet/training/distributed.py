"""Several processes (``torchrun``): set-up, collectives that cannot hang, and waits that notice a lost peer.

Backends: NCCL on CUDA, gloo on CPU. With one process every function is a cheap no-op.

Two kinds of waiting, two mechanisms:

- A collective (all-reduce, all-gather, a short barrier) waits only for a peer's short work: a training
  step, its share of an evaluation. The process group's timeout (:data:`PEER_TIMEOUT`, seconds) ends a
  mismatch (one process making a collective the other never makes) with one line, :class:`PeerLost`,
  naming the rank and the step (:func:`at`).
- :func:`wait_for_peers` waits for a peer's long work (a study's batches, the layout study's runs: hours):
  it polls the rendezvous store, and every process beats a heartbeat counter there from a thread of its
  own, so a peer that died or already finished is noticed within :data:`LOST_AFTER_S` seconds.

Why teardown needs care (the hang this module fixes): gloo runs collectives on worker threads, and a
finished collective's tensors are let go by that thread, which takes the GIL to release their Python
objects. The group's destructor joins those threads while holding the GIL (it runs when the last owner
goes, such as the DDP wrapper at the end of ``train``). If a worker had not yet let go of its last
collective, each waits for the other forever. So every tensor this module hands to the backend is a fresh
view tracked by a weak reference, and :func:`finish` waits, with the GIL free, until the backend has let
go of all of them before the group is destroyed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from datetime import timedelta
from itertools import count

import torch
import torch.distributed as dist

from coatnet.training.evaluation import EvalResult

PEER_TIMEOUT = timedelta(seconds=60)
CONNECT_TIMEOUT = timedelta(seconds=120)  # for the processes to connect, before any collective
HEARTBEAT_S = 5.0
LOST_AFTER_S = 45.0
_KEY = "coatnet"


class PeerLost(RuntimeError):
    """Another process stopped answering: it died, finished early, or runs different code."""


class _Process:
    """This process's place among the others (one per process, like the process group itself)."""

    def __init__(self) -> None:
        self.place = "start-up"
        self.handed: list[weakref.ref] = []
        self.beating: tuple[threading.Event, threading.Thread] | None = None
        self.waits = count()


_here = _Process()


def init(
    device: str | None, *, timeout: timedelta = PEER_TIMEOUT, heartbeat_s: float = HEARTBEAT_S
) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, or (0, 1) for a single process. Each CUDA process
    takes the GPU of its local rank. ``timeout``: how long a collective waits for the others' short work;
    long waits go through :func:`wait_for_peers`, which the process's heartbeat (every ``heartbeat_s``)
    keeps informed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # connecting the processes may take longer than a collective may wait (a loaded machine took
        # over 2 s): the connection gets CONNECT_TIMEOUT, the collectives ``timeout`` once connected
        settable = hasattr(dist.distributed_c10d, "_set_pg_timeout")
        connect = max(timeout, CONNECT_TIMEOUT) if settable else timeout
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=connect)
        if connect != timeout:
            dist.distributed_c10d._set_pg_timeout(timeout)
        _start_heartbeat(heartbeat_s)
    return dist.get_rank(), dist.get_world_size()


def at(place: str) -> None:
    """Say where this process is (``"epoch 2, step 12"``): a lost peer's message names it."""
    _here.place = place


def finish(world: int) -> None:
    """Meet the others, let the backend go of every tensor, then destroy the process group."""
    if world > 1 and dist.is_initialized():
        barrier(world)
        _settle()
        _stop_heartbeat()
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
    wire = _hand(tensor)
    _collective("all_reduce", lambda: dist.all_reduce(wire, op=op))
    tensor.copy_(wire)


def all_gather(tensor: torch.Tensor, world: int) -> list[torch.Tensor]:
    """Every process's copy of an equally shaped CPU tensor, on the CPU."""
    if world == 1:
        return [tensor]
    wire = _hand(tensor)
    gathered = [_hand(torch.empty_like(wire)) for _ in range(world)]
    _collective("all_gather", lambda: dist.all_gather(gathered, wire))
    return [g.cpu().clone() for g in gathered]  # copies: the handed views must not outlive the call


def barrier(world: int) -> None:
    """A barrier for short waits (the others are about to arrive); see :func:`wait_for_peers` for long."""
    if world > 1:
        _collective("barrier", dist.barrier)


def wait_for_peers(name: str, world: int, *, lost_after_s: float = LOST_AFTER_S, poll_s: float = 0.5) -> None:
    """A barrier for long waits: arrive at ``name``, then poll the store until every process has.

    A peer whose heartbeat has not moved for ``lost_after_s`` seconds (it died, or finished without
    arriving) ends the wait with :class:`PeerLost`; a peer still working keeps beating, however long. A
    peer that waits at another meeting (the processes run different code) ends it too, at once: each
    process says in the store which meeting it waits at (the how-many-th, and its name).
    """
    if world == 1:
        return
    store, rank = dist.distributed_c10d._get_default_store(), dist.get_rank()
    number = next(_here.waits)
    tag = f"{_KEY}/arrived/{number}-{name}"
    store.set(f"{_KEY}/at/{rank}", f"{number}\n{name}")
    store.set(f"{tag}/{rank}", "1")
    seen: dict[int, tuple[bytes, float]] = {}
    while True:
        missing = [r for r in range(world) if not store.check([f"{tag}/{r}"])]
        if not missing:
            return
        now = time.monotonic()
        for peer in missing:
            _check_same_meeting(store, rank, world, peer, number, name)
            beat = store.get(f"{_KEY}/beat/{peer}") if store.check([f"{_KEY}/beat/{peer}"]) else b""
            if peer not in seen or seen[peer][0] != beat:
                seen[peer] = (beat, now)
            elif now - seen[peer][1] > lost_after_s:
                raise PeerLost(
                    f"rank {rank} of {world} ({_here.place}): rank {peer} has not answered for "
                    f"{lost_after_s:.0f} s while this process waited at {name!r}; it stopped or runs "
                    "different code: see its output"
                )
        time.sleep(poll_s)


def _check_same_meeting(store, rank: int, world: int, peer: int, number: int, name: str) -> None:
    """A peer behind this process is on its way here; one at this meeting's number under another name, or
    past it, waits where this process never will."""
    if not store.check([f"{_KEY}/at/{peer}"]):
        return
    peer_number, peer_name = store.get(f"{_KEY}/at/{peer}").decode().split("\n", 1)
    if int(peer_number) > number and store.check([f"{_KEY}/arrived/{number}-{name}/{peer}"]):
        return  # it arrived here after this poll began, and went on to the next meeting
    if int(peer_number) > number or (int(peer_number) == number and peer_name != name):
        raise PeerLost(
            f"rank {rank} of {world} ({_here.place}): rank {peer} waits at {peer_name!r} while this process "
            f"waits at {name!r}; the processes run different code: run the same on each"
        )


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


def lost(error: BaseException, world: int) -> PeerLost:
    """A backend's timeout or broken connection as one line naming this rank and where it was."""
    rank = dist.get_rank() if dist.is_initialized() else "?"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PeerLost(
        f"rank {rank} of {world} ({_here.place}): the other processes did not answer ({reason[-160:]}); "
        "one stopped or runs different code: see its output"
    )


# where gloo's and NCCL's own errors say they come from (gloo raises a plain RuntimeError whose message
# starts with its source file: "[.../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed")
_BACKEND_MARKS = ("third_party/gloo/", "ProcessGroupGloo", "ProcessGroupNCCL", "NCCL error")


def from_backend(error: BaseException) -> bool:
    """Whether ``error`` came from the communication backend (a timeout, a closed connection): a
    ``torch.distributed.DistError``, or an error that names gloo's or NCCL's sources."""
    return isinstance(error, dist.DistError) or any(mark in str(error) for mark in _BACKEND_MARKS)


def _collective(name: str, run) -> None:
    try:
        run()
    except RuntimeError as error:
        if from_backend(error):
            raise lost(error, dist.get_world_size()) from None
        raise


def _hand(tensor: torch.Tensor) -> torch.Tensor:
    """A fresh view of ``tensor`` (moved to the GPU under NCCL) to give the backend, tracked until it is
    let go: its Python object lives as long as a backend thread holds it."""
    wire = tensor.to("cuda", copy=True) if dist.get_backend() == "nccl" else tensor.view(tensor.shape)
    if len(_here.handed) > 256:
        _here.handed = [ref for ref in _here.handed if ref() is not None]
    _here.handed.append(weakref.ref(wire))
    return wire


def _settle(limit_s: float = 30.0) -> None:
    """Wait, with the GIL free, until the backend's threads have let go of every tensor handed to it."""
    deadline = time.monotonic() + limit_s
    while any(ref() is not None for ref in _here.handed) and time.monotonic() < deadline:
        time.sleep(0.001)
    _here.handed = [ref for ref in _here.handed if ref() is not None]
    if _here.handed:
        print(
            f"coatnet: the communication backend still holds {len(_here.handed)} tensors after "
            f"{limit_s:.0f} s; destroying the process group anyway",
            file=sys.stderr,
        )


def abandon(world: int) -> None:
    """After an error: let the backend go of what it holds and destroy the group, meeting nobody."""
    if world > 1 and dist.is_initialized():
        _settle(limit_s=5.0)
        _stop_heartbeat()
        dist.destroy_process_group()


def _start_heartbeat(every_s: float) -> None:
    store, rank = dist.distributed_c10d._get_default_store(), dist.get_rank()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                store.add(f"{_KEY}/beat/{rank}", 1)
            except RuntimeError:  # the store went away: the run is ending
                return
            stop.wait(every_s)

    thread = threading.Thread(target=beat, name="coatnet-heartbeat", daemon=True)
    thread.start()
    _here.beating = (stop, thread)
    atexit.register(_stop_heartbeat)  # a script that exits without finish(): stop beating first


def _stop_heartbeat() -> None:
    if _here.beating is not None:
        stop, thread = _here.beating
        stop.set()
        thread.join(timeout=10)
        _here.beating = None
