"""``coatnet app``: serve the app from an installed project, as ``make app`` does from a checkout.

Plugged into the ``coatnet`` command line through the ``coatnet.commands`` entry-point group (the app layer
is the one that knows where its pages live); nothing is served at import.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from coatnet.cli import add_command, positive_int

MAIN = Path(__file__).resolve().with_name("main.py")  # the installed app package's entry page


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "app", help="serve the Streamlit app at http://localhost:8501",
        description="Serve the app (app/main.py of the installed project) with Streamlit on this machine "
        "only, headless and without usage statistics, as `make app` does from a checkout. Ctrl-C stops it.",
        examples=["coatnet app --port 8502"],
    )  # fmt: skip
    p.add_argument("--port", type=positive_int, default=8501, help="the port to serve on (default 8501)")
    p.set_defaults(func=cmd_app)


def streamlit_command(port: int = 8501) -> list[str]:
    """The command that serves the app: Streamlit of this Python, on localhost, making no outbound calls."""
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN), "--server.port", str(port),
        "--server.address", "localhost", "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def cmd_app(args: argparse.Namespace) -> int:
    print(f"serving {MAIN} at http://localhost:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    try:
        return subprocess.run(streamlit_command(args.port), check=False).returncode
    except KeyboardInterrupt:
        return 0
