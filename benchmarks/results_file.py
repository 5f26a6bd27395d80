"""The one format of a benchmark's results: ``benchmarks/results/<name>.json``, what the docs' figures read.

Every script under ``benchmarks/`` writes its results through :func:`write`, as one JSON object:

    {
     "command": "python benchmarks/timm_speed.py --rounds 7",   the command line, from the repository root
     "commit": "efc6c7d...",                                   git rev-parse HEAD (null: unknown)
     "dirty": false,                                           tracked files differed from the commit
     "date": "2026-12-06T21:14:03Z",                            when the run ended, UTC
     "cpu": "AMD EPYC 9B14",                                   /proc/cpuinfo's model name (or the GPU's)
     "threads": 2,                                             torch.get_num_threads()
     "torch": "2.13.0+cpu",
     "rounds": 7,                                              repeats behind each median (null: one)
     "figures": {...}                                          what the script measured, its own layout
    }

A file written before this format keeps its figures under ``figures`` and what could be recovered of the
rest (a ``note`` says what is missing); nothing is made up. ``scripts/docs_figures.py`` generates the
docs' figures from these files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ("command", "commit", "dirty", "date", "cpu", "threads", "torch", "rounds", "figures")


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out``: where the JSON goes (a path; ``.json`` is added), by default ``benchmarks/results/NAME``,
    whose ``{fields}`` :func:`out_path` fills from the run (``timm_speed_{device}``)."""
    parser.add_argument("--out", type=Path, help=f"write OUT.json (default: benchmarks/results/{name})")
    parser.set_defaults(out_name=name)


def out_path(args: argparse.Namespace, **fields: object) -> Path:
    """``--out``, or the default name of :func:`add_out_argument` with its fields filled."""
    return args.out if args.out is not None else RESULTS / args.out_name.format(**fields)


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed from the repository root: ``python benchmarks/NAME.py ARGS``."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else Path(argv[0])
    return shlex.join(["python", str(shown), *argv[1:]])


def git_commit() -> tuple[str | None, bool | None]:
    """HEAD's commit, and whether tracked files differ from it (None, None outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def cpu_model() -> str:
    """/proc/cpuinfo's model name ("unknown" where there is none)."""
    path = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.*)$", path.read_text(), re.M) if path.exists() else None
    return found[1].strip() if found else "unknown"


def metadata(rounds: int | None, *, device: str = "cpu") -> dict:
    """Every field but ``figures``, for a run that ends now."""
    import torch

    commit, dirty = git_commit()
    cpu = cpu_model()
    if device.startswith("cuda") and torch.cuda.is_available():
        cpu = f"{cpu}; GPU {torch.cuda.get_device_name()}"
    return {
        "command": command_line(),
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rounds": rounds,
    }


def write(out: Path, figures: dict, *, rounds: int | None, device: str = "cpu") -> Path:
    """Write ``OUT.json`` (the run's metadata and its figures), atomically; return its path."""
    path = Path(out).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**metadata(rounds, device=device), "figures": figures}
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(record, indent=1) + "\n")
    scratch.replace(path)
    print(f"wrote {path}")
    return path


def read(path: Path) -> dict:
    """A results file, checked to hold every field of the format."""
    record = json.loads(Path(path).read_text())
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (the format of benchmarks/results_file.py)")
    return record
