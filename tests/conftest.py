"""Shared fixtures and marker handling: gpu tests skip without CUDA, browser tests without Chromium."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

# every process the suite starts (this one, which runs the tests under -n 0; the workers; the app server;
# torchrun's and the CLI's processes) runs beside others on 2 cores: OpenMP threads that spin while they
# wait for work burn a core another process needs (the Layouts page's first visit took 21 core-s instead
# of 3.4 next to one busy process; the reference's examples 95 s instead of 15). OpenMP reads the policy
# once, when torch loads it: so here, before this process's first `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

try:  # pytest 9.2 keeps a node's id here; before it, pytest-xdist's own ``_nodeid`` suffix works
    from _pytest.nodeid import NodeId
except ImportError:  # pragma: no cover
    NodeId = None

from tests.support.processes import become_subreaper, kill_tree, left_behind
from tests.support.system import CHROMIUM, PARTS, skip_reason

# the collector's young generation 50,000 allocations deep, not 700: a test process holds models, figures
# and apps (a heap of a million objects and more), over which the default thresholds ran about 9,400
# collections in a run of three test files (11.7 of its 129 core-s; 4.4 at these, its peak memory unchanged)
gc.set_threshold(50_000, 20, 20)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips (gpu without CUDA, browser without Chromium), and the units pytest-xdist hands out whole
    (``--dist loadgroup``): a test file, so that its module fixtures are built once; and every test that
    drives the browser in one unit, so that one app server and one Chromium serve them all."""
    grouping = config.pluginmanager.hasplugin("xdist")  # an image without pytest-xdist runs in one process
    browser = {item for item in items if "chromium" in getattr(item, "fixturenames", ())}
    # pytest-xdist 3.8 names a test's group by appending "@group" to ``item._nodeid``, which pytest 9.2 no
    # longer reads (a node's id lives in ``item._id``): without this every test was a unit of its own, and
    # each worker built the module and session fixtures (two app servers, two Chromiums)
    on_worker = NodeId is not None and hasattr(config, "workerinput") and config.getvalue("loadgroup")
    for item in items:
        if grouping and not any(item.iter_markers("xdist_group")):
            group = "browser" if item in browser else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})  # fmt: skip
        if "browser" in names:
            browser.add(item)  # one that asks for Chromium by itself (request.getfixturevalue)
        if on_worker and names and not item.nodeid.endswith(f"@{'_'.join(names)}"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")  # as pytest-xdist names it
    # the longest units first (pyproject keeps this order: --no-loadscope-reorder), so that none starts
    # last while the other worker idles: the browser tests, then the files that hold a slow test
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item not in browser, item.path not in slow_files))
    _skip_what_cannot_run(items)


def _skip_what_cannot_run(items: list[pytest.Item]) -> None:
    """gpu tests skip without CUDA; a test that needs an optional system package (``needs("chromium")``,
    ``needs("fashion-mnist")``; every ``browser`` test needs Chromium) skips with the line ``make`` printed
    for it: what is missing and the command that installs it."""
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        needed = {str(m.args[0]) for m in item.iter_markers("needs")}
        if "browser" in item.keywords:
            needed.add("chromium")
        unknown = needed - set(PARTS)
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: needs({sorted(unknown)}) is not one of {sorted(PARTS)}")
        if reason := skip_reason(sorted(needed)):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The suite ends by saying how many tests it skipped for which missing part, and how to install it."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith("missing: ") or reason == "needs CUDA":
            counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("skipped for a missing part")
        for reason, count in sorted(counts.items()):
            terminalreporter.write_line(f"{count} test{'s' * (count != 1)} skipped: {reason}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "end_check_wait_s", "seconds the end check waits for processes still stopping", default="10"
    )


TMPFS = Path("/dev/shm")  # memory: a test's files (checkpoints, studies) written without the disk's syncs
TMPFS_FREE = 4 << 30  # bytes free there, at least, to use it (a container's /dev/shm is often 64 MB)
IN_MEMORY = pytest.StashKey[Path]()


def memory_basetemp(config: pytest.Config) -> None:
    """Every test's temporary folder in memory where the machine has room (``--basetemp`` given wins): a
    folder of this run's own (two runs at once keep theirs apart), removed at the end of a run that passed;
    not for a pytest a test runs (it uses the folder its test gives it)."""
    if hasattr(config, "workerinput") or config.option.basetemp or "PYTEST_CURRENT_TEST" in os.environ:
        return
    try:
        room = os.statvfs(TMPFS)
        if room.f_bavail * room.f_frsize < TMPFS_FREE:
            return
        folder = Path(tempfile.mkdtemp(prefix="coatnet-lens-tests-", dir=TMPFS))
    except OSError:
        return
    config.option.basetemp = str(folder)
    config.stash[IN_MEMORY] = folder


@pytest.hookimpl(tryfirst=True)  # before pytest's own, which makes the temporary folders' factory
def pytest_configure(config: pytest.Config) -> None:
    memory_basetemp(config)
    become_subreaper()  # a process whose parent a test killed comes here, where the end check sees it
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the workers share the cores
        torch.set_num_threads(max(1, torch.get_num_threads() // int(config.workerinput["workercount"])))
    elif (workers := config.getoption("numprocesses", None)) and isinstance(workers, int) and workers > 1:
        # before the workers start, for them and every process a test starts: each library's own threads
        # (OpenMP for torch, OpenBLAS for numpy and scipy) share the cores too. Three workers whose numpy
        # each spun two OpenBLAS threads on two cores made a probe fit five times slower.
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, threads)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test leaves a process behind: whatever still runs below this process fails the suite. Under
    pytest-xdist the first process checks, once its workers are gone (their orphans come to it too)."""
    if hasattr(session.config, "workerinput"):
        return
    # a server told to stop may take a moment
    deadline = time.monotonic() + float(session.config.getini("end_check_wait_s"))
    while (left := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        print("\nprocesses left behind by the tests (now killed):\n  " + "\n  ".join(left), file=sys.stderr)
        for line in left:
            kill_tree(int(line.split()[0]), grace_s=2)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    folder = session.config.stash.get(IN_MEMORY, None)
    if folder is not None and session.exitstatus == pytest.ExitCode.OK:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def chromium():
    """One Playwright and one headless Chromium for every test that drives a browser (a second sync
    Playwright cannot start in a process where one runs)."""
    from playwright.sync_api import sync_playwright

    from tests.support.server import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def served(chromium):
    """The app's server, started once for every browser test, and the one Chromium. When it stops, its log
    holds no message (a Streamlit warning, an error the app logged): the last browser test errs if so."""
    from tests.support.browser import VIEWPORT, Served
    from tests.support.server import logged_messages, running_app

    def quiet(log: Path) -> None:
        messages = logged_messages(log)
        assert messages == [], f"the app server logged during the browser tests ({log}): {messages[:5]}"

    with running_app(on_stop=quiet) as url:
        context = chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
        try:
            yield Served(url, chromium, context)
        finally:
            context.close()


@pytest.fixture(scope="session")
def timm_weights(tmp_path_factory):
    """``timm_weights(arch)``: the weights file of a randomised timm model (a seeded
    :func:`tests.support.timm.randomised_timm_model`), made once per architecture for the whole session;
    read it, never change it."""
    from tests.support.timm import import_timm, randomised_timm_model, save_timm

    made: dict[str, Path] = {}

    def weights(arch: str) -> Path:
        if arch not in made:
            model = randomised_timm_model(import_timm(), arch)
            made[arch] = save_timm(model, tmp_path_factory.mktemp(arch) / "model.safetensors")
        return made[arch]

    return weights


@pytest.fixture(scope="session")
def _shared_toys():
    from tests.support.toys import SharedToys

    return SharedToys()


@pytest.fixture
def shared_toy(_shared_toys):
    """``shared_toy(name="coatnet_toy", **overrides)``: the session's one seeded toy of these arguments, in
    eval mode (:class:`tests.support.toys.SharedToys`), for a test that only reads it. A test that changed
    one errs, naming what it changed: a test that changes a model builds its own
    (:func:`tests.support.toys.toy_model`)."""
    yield _shared_toys
    if changed := _shared_toys.changed():
        pytest.fail(
            "a test changed a shared toy model (build your own with toy_model):\n  " + "\n  ".join(changed)
        )
