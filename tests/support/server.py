"""The app served (``python -m app.serve``: ``streamlit run app/main.py``, its code warmed first) on a free
loopback port, for the browser tests and the screenshot script; and Debian's Chromium, launched headless,
with no sandbox and no background traffic."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support import processes
from tests.support.system import PARTS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = str(PARTS["chromium"].marker)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # a request for another host fails at once
]  # fmt: skip

# Streamlit is idle (the script has finished: its status widget is no sign, it never shows in this app's
# header; no element left stale by a rerun; none still waiting for its lazily loaded component, as
# plotly.js comes), every Plotly chart has drawn, and every column-width probe has mounted, has measured
# its column as it is now (a resize's measure waits for a pause of 150 ms: a fixed pause after a resize
# was, on a busy machine, sometimes read before it) and the page is drawn for the width it measured (no
# rerun for a new width still to come): a JavaScript predicate for page.wait_for_function
SETTLED = """() => document.querySelector(
        '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]')
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .every(chart => chart.querySelector('.main-svg'))
    && [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
        .every(probe => probe.dataset.lensDrawnFor !== undefined
            && (probe.dataset.lensWidth === undefined
                || probe.dataset.lensWidth === probe.dataset.lensDrawnFor
                    && (probe.getBoundingClientRect().width <= 0 || +probe.dataset.lensWidth
                        === Math.floor(probe.getBoundingClientRect().width / probe.dataset.lensStep)
                            * probe.dataset.lensStep)))"""


def logged_messages(log: Path) -> list[str]:
    """The messages the server logged (warnings, errors: every line that starts with a time), but its own
    start: a clean run of the browser tests logs none."""
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ ")
    return [
        line.strip() for line in log.read_text(errors="replace").splitlines()
        if stamp.match(line) and "server started on" not in line
    ]  # fmt: skip


@contextlib.contextmanager
def running_app(
    timeout: float = 60.0, *, on_stop: Callable[[Path], None] | None = None, script: Path | None = None
) -> Iterator[str]:
    """Serve the app offline on a free port (or, given ``script``, that Streamlit script, with plain
    ``streamlit run``); yields its URL; stops the server afterwards, then hands its log to ``on_stop``."""
    port = processes.free_port()
    serve = ["app.serve"] if script is None else ["streamlit", "run", str(script)]  # app.serve: warmed first
    command = [
        sys.executable, "-m", *serve,
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = (ROOT / ".pytest_cache").joinpath(f"streamlit-{port}.log")
    log.parent.mkdir(exist_ok=True)
    with (
        log.open("w") as output,
        processes.started(command, env=env, stdout=output, stderr=subprocess.STDOUT) as server,
    ):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: see {log}")
            time.sleep(0.2)
        yield url
    if on_stop is not None:
        on_stop(log)
