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
