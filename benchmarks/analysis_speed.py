"""Analysis speed as a ratio to one plain forward pass of the same model and batch (CPU by default).

The issue's targets: all attention maps of all blocks and heads within 3x a forward pass, the effective
receptive fields of all five stages within 15x. Run from the repository root:

    python benchmarks/analysis_speed.py --models demo-pre coatnet_0
    python benchmarks/analysis_speed.py --models coatnet_0_rw_224 --device cuda   # on a GPU
    python benchmarks/analysis_speed.py --vs-timm --rounds 5

Writes ``benchmarks/results/analysis_speed_{cpu,cuda}.json``, with ``--vs-timm``
``analysis_vs_timm_{cpu,cuda}.json`` and its markdown (``.md``) beside it (``benchmarks/results_file.py``'s
format; ``--out`` names another).

``--vs-timm``: the table of issue 23, side by side with timm on the same weights (ours imported from a
randomised timm model's file), fp32, NCHW input, the same threads, alternating rounds; each cell the
median of timm's time / ours (above 1: ours is faster), with its spread:

- plain forward: our module tree as ``from_timm`` gives it, against timm's model;
- inference build: ``coatnet.for_inference(model)``, against timm's model;
- attention weights: one pass recording every block's weights (``coatnet.record_attention``), against
  timm's ``AttentionExtract`` (hooks on every ``attn_drop``, which sees the weights on timm's non-fused
  path: each attention module's ``fused_attn`` off);
- ``analysis.attention_maps``: the analysis users call, against the same ``AttentionExtract``;
- Grad-CAM of S3 (batch 1): ``analysis.attributions(method="gradcam")``, against pytorch-grad-cam's
  ``GradCAM`` on timm's model with the same target layer (``stages[2]``), image and class.

Each peer runs on a copy of its own: the copy ``AttentionExtract`` hooks (and whose fused attention is
off), the copy ``GradCAM`` hooks, and timm's model as created for the plain columns. The gradient
analyses that have no peer (class relevance, gradient rollout, Integrated Gradients) are timed as a
multiple of our plain forward pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import (
    attention_maps,
    attention_rollout,
    attention_statistics,
    attributions,
    class_relevance,
    gradcam_stages,
    preprocessing_of,
    receptive_fields,
)
from analysis.core.models import load_model
from benchmarks import results_file


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
    from benchmarks.timm_speed import per_call

    return per_call(step, iters, cuda=torch.cuda.is_available())


def _under(context: Callable[[], object], step: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with context():
            return step()

    return run


def versus_timm(
    rounds: int, archs: Sequence[str] = ARCHS, *, device: str = "cpu", bf16: bool = False
) -> dict:
    """Every cell of the table: timm's time / ours, median and spread over alternating rounds. ``bf16``:
    every pass of both under bf16 autocast (on CUDA), but Grad-CAM's, in fp32 (pytorch-grad-cam turns
    its activations into numpy arrays, which have no bf16)."""
    amp = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else nullcontext
    import timm
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from timm.utils import AttentionExtract

    import coatnet
    from benchmarks.timm_speed import paired_models

    table, alone = {}, {}
    for arch in archs:
        ours, theirs = paired_models(arch, device)
        build = coatnet.for_inference(ours)
        unfused = copy.deepcopy(theirs)
        for module in unfused.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = False  # so that attn_drop sees the weights
        extract = AttentionExtract(unfused, method="hook", names=["*attn_drop"])
        hooked = copy.deepcopy(theirs)
        peer_cam = GradCAM(model=hooked, target_layers=[hooked.stages[2]])

        for batch in (1, 8):
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
            pairs = {
                c: (_under(amp, a), _under(amp, b))
                for c, (a, b) in _pairs(ours, build, theirs, extract, x).items()
            }
            if batch == 1:
                with torch.no_grad():
                    target = int(theirs(x).argmax())
                pairs["Grad-CAM S3"] = (
                    lambda m=ours, x=x, t=target: attributions(m, x, method="gradcam", stage="S3", target=t),
                    lambda p=peer_cam, x=x, t=target: p(input_tensor=x, targets=[ClassifierOutputTarget(t)]),
                )
            iters = (6 if batch == 1 else 2) * (5 if device == "cuda" else 1)
            for column, (mine, peer) in pairs.items():
                ratios = []
                gradients = column.startswith("Grad-CAM")
                with torch.inference_mode(not gradients):
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
        alone[arch] = _without_peer(ours, rounds, device)
        print(f"{arch} without a peer: {alone[arch]}", flush=True)
    return {"table": table, "without_peer": alone, "archs": list(archs), "rounds": rounds,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "timm": timm.__version__,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "bf16": bf16,
            "pytorch_grad_cam": version("grad-cam")}  # fmt: skip


def _without_peer(model, rounds: int, device: str = "cpu") -> dict[str, dict[str, float]]:
    """The gradient analyses without a peer at batch 1: median ms and the multiple of a plain forward."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    steps = {
        "class relevance": lambda: class_relevance(model, x, target=[1]),
        "gradient rollout": lambda: class_relevance(model, x, method="grad_rollout", target=[1]),
        "Integrated Gradients (32 steps, no SmoothGrad)": lambda: attributions(
            model, x, method="integrated_gradients", target=1, n_steps=32, noise_tunnel=False
        ),
        "Grad-CAM of every stage": lambda: gradcam_stages(model, x, target=1),
    }
    base = seconds(forward, rounds)
    out = {}
    for name, step in steps.items():
        taken = seconds(step, max(3, rounds // 2))
        out[name] = {"ms": round(1000 * taken, 1), "x forward": round(taken / base, 2)}
    return out


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
    head = "| model | " + " | ".join(f"{c} bs1 / bs8" for c in COLUMNS) + " | Grad-CAM S3 bs1 |"
    lines = [head, "|---|" + "---|" * (len(COLUMNS) + 1)]
    for arch in result["archs"]:
        cells = []
        for column in COLUMNS:
            one, eight = (result["table"][f"{arch} bs{b} {column}"] for b in (1, 8))
            cells.append(f"{one['ratio']:.2f}x / {eight['ratio']:.2f}x")
        cells.append(f"{result['table'][f'{arch} bs1 Grad-CAM S3']['ratio']:.2f}x")
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    names = list(next(iter(result["without_peer"].values())))
    lines += [
        "",
        "| model (ours alone, batch 1) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for arch, row in result["without_peer"].items():
        cells = [f"{row[n]['ms']:.0f} ms ({row[n]['x forward']:.1f}x forward)" for n in names]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    precision = " bf16 autocast (Grad-CAM fp32)" if result.get("bf16") else " fp32"
    return "\n".join(lines) + (
        f"\n\ntimm time / ours (above 1: ours faster), median of {result['rounds']} alternating rounds, "
        f"{result.get('device', 'cpu')}{precision}, "
        f"{result['threads']} threads, torch {result['torch']}, timm {result['timm']}, "
        f"pytorch-grad-cam {result['pytorch_grad_cam']}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vs-timm", action="store_true", help="the table against timm (see above)")
    parser.add_argument("--rounds", type=int, default=7, help="--vs-timm: alternating rounds per cell")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="--vs-timm: timm architectures")
    parser.add_argument("--bf16", action="store_true", help="--vs-timm: under bf16 autocast (CUDA)")
    parser.add_argument("--models", nargs="+", default=["demo-pre", "coatnet_0"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (analyses run on the model's device)")
    results_file.add_out_argument(parser, "analysis_{kind}_{device}")
    args = parser.parse_args()
    if args.vs_timm:
        from tests.support.timm import ensure_torchvision_ops

        ensure_torchvision_ops()
        result = versus_timm(args.rounds, args.archs, device=args.device, bf16=args.bf16)
        print(markdown(result))
        out = results_file.out_path(args, kind="vs_timm", device=args.device)
        path = results_file.write(out, result, rounds=args.rounds, device=args.device)
        path.with_suffix(".md").write_text(markdown(result))
        return
    rows = []
    for spec in args.models:
        model = load_model(spec, device=args.device)
        size = preprocessing_of(model).size
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
    out = results_file.out_path(args, kind="speed", device=args.device)
    results_file.write(out, {"batch": args.batch, "rows": rows}, rounds=args.repeats, device=args.device)


if __name__ == "__main__":
    main()
