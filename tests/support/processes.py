"""Subprocesses for tests: each started in a session (process group) of its own, killed with everything
it started on every way out, and the suite's check that nothing is left at its end.

torchrun starts each worker in a session of its own, so killing a group is not enough: the tree is
walked through /proc. The test process makes itself a child subreaper (Linux), so that a worker whose
parent died is re-parented to it and stays findable, instead of running on under init.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of this process's children come to this process (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _table() -> dict[int, tuple[int, str, int]]:
    """{pid: (parent pid, state, process group)} of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0], int(fields[2]))
    return table


def descendants(pid: int) -> list[int]:
    """The live processes (not zombies) below ``pid``."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if table[p][1] != "Z":
            found.append(p)
        todo += children.get(p, [])
    return found


def _signal(pids: Sequence[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def kill_tree(pid: int, *, grace_s: float = 10.0) -> None:
    """SIGTERM to ``pid`` and everything below it, then SIGKILL to whatever is left after ``grace_s``."""
    tree = [pid, *descendants(pid)]
    _signal(tree, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.05)
    _signal([*tree, *descendants(pid)], signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_group(pgid: int, *, grace_s: float = 10.0) -> None:
    """SIGTERM to every process of group ``pgid``, then SIGKILL to whatever is left after ``grace_s``. Safe
    after the group's leader has been reaped: Linux reuses no id that a live process group still holds, and
    an empty group is simply gone."""

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    if not signal_group(signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(
        state != "Z" and group == pgid for _, state, group in _table().values()
    ):
        time.sleep(0.05)
    signal_group(signal.SIGKILL)


@contextlib.contextmanager
def started(command: Sequence[str], **popen) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen`` in a new session; on leaving, however the block ends, the process and all it
    started are killed (SIGTERM, then SIGKILL after 10 s): its tree while it runs (a pid is signalled only
    while its process is unreaped, so never another process that took the number), then whatever is left
    of its process group (what it started, orphaned when it ended)."""
    popen.setdefault("cwd", ROOT)
    process = subprocess.Popen(list(command), start_new_session=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            kill_tree(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        kill_group(process.pid)


def run(
    command: Sequence[str], *, timeout: float, env: dict | None = None, cwd: Path | str = ROOT
) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True, text=True)`` in a session of its own, everything it started
    killed on timeout (``subprocess.TimeoutExpired`` then, with what it printed) and after it ends."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started(command, env=env, cwd=cwd, **pipes) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid, grace_s=0)
            kill_group(process.pid, grace_s=0)  # and what it orphaned, which may hold its pipes open
            out, err = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# torchrun as ``python -m torch.distributed.run`` runs it (its arguments, its launch configuration, its
# elastic agent watching the workers), in one interpreter that imports torch and the project once and forks
# the two workers from itself: torchrun's own start, an agent interpreter and two worker interpreters each
# importing it all again, cost about 4 core-s a launch before any work. Each worker runs its script or
# module as ``python`` would: an uncaught exception's traceback on stderr and exit status 1, and at its end
# the exit functions it registered (not the launcher's), as an interpreter's exit runs them; the agent then
# holds the finished worker until every worker has finished, as it holds a function's worker.
TORCHRUN = """
import atexit, importlib, runpy, sys, traceback
from torch.distributed import run
from torch.distributed.launcher.api import elastic_launch
preload, argv = sys.argv[1].split(","), sys.argv[2:]
for name in filter(None, preload):
    importlib.import_module(name)
config, _, command = run.config_from_args(run.parse_args(argv))
config.start_method = "fork"
command = [a for a in command if a != "-u"]

def worker(*command):
    sys.argv = list(command[1:]) if command[0] == "-m" else list(command)
    atexit._clear()
    try:
        if command[0] == "-m":
            runpy.run_module(command[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(command[0], run_name="__main__")
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()

elastic_launch(config, entrypoint=worker)(*command)
"""


def torchrun(
    *args: str, timeout: float = 300, env: dict | None = None, preload: Sequence[str] = ("coatnet.cli",)
) -> subprocess.CompletedProcess:
    """Two CPU processes under torchrun (``torch.distributed.run``'s agent, forking its workers:
    :data:`TORCHRUN`) on a free port, one thread each; ``preload``: the modules the launcher imports once
    for both workers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", **(env or {})}
    command = [sys.executable, "-c", TORCHRUN, ",".join(preload), "--nnodes=1", "--nproc_per_node=2",
               f"--master_port={free_port()}", *args]  # fmt: skip
    return run(command, timeout=timeout, env=env)


def left_behind() -> list[str]:
    """The processes still running below this one, as 'pid command' lines."""
    lines = []
    for p in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            command = (Path("/proc") / str(p) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            lines.append(f"{p} {command.strip()[:200]}")
    return lines
