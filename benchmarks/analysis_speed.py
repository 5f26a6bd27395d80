"""Analysis speed as a ratio to one plain forward pass of the same model and batch (CPU by default).

The issue's targets: all attention maps of all blocks and heads within 3x a forward pass, the effective
receptive fields of all five stages within 15x. Run from the repository root:

    python benchmarks/analysis_speed.py --models demo-pre coatnet_0
    python benchmarks/analysis_speed.py --models coatnet_0_rw_224 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import attention_maps, attention_rollout, attention_statistics, attributions, receptive_fields
from analysis.core.models import load_model


def seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["demo-pre", "coatnet_0"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (analyses run on the model's device)")
    args = parser.parse_args()
    rows = []
    for spec in args.models:
        model = load_model(spec, device=args.device)
        pre = getattr(model, "checkpoint_info", None)
        size = tuple(pre.preprocessing["size"]) if pre else model.config.img_size
        x = torch.randn(args.batch, model.config.in_chans, *size, generator=torch.Generator().manual_seed(0))
        x = x.to(args.device)

        def forward(model=model, x=x) -> None:
            with torch.inference_mode():
                model(x)

        base = seconds(forward, args.repeats)
        measured = {
            "attention_maps": seconds(lambda m=model, x=x: attention_maps(m, x), args.repeats),
            "receptive_fields": seconds(
                lambda m=model, x=x: receptive_fields(m, x), max(1, args.repeats // 2)
            ),
            "rollout": seconds(lambda m=model, x=x: attention_rollout(m, x), args.repeats),
            "statistics": seconds(lambda m=model, x=x: attention_statistics(m, x), args.repeats),
            "gradcam": seconds(lambda m=model, x=x: attributions(m, x[:1], stage="S3"), args.repeats),
        }
        row = {"model": spec, "input": f"{args.batch}x{model.config.in_chans}x{size[0]}x{size[1]}",
               "threads": torch.get_num_threads(), "forward_ms": round(1000 * base, 2)}  # fmt: skip
        for name, value in measured.items():
            row[f"{name}_ms"] = round(1000 * value, 2)
            row[f"{name}_ratio"] = round(value / base, 2)
        rows.append(row)
        print(f"{spec} ({row['input']}): forward {row['forward_ms']:.1f} ms")
        for name in measured:
            print(f"  {name:<18}{row[f'{name}_ms']:>10.1f} ms {row[f'{name}_ratio']:>7.2f}x forward")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
