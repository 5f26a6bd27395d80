"""Analysis speed as a ratio to one plain forward pass of the same model and batch (CPU by default).

The issue's targets: all attention maps of all blocks and heads within 3x a forward pass, the effective
receptive fields of all five stages within 15x. Run from the repository root:

    python benchmarks/analysis_speed.py --models demo-pre coatnet_0
    python benchmarks/analysis_speed.py --models coatnet_0_rw_224 --device cuda   # on a GPU
    python benchmarks/analysis_speed.py --vs-timm --out benchmarks/results/analysis_vs_timm_cpu

``--vs-timm``: the table of issue 23, side by side with timm on the same weights (ours imported from a
randomised timm model's file), fp32, NCHW input, the same threads, alternating rounds; each cell the
median of timm's time / ours (above 1: ours is faster), with its spread:

- plain forward: our module tree as ``from_timm`` gives it, against timm's model;
- inference build: ``coatnet.for_inference(model)``, against timm's model;
- attention weights: one pass recording every block's weights (``coatnet.record_attention``), against
  timm's ``AttentionExtract`` (hooks on every ``attn_drop``, which sees the weights on timm's non-fused
  path: each attention module's ``fused_attn`` off);
- ``analysis.attention_maps``: the analysis users call, against the same ``AttentionExtract``.
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


ARCHS = ("coatnet_nano_rw_224", "coatnet_0_rw_224", "coatnet_rmlp_nano_rw_224")
COLUMNS = ("plain forward", "inference build", "attention weights", "attention_maps")


def timed(step: Callable[[], object], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters


def versus_timm(rounds: int) -> dict:
    """Every cell of the table: timm's time / ours, median and spread over alternating rounds."""
    import timm
    from timm.utils import AttentionExtract

    import coatnet
    from benchmarks.timm_speed import paired_models

    table = {}
    for arch in ARCHS:
        ours, theirs = paired_models(arch, "cpu")
        build = coatnet.for_inference(ours)
        for module in theirs.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = False  # so that attn_drop sees the weights
        extract = AttentionExtract(theirs, method="hook", names=["*attn_drop"])

        for batch in (1, 8):
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
            pairs = _pairs(ours, build, theirs, extract, x)
            iters = 6 if batch == 1 else 2
            for column, (mine, peer) in pairs.items():
                ratios = []
                with torch.inference_mode():
                    mine(), peer()  # warm-up
                    for r in range(rounds):
                        if r % 2 == 0:
                            a, b = timed(mine, iters), timed(peer, iters)
                        else:
                            b, a = timed(peer, iters), timed(mine, iters)
                        ratios.append(b / a)
                table[f"{arch} bs{batch} {column}"] = {
                    "ratio": round(statistics.median(ratios), 3),
                    "spread": [round(min(ratios), 3), round(max(ratios), 3)],
                }
                print(f"{arch} bs{batch} {column}: {table[f'{arch} bs{batch} {column}']}", flush=True)
    return {"table": table, "rounds": rounds, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "timm": timm.__version__}  # fmt: skip


def _pairs(ours, build, theirs, extract, x) -> dict[str, tuple[Callable, Callable]]:
    """Each column's (ours, timm's) step on the batch ``x``."""
    import coatnet

    def recorded() -> list:
        with coatnet.record_attention() as records:
            ours(x)
        return records

    return {
        "plain forward": (lambda: ours(x), lambda: theirs(x)),
        "inference build": (lambda: build(x), lambda: theirs(x)),
        "attention weights": (recorded, lambda: extract(x)),
        "attention_maps": (lambda: attention_maps(ours, x), lambda: extract(x)),
    }


def markdown(result: dict) -> str:
    head = "| model | " + " | ".join(f"{c} bs1 / bs8" for c in COLUMNS) + " |"
    lines = [head, "|---|" + "---|" * len(COLUMNS)]
    for arch in ARCHS:
        cells = []
        for column in COLUMNS:
            one, eight = (result["table"][f"{arch} bs{b} {column}"] for b in (1, 8))
            cells.append(f"{one['ratio']:.2f}x / {eight['ratio']:.2f}x")
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        f"\n\ntimm time / ours, median of {result['rounds']} alternating rounds, "
        f"{result['threads']} threads, torch {result['torch']}, timm {result['timm']}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vs-timm", action="store_true", help="the table against timm (see above)")
    parser.add_argument("--rounds", type=int, default=7, help="--vs-timm: alternating rounds per cell")
    parser.add_argument("--out", type=Path, help="--vs-timm: write OUT.json and OUT.md")
    parser.add_argument("--models", nargs="+", default=["demo-pre", "coatnet_0"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (analyses run on the model's device)")
    args = parser.parse_args()
    if args.vs_timm:
        from tests.support.timm import ensure_torchvision_ops

        ensure_torchvision_ops()
        result = versus_timm(args.rounds)
        print(markdown(result))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
            args.out.with_suffix(".md").write_text(markdown(result))
        return
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
