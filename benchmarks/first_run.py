"""A stranger's first run: the README's `make test` on a fresh clone of this commit, timed in its parts.

Clones HEAD into a scratch folder (the working tree's uncommitted changes are not part of it) and runs
there, one after the other:

- the set-up, ``make .venv/.installed``: a new ``.venv`` and every pinned requirement from the package
  index (pip's own cache as this machine has it: say which in ``--note``);
- with ``--test``, ``make test``: the optional system packages (present or installed before the clock
  starts, so this measures the suite alone), then the whole suite, whose counts are read off pytest's
  last line.

Writes ``benchmarks/results/first_run.json`` (the format of ``benchmarks/results_file.py``)::

    python benchmarks/first_run.py --test --note "pip cache warm"
    python benchmarks/first_run.py --test --vs efc6c7d   # and the same on an earlier commit, one machine
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import results_file

ROOT = results_file.ROOT


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    """Run ``command`` in its own process group, its output to ``log``; (seconds, output's tail)."""
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait()
        except BaseException:
            os.killpg(process.pid, 9)
            raise
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}); its output: {log}")
    return seconds, text[-4000:]


def suite_counts(tail: str) -> dict[str, int]:
    """pytest's last line, ``1414 passed, 62 skipped in 311.2s``, as counts."""
    last = [line for line in tail.splitlines() if re.search(r"\d+ (passed|failed)", line)][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", last)}


def run(revision: str, scratch: Path, *, test: bool) -> dict[str, object]:
    """The README's path on a fresh clone of ``revision``: its set-up and, with ``test``, ``make test``."""
    clone = scratch / revision.replace("/", "-")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", revision], cwd=clone, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
    setup_s, _ = timed(["make", ".venv/.installed"], clone, scratch / f"{clone.name}-setup.log")
    print(f"{revision}: set-up {setup_s:.0f} s", flush=True)
    figures: dict[str, object] = {
        "commit": commit.strip(), "setup_s": round(setup_s, 1), "setup_min": round(setup_s / 60, 1)
    }  # fmt: skip
    if test:
        subprocess.run(["make", "system-packages"], cwd=clone, check=False)  # an older commit has none
        test_s, tail = timed(["make", "test"], clone, scratch / f"{clone.name}-test.log")
        counts = suite_counts(tail)
        print(f"{revision}: make test {test_s:.0f} s, {counts}", flush=True)
        figures.update(test_s=round(test_s, 1), test_min=round(test_s / 60, 1), suite=counts)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", action="store_true", help="also time `make test` after the set-up")
    parser.add_argument("--vs", metavar="REV", help="then the same on commit REV, for a ratio on one machine")
    parser.add_argument("--note", default="", help="what the run should say of the machine (pip cache...)")
    results_file.add_out_argument(parser, "first_run")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="first-run-"))
    try:
        figures = run("HEAD", scratch, test=args.test)
        if args.vs:
            figures["vs"] = run(args.vs, scratch, test=args.test)
            if args.test:
                figures["test_added_s"] = round(figures["test_s"] - figures["vs"]["test_s"], 1)
        figures["note"] = args.note
        results_file.write(results_file.out_path(args), figures, rounds=None)
    except BaseException:
        print(f"the clones and the logs are kept in {scratch}", file=sys.stderr)
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
