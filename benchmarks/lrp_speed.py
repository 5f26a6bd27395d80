"""LRP's cost (analysis.lrp) against gradient times input, its peer, side by side in one run: both rules.

- ``at_224``: one 224 px image of coatnet_0_rw_224 (random weights: the cost does not depend on them):
  LRP's time against one gradient x input pass of the model's own code (a forward and a backward to the
  input), the median of ``--rounds`` after a warm-up each; and each one's peak memory, measured in a
  process of its own (the peak resident memory during the call over what the process held before it).
  The issue's lines: at most 2.5x the time and 2x the memory.
- ``batching``: 32 demo-pre images explained at once against one at a time, per image (the issue's line:
  at least 4x faster per image at once), beside what batching gives gradient x input itself.

Run from the repository root, with nothing else running::

    python benchmarks/lrp_speed.py             # 5 rounds
    python benchmarks/lrp_speed.py --rounds 1  # a smoke test

Writes ``benchmarks/results/lrp_speed_cpu.json`` (``benchmarks/results_file.py``'s format; ``--out`` names
another).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import analysis  # noqa: E402
import coatnet  # noqa: E402
from benchmarks import results_file  # noqa: E402

ARCH = "coatnet_0_rw_224"
RULES = ("attnlrp", "cp")
LINES = {"time": 2.5, "memory": 2.0, "batching": 4.0}  # the issue's
BATCH = 32


def gradient_x_input(model: torch.nn.Module, x: torch.Tensor, target: int = 1) -> torch.Tensor:
    """The peer: one forward and one backward pass of the model's own code, to the input."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x)[:, target].sum(), x)
    return x.detach() * grad


def call(method: str, model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    if method == "gradient_x_input":
        return lambda: gradient_x_input(model, x)
    return lambda: analysis.lrp(model, x, target=1, rule=method)


def median_seconds(run: Callable[[], object], rounds: int) -> tuple[float, list[float]]:
    run()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def model_224() -> torch.nn.Module:
    torch.manual_seed(0)
    return coatnet.create_model(ARCH).eval()


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_in_own_process(method: str) -> float:
    """MB: the peak resident memory of ``method``'s call over what its process held before, measured in a
    process of its own (this script with ``--memory-of``)."""
    found = subprocess.run(
        [sys.executable, __file__, "--memory-of", method], capture_output=True, text=True, check=True
    )
    return float(json.loads(found.stdout.strip().splitlines()[-1])["peak_mb"])


def memory_of(method: str) -> None:
    model = model_224()
    x = torch.randn(1, 3, 224, 224)
    before = resident_mb()
    call(method, model, x)()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"method": method, "peak_mb": max(0.0, peak - before)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    results_file.add_out_argument(parser, "lrp_speed_cpu")
    args = parser.parse_args()
    if args.memory_of:
        memory_of(args.memory_of)
        return
    model, x = model_224(), torch.randn(1, 3, 224, 224)
    at_224 = {}
    for method in ("gradient_x_input", *RULES):
        median, runs = median_seconds(call(method, model, x), args.rounds)
        at_224[method] = {"median_s": median, "runs_s": runs, "peak_mb": peak_in_own_process(method)}
        print(
            f"{ARCH} at 224, {method:>16}: {median:.3f} s, peak {at_224[method]['peak_mb']:.0f} MB",
            flush=True,
        )
    peer = at_224["gradient_x_input"]
    for rule in RULES:
        at_224[rule]["time_ratio"] = at_224[rule]["median_s"] / peer["median_s"]
        at_224[rule]["memory_ratio"] = at_224[rule]["peak_mb"] / peer["peak_mb"]
        print(f"  {rule}: {at_224[rule]['time_ratio']:.2f}x the time (line {LINES['time']}x), "
              f"{at_224[rule]['memory_ratio']:.2f}x the memory (line {LINES['memory']}x)")  # fmt: skip
    demo = analysis.load_model("demo-pre")
    images = torch.randn(BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    batch = {}
    for method in ("gradient_x_input", *RULES):  # the peer first: what batching gives the model's own pass
        together, _ = median_seconds(call(method, demo, images), args.rounds)

        def alone(method: str = method) -> None:
            for image in images:
                call(method, demo, image[None])()

        apart, _ = median_seconds(alone, args.rounds)
        batch[method] = {"together_s": together, "one_at_a_time_s": apart, "speedup": apart / together}
        print(f"demo-pre, {BATCH} images, {method}: {together:.3f} s at once, {apart:.3f} s one at a time: "
              f"{apart / together:.1f}x per image (line {LINES['batching']}x)")  # fmt: skip
    figures = {
        "arch": ARCH,
        "size_px": 224,
        "batch": BATCH,
        "lines": LINES,
        "at_224": at_224,
        "batching": batch,
    }
    results_file.write(results_file.out_path(args), figures, rounds=args.rounds)


if __name__ == "__main__":
    main()
