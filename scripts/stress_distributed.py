"""Two processes under torchrun, again and again: training from a user's script (docs/training.md's
ddp_train.py) and `coatnet study`, each N times (default 50). Counts the runs that ended, failed or hung
(no end within --limit seconds; the whole process tree is killed then), prints them as JSON and writes
them to ``benchmarks/results/stress_distributed.json`` (``benchmarks/results_file.py``'s format;
``--results`` names another).

    .venv/bin/python scripts/stress_distributed.py --runs 50 --out runs/stress
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import results_file  # noqa: E402
from tests.support import processes  # noqa: E402


def docs_script() -> str:
    """The torchrun script of docs/training.md, as a reader would save it."""
    page = (ROOT / "docs" / "training.md").read_text()
    return re.findall(r"```python torchrun\n(.*?)```", page, flags=re.S)[0]


def tiny_fashion(root: Path) -> Path:
    """96 training and 40 test images in Fashion-MNIST's files (as the tests make them)."""
    from tests.support.data import make_fashion_like

    return make_fashion_like(root, n_train=96, n_test=40)


def trial(args: list[str], limit: float) -> str:
    try:
        done = processes.torchrun(*args, timeout=limit)
    except subprocess.TimeoutExpired:
        return "hung"
    if done.returncode == 0:
        return "ended"
    errors = [line for line in done.stderr.splitlines() if re.search(r"\w+(Error|Lost|Exception):", line)]
    return "failed: " + (errors or done.stderr.strip().splitlines() or ["?"])[-1][-200:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds a run may take before it hangs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "stress")
    parser.add_argument("--only", choices=["train", "study"], help="one of the two")
    default = results_file.RESULTS / "stress_distributed"
    parser.add_argument(
        "--results", type=Path, default=default, help=f"write RESULTS.json (default: {default})"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    script = args.out / "ddp_train.py"
    script.write_text(docs_script())
    data = "fashion-mnist:" + str(tiny_fashion(args.out / "data"))
    kinds = {
        "train": lambda i: [str(script), str(args.out / f"train-{i}"), data],
        "study": lambda i: ["-m", "coatnet", "study", "--model", "demo-pre", "--data", data, "--limit", "32",
                            "--batch-size", "8", "--device", "cpu", "--quiet",
                            "--out", str(args.out / f"study-{i}")],
    }  # fmt: skip
    report = {}
    for kind, command in kinds.items():
        if args.only and kind != args.only:
            continue
        counts: dict[str, int] = {}
        began = time.monotonic()
        for i in range(args.runs):
            outcome = trial(command(i), args.limit)
            counts[outcome] = counts.get(outcome, 0) + 1
            print(f"{kind} {i + 1}/{args.runs}: {outcome}", file=sys.stderr, flush=True)
        report[kind] = {"runs": args.runs, **counts, "seconds": round(time.monotonic() - began, 1)}
    print(json.dumps(report, indent=1))
    results_file.write(args.results, {**report, "limit_s": args.limit}, rounds=args.runs)
    return 0 if all(set(r) <= {"runs", "ended", "seconds"} for r in report.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
