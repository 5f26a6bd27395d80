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
SETTINGS = MAIN.with_name(
    "streamlit.toml"
)  # the app's Streamlit settings (.streamlit/config.toml links here)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "app", help="serve the Streamlit app at http://localhost:8501",
        description="Serve the app (app/main.py of the installed project) with Streamlit on this machine "
        "only, headless and without usage statistics, as `make app` does from a checkout. Ctrl-C stops it.",
        examples=["coatnet app --port 8502"],
    )  # fmt: skip
    p.add_argument("--port", type=positive_int, default=8501, help="the port to serve on (default 8501)")
    p.set_defaults(func=cmd_app)


def streamlit_settings(path: Path = SETTINGS) -> dict[str, str]:
    """The app's Streamlit settings as ``{"server.maxUploadSize": "50", ...}``: sections and ``key = value``
    lines of strings, booleans and numbers (all the file holds), read without tomllib (Python 3.10)."""
    settings, section = {}, ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not section:
            raise ValueError(f"{path}: cannot read {raw!r} (a [section], then key = value lines)")
        settings[f"{section}.{key}"] = value[1:-1] if value[:1] == value[-1:] == '"' else value
    return settings


def streamlit_command(port: int = 8501) -> list[str]:
    """The command that serves the app: Streamlit of this Python (through :mod:`app.serve`, which imports and
    warms the pages' code before the server answers), with every setting of the app's own
    (SETTINGS: on localhost, headless, no usage statistics, the upload limit, no tracebacks shown), since
    an installed project has no .streamlit/config.toml where the user runs it; ``port`` overrides."""
    flags = {**streamlit_settings(), "server.port": str(port)}
    return [sys.executable, "-m", "app.serve",
            *(item for key, value in flags.items() for item in (f"--{key}", value))]  # fmt: skip


def cmd_app(args: argparse.Namespace) -> int:
    print(f"serving {MAIN} at http://localhost:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    try:
        return subprocess.run(streamlit_command(args.port), check=False).returncode
    except KeyboardInterrupt:
        return 0
