"""The suite leaves no process behind: a subprocess helper kills what it started on every way out, and
the suite's end check fails a run that left one (tested on a run of its own)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support import processes

LEAVES_ONE = """
import subprocess

def test_starts_a_process_and_forgets_it():
    subprocess.Popen(["sleep", "120"], start_new_session=True)
"""


@pytest.mark.slow
def test_a_run_that_leaves_a_process_fails_and_names_it(tmp_path) -> None:
    (tmp_path / "test_leaves.py").write_text(LEAVES_ONE)
    # the end check waits 1 s, not 10, for the process it then names
    options = ["-q", "-p", "tests.conftest", "-p", "no:cacheprovider", "-o", "end_check_wait_s=1"]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *options,
        "--rootdir",
        str(tmp_path),
        str(tmp_path / "test_leaves.py"),
    ]
    done = processes.run(command, timeout=120)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "processes left behind by the tests" in done.stderr and "sleep 120" in done.stderr
    assert "1 passed" in done.stdout  # the test itself passed: the end check failed the run


def test_a_timed_out_command_is_killed_with_everything_it_started() -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '120']); time.sleep(120)"
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        processes.run([sys.executable, "-c", script], timeout=2)
    assert time.monotonic() - began < 30
    assert not any("sleep 120" in line for line in processes.left_behind())


def test_what_a_finished_command_left_in_its_group_is_killed_with_it() -> None:
    """The command ends at once and leaves a child behind (orphaned, so no longer below its pid): the child
    is in the command's process group, which is killed when the command is done."""
    done = processes.run(["sh", "-c", "sleep 121 > /dev/null 2>&1 & echo started"], timeout=30)
    assert done.returncode == 0 and "started" in done.stdout
    assert not any("sleep 121" in line for line in processes.left_behind())


def test_a_timed_out_command_whose_orphan_holds_its_pipe_ends_at_the_timeout() -> None:
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):  # the orphan keeps stdout open: killed with the group
        processes.run(["sh", "-c", "(sleep 122 &); exec sleep 123"], timeout=2)  # 122: orphaned at once
    assert time.monotonic() - began < 30
    assert not any("sleep 12" in line for line in processes.left_behind())


UNIT = """
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(4))
def test_records_its_worker(n):
    with open(Path(__file__).with_suffix(".workers"), "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


@pytest.mark.slow
def test_each_test_file_runs_whole_on_one_worker(tmp_path) -> None:
    """The suite's units (tests/conftest.py): a file's tests go to one pytest-xdist worker, so that its
    module fixtures are built once (pytest 9.2 ignores the id xdist 3.8 writes for this)."""
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(UNIT)
    options = ["-q", "-p", "tests.conftest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"]
    command = [sys.executable, "-m", "pytest", *options, "--rootdir", str(tmp_path), str(tmp_path)]
    done = processes.run(command, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("test_one", "test_two"):
        workers = (tmp_path / f"{name}.workers").read_text().split()
        assert len(workers) == 4 and len(set(workers)) == 1, (name, workers)
