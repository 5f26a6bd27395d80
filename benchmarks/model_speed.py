"""The model as a user calls it against timm's, side by side: ``model(x)`` on the model our loaders hand out
(``coatnet.from_timm``, eval mode) against timm's ``model(x)``, same weights, same NCHW input.

Two modes, each at batch 1 and 8 on the three models of ``benchmarks/timm_speed.py``:

* ``inference``: both called under ``torch.inference_mode()``. Ours then runs its inference build by
  itself (``coatnet.model.inference.automatic_build``: nothing recorded, traced, intervened or hooked).
* ``gradients``: both called with gradients enabled (the default mode; a forward pass that builds the
  autograd graph, as an attribution method's does). Ours runs its own modules.

Each cell alternates the two models over ``--rounds`` rounds (ours first in odd rounds, timm first in
even ones), each round ``--iters`` calls after one warm-up call, and keeps every round's ratio of images/s
(ours / timm): the median, the spread and the rounds themselves. The goal is a ratio of at least 1.0 in
every round of every cell. Every cell checks that the logits agree within 1e-4.

timm is a test-only dependency (requirements-test.txt). Run from the repository root, on a quiet machine::

    python benchmarks/model_speed.py --rounds 7     # ~6 minutes on 2 cores

Writes ``benchmarks/results/model_speed_cpu.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another) and the markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import results_file  # noqa: E402
from benchmarks.timm_speed import ARCHS, TOLERANCE, paired_models  # noqa: E402

MODES: dict[str, Callable[[], object]] = {"inference": torch.inference_mode, "gradients": nullcontext}


def seconds_per_call(model: torch.nn.Module, x: torch.Tensor, mode: str, iters: int) -> float:
    """Seconds per ``model(x)`` in ``mode``, after one warm-up call."""
    with MODES[mode]():
        model(x)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        return (time.perf_counter() - start) / iters


def cell(ours, reference, x: torch.Tensor, mode: str, *, rounds: int, iters: int) -> dict:
    """Alternate the two models over ``rounds`` rounds: every round's ratio (timm's time / ours), the
    median and spread, and each side's median images/s."""
    ratios, ours_s, timm_s = [], [], []
    for r in range(rounds):
        pair = ((ours, ours_s), (reference, timm_s))
        for model, times in pair if r % 2 == 0 else pair[::-1]:
            times.append(seconds_per_call(model, x, mode, iters))
        ratios.append(timm_s[-1] / ours_s[-1])
    with MODES[mode]():
        diff = (ours(x) - reference(x)).detach().abs().max().item()
    batch = x.shape[0]
    return {
        "ratio": round(statistics.median(ratios), 3),
        "spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "rounds": [round(r, 3) for r in ratios],
        "ours_img_s": round(batch / statistics.median(ours_s), 2),
        "timm_img_s": round(batch / statistics.median(timm_s), 2),
        "max_abs_diff": diff,
    }


def run(args: argparse.Namespace) -> dict:
    rows = []
    for arch in args.arch:
        ours, reference = paired_models(arch, "cpu")
        side = ours.config.img_size
        cells = {}
        for batch in args.batches:
            x = torch.randn(batch, 3, *side, generator=torch.Generator().manual_seed(batch))
            for mode in MODES:
                found = cell(ours, reference, x, mode, rounds=args.rounds, iters=args.iters)
                cells[f"{mode} bs{batch}"] = found
                print(f"{arch} {mode} bs{batch}: {found['ratio']:.2f}x {found['rounds']}", flush=True)
        rows.append({"arch": arch, "cells": cells})
    return {"device": "cpu", "precision": "fp32", "threads": torch.get_num_threads(), "rounds": args.rounds,
            "iters": args.iters, "rows": rows}  # fmt: skip


def markdown(result: dict) -> str:
    """One row per model, one column per mode and batch: the median ratio (lowest round - highest)."""
    columns = list(dict.fromkeys(k for row in result["rows"] for k in row["cells"]))
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in result["rows"]:
        cells = [row["cells"][c] for c in columns]
        text = [f"{c['ratio']:.2f}x ({c['spread'][0]:.2f}-{c['spread'][1]:.2f})" for c in cells]
        lines.append(f"| {row['arch']} | " + " | ".join(text) + " |")
    lines.append(f"\nimages/s of ours over timm's, median of {result['rounds']} alternating rounds "
                 f"(lowest-highest round); {result['threads']} threads, fp32.")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    results_file.add_out_argument(parser, "model_speed_cpu")
    args = parser.parse_args()
    result = run(args)
    table = markdown(result)
    print(table)
    path = results_file.write(results_file.out_path(args), result, rounds=args.rounds)
    path.with_suffix(".md").write_text(table + "\n")
    for row in result["rows"]:
        for name, found in row["cells"].items():
            if min(found["rounds"]) < 1.0:
                print(f"{row['arch']} {name}: a round below 1.0x", file=sys.stderr)
            if found["max_abs_diff"] > TOLERANCE:
                print(f"{row['arch']} {name}: outputs differ by {found['max_abs_diff']:.2e}", file=sys.stderr)
                sys.exit(1)


if __name__ == "__main__":
    main()
