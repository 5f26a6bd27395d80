"""The cost of ``coatnet study``, part by part, against a plain forward pass of the same batch.

For one batch of 256 Fashion-MNIST test images: the baseline pass (the inference build), the
interventions (every one of the plan, from its block on), the recorded pass for the head statistics and
the receptive-field gradients, each in seconds and as a multiple of the baseline pass, then the
projection to the whole test set. The issue's target: the whole study of demo-pre over the 10,000 test
images in at most 15 minutes on the 2-core CPU. Run from the repository root, with nothing else running:

    python benchmarks/study_speed.py --model demo-pre
    python benchmarks/study_speed.py --model demo-pre --max-rows 32 64 256

Writes ``benchmarks/results/study_speed_MODEL.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.core.inputs import preprocessing_of
from analysis.core.models import load_model
from analysis.studies import study
from benchmarks import results_file
from coatnet import for_inference
from coatnet.data.batches import normalize, prepare_batch
from coatnet.data.datasets import fashion_mnist


def seconds(run: Callable[[], object], repeats: int, *, warm: bool = True) -> float:
    """The median time of ``repeats`` calls of ``run``, after one untimed call (unless not ``warm``)."""
    if warm:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-pre")
    parser.add_argument("--max-rows", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=10_000, help="the study's size, for the projection")
    results_file.add_out_argument(parser, "study_speed_{model}")
    args = parser.parse_args()
    model = load_model(args.model)
    runner = for_inference(model)
    pre = preprocessing_of(model)
    data = fashion_mnist("test")
    x = normalize(prepare_batch(data.images[:256], pre), pre)
    labels = data.labels[:256]
    plan = study.study_plan(model, pre.size)
    with torch.inference_mode():
        true = runner(x).gather(1, labels[:, None])[:, 0]
    base = seconds(lambda: torch.inference_mode()(runner)(x), args.repeats)
    parts = {"baseline pass": base}
    for rows in args.max_rows:
        parts[f"interventions ({len(plan.interventions)}, {rows} rows a pass)"] = seconds(
            lambda rows=rows: study._interventions(runner, x, labels, true, plan, rows, nullcontext),
            args.repeats,
        )
    parts["head statistics (recorded pass)"] = seconds(
        lambda: study._head_metrics(model, x, plan), args.repeats
    )
    parts["stages (5 input gradients)"] = seconds(lambda: study._stage_metrics(model, x), args.repeats)
    print(
        f"{args.model}, one batch of 256 images, {torch.get_num_threads()} threads, median of {args.repeats}:"
    )
    print("| part | seconds | x baseline pass |\n|---|---|---|")
    for name, value in parts.items():
        print(f"| {name} | {value:.2f} | {value / base:.1f} |")
    best = min(v for k, v in parts.items() if k.startswith("interventions"))
    per_batch = base + best + parts["head statistics (recorded pass)"] + parts["stages (5 input gradients)"]
    batches = -(-args.images // 256)
    naive = len(plan.interventions) + 6
    print(f"projected study of {args.images} images: {per_batch * batches / 60:.1f} min "
          f"({per_batch / base:.0f} baseline passes per batch; naively ~{naive})")  # fmt: skip
    figures = {
        "model": args.model,
        "batch": 256,
        "interventions": len(plan.interventions),
        "parts": [{"part": name, "s": value, "x_baseline": value / base} for name, value in parts.items()],
        "baseline_passes_per_image": per_batch / base,
        "naive_passes_per_image": naive,
        "images": args.images,
        "projected_min": per_batch * batches / 60,
    }
    results_file.write(results_file.out_path(args, model=args.model), figures, rounds=args.repeats)


if __name__ == "__main__":
    main()
