"""Several processes never hang: a collective one process makes alone ends in seconds with one line
naming the rank and where it was; a long wait goes on while the peer beats and ends within a minute
when it stops; a script that trains under torchrun and exits ends (the test_training DDP test)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import processes

WORKER = """
import sys, time, torch
from datetime import timedelta
from coatnet.training import distributed
mode = sys.argv[1]
rank, world = distributed.init("cpu", timeout=timedelta(seconds=2), heartbeat_s=0.2)
distributed.at("step 7")
if mode == "mismatch" and rank == 1:
    distributed.all_reduce(torch.ones(1), world)  # the other process never makes this collective
    print("not reached")
if mode == "mismatch" and rank == 0:
    time.sleep(10)  # alive, busy elsewhere: the collective's timeout ends it, not a closed connection
if mode == "long-work":  # the first process works far longer than a collective's timeout
    if rank == 0:
        time.sleep(5)
    distributed.wait_for_peers("long work", world, lost_after_s=2.5)
    distributed.finish(world)
    sys.stdout.write(f"rank {rank} met its peer\\n")  # one write: the two processes share the pipe
if mode == "other-meeting":  # each process waits at a meeting the other never comes to, both beating
    distributed.wait_for_peers("the merge" if rank == 0 else "the next batch", world, lost_after_s=60)
if mode == "peer-gone":  # the second process ends without arriving
    if rank == 0:
        distributed.wait_for_peers("never reached", world, lost_after_s=2)
"""


def launch(tmp_path: Path, mode: str):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    began = time.monotonic()
    done = processes.torchrun(str(script), mode, timeout=120)
    return done, time.monotonic() - began


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "PeerLost:" in line]


@pytest.mark.slow
def test_a_collective_only_one_process_makes_ends_in_seconds_naming_rank_and_step(tmp_path):
    done, seconds = launch(tmp_path, "mismatch")
    assert done.returncode != 0 and "not reached" not in done.stdout
    lines = error_lines(done.stderr)
    assert lines and "rank 1 of 2 (step 7)" in lines[0], done.stderr[-3000:]
    assert seconds < 60


@pytest.mark.slow
def test_a_long_wait_lasts_while_the_peer_beats(tmp_path):
    done, _ = launch(tmp_path, "long-work")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 met its peer" in done.stdout and "rank 1 met its peer" in done.stdout


@pytest.mark.slow
def test_a_peer_that_ends_without_arriving_is_noticed_within_seconds(tmp_path):
    done, seconds = launch(tmp_path, "peer-gone")
    lines = error_lines(done.stderr)
    assert done.returncode != 0 and lines, done.stderr[-3000:]
    assert "rank 0 of 2 (step 7): rank 1 has not answered for 2 s" in lines[0]
    assert seconds < 60


def test_peers_waiting_at_different_meetings_end_at_once_naming_both(tmp_path):
    """Both processes beat, so neither is lost: each sees that the other waits elsewhere and stops."""
    done, seconds = launch(tmp_path, "other-meeting")
    lines = error_lines(done.stderr)
    assert done.returncode != 0 and lines, done.stderr[-3000:]
    # the first to see it stops, and torchrun ends the other: either one's line names both meetings
    both = ("rank 1 waits at 'the next batch' while this process waits at 'the merge'",
            "rank 0 waits at 'the merge' while this process waits at 'the next batch'")  # fmt: skip
    assert any(meetings in line for line in lines for meetings in both), lines
    assert seconds < 40  # not the 60 s a lost peer would take


def test_only_the_backends_own_errors_count_as_a_lost_peer():
    import torch.distributed as dist

    from coatnet.training.distributed import from_backend

    gloo = "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:129] Timed out waiting 2000ms"
    assert from_backend(RuntimeError(gloo))
    assert from_backend(dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:1971, unhandled"))
    assert not from_backend(RuntimeError("the gloo backend needs a CPU tensor, got a cuda:0 one"))
    assert not from_backend(RuntimeError("mat1 and mat2 shapes cannot be multiplied (NCCL in a name)"))
