"""Interrupted work: `coatnet train` killed with SIGKILL mid-epoch, or at each of several points inside
its checkpoint writes (``COATNET_FAULT``, deterministic), leaves ``last.safetensors`` and
``resume.safetensors`` complete and loadable, and ``--resume`` ends bit-identical to an unbroken run. A
full disk and an output path that cannot be made give one clear line and never a broken checkpoint."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import coatnet
from coatnet.cli.commands import main as coatnet_main
from coatnet.files import WriteError
from coatnet.training.loop import TrainSettings, train
from coatnet.training.state import load_resume
from tests.support import processes
from tests.support.data import make_fashion_like

ARGS = ["--model", "coatnet_toy", "--img-size", "32", "--epochs", "3", "--batch-size", "16", "--lr", "3e-3",
        "--warmup-epochs", "0.5", "--drop-path", "0.1", "--hflip", "--crop-padding", "2", "--seed", "7",
        "--workers", "0", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return "fashion-mnist:" + str(make_fashion_like(tmp_path_factory.mktemp("fmnist"), n_train=96, n_test=40))


@pytest.fixture(scope="module")
def unbroken(data: str, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("unbroken")
    assert coatnet_main(["train", "--out", str(out), "--data", data, *ARGS]) == 0
    return load_file(out / "last.safetensors")


# One interpreter imports torch and the trainer once (and the compiler, which an optimizer's first step
# imports: together about 4 s a process here), then forks once per case; each case's process trains with
# its own COATNET_FAULT (read at each write) or its own kill, and must die of SIGKILL. A fork from a process
# that has run no parallel work is a fresh trainer: its thread pool starts in the child.
ZYGOTE = """
import json, os, signal, sys
import torch, torch._dynamo
import coatnet.training.loop as loop
from coatnet.cli.commands import main

for case in json.loads(sys.argv[1]):
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.environ.update(case["env"])
        if case["kill_at_step"]:
            step = loop._step
            def killing(*args, _n=[0]):
                _n[0] += 1
                if _n[0] == case["kill_at_step"]:
                    os.kill(os.getpid(), signal.SIGKILL)
                return step(*args)
            loop._step = killing
        try:
            code = main(case["argv"])
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(100)
    _, status = os.waitpid(pid, 0)
    print(json.dumps([case["name"], os.WTERMSIG(status) if os.WIFSIGNALED(status) else None]), flush=True)
"""
KILL_MID_EPOCH = 9  # the third step of epoch 2 (6 steps an epoch)
FAULTS = (
    "last.safetensors@2:bytes=1000",
    "last.safetensors@2:before-rename",
    "last.safetensors@2:after-rename",
    "resume.safetensors@2:bytes=100",
    "resume.safetensors@2:before-rename",
    "resume.safetensors@2:after-rename",
)


@pytest.fixture(scope="module")
def killed(data: str, tmp_path_factory) -> dict[str, Path]:
    """Each case's output folder, ``coatnet train`` killed in it: mid-epoch (``"mid-epoch"``) or at each
    fault of :data:`FAULTS` (by name)."""
    root = tmp_path_factory.mktemp("killed")
    cases = [{"name": "mid-epoch", "env": {}, "kill_at_step": KILL_MID_EPOCH}]
    cases += [{"name": fault, "env": {"COATNET_FAULT": fault}, "kill_at_step": 0} for fault in FAULTS]
    for i, case in enumerate(cases):
        case["argv"] = ["train", "--out", str(root / str(i)), "--data", data, *ARGS]
    # as many threads as this process trains with (bit-identical results need the same reductions)
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = processes.run([sys.executable, "-c", ZYGOTE, json.dumps(cases)],
                         env={**os.environ, **threads}, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ends = dict(json.loads(line) for line in done.stdout.splitlines())
    for case in cases:
        assert ends.get(case["name"]) == signal.SIGKILL, (case["name"], ends, done.stderr[-2000:])
    return {case["name"]: Path(case["argv"][2]) for case in cases}


def assert_complete(out: Path) -> int:
    """Both files load; returns the epoch the resume state holds."""
    assert coatnet.load_checkpoint(out / "last.safetensors").config.name == "coatnet_toy"
    state = load_resume(out / "resume.safetensors")
    return int(state["epoch"])


def assert_resumes_to(out: Path, unbroken: dict[str, torch.Tensor]) -> None:
    assert coatnet_main(["train", "--out", str(out), "--resume", "--quiet", "--workers", "0"]) == 0
    resumed = load_file(out / "last.safetensors")
    assert resumed.keys() == unbroken.keys()
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken), "not bit-identical"


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_is_bit_identical(killed: dict[str, Path], unbroken) -> None:
    out = killed["mid-epoch"]
    assert assert_complete(out) == 1
    assert_resumes_to(out, unbroken)


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_killed_inside_a_checkpoint_write_leaves_complete_files(
    fault: str, killed: dict[str, Path], unbroken
) -> None:
    out = killed[fault]
    epoch = assert_complete(out)
    assert epoch == (2 if fault.startswith("resume") and fault.endswith("after-rename") else 1)
    assert_resumes_to(out, unbroken)


def test_a_full_disk_is_one_line_and_no_broken_checkpoint(
    tmp_path: Path, data: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("COATNET_FAULT", "resume.safetensors@1:enospc")
    capsys.readouterr()
    assert coatnet_main(["train", "--out", str(tmp_path), "--data", data, *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err and "resume.safetensors" in err, err
    assert not (tmp_path / "resume.safetensors").exists() and not list(tmp_path.glob(".*.tmp"))
    assert coatnet.load_checkpoint(tmp_path / "last.safetensors").config.name == "coatnet_toy"


def test_an_output_path_through_a_file_is_one_line(tmp_path: Path, data: str, capsys) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    capsys.readouterr()
    out = tmp_path / "notes.txt" / "run"
    assert coatnet_main(["train", "--out", str(out), "--data", data, *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "notes.txt" in err and "is a file, not a folder" in err, err
    with pytest.raises(WriteError, match="is a file"):
        train(TrainSettings(model="coatnet_toy", data=data, img_size=32), out, progress=False)


def test_an_unknown_fault_point_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coatnet.files import write_text

    monkeypatch.setenv("COATNET_FAULT", "notes.txt@1:sometimes")
    with pytest.raises(ValueError, match="bytes=N, before-rename, after-rename or enospc"):
        write_text(tmp_path / "notes.txt", "hello")
