"""Our CoAtNet against timm's on the same weights, side by side in one run: two comparisons.

* **as each library is used by default**: timm as ``timm.create_model(arch).eval()`` on an NCHW input;
  ours as our loaders hand it out for inference (``coatnet.for_inference``: BatchNorm folded, relative
  biases gathered once, channels-last), on the same NCHW input. Inference at batch 1 and 8, and a
  training step at batch 8 (each library's plain model in training mode: ours channels-last as
  ``coatnet train`` runs it, timm's NCHW), SGD, cross-entropy.
* **under identical settings**: the same threads, ``inference_mode``, channels-last model and input for
  both (eager), and, with ``--compile``, both ``torch.compile``'d (a compiled model is only compared with a
  compiled peer).

Each cell is the median, over ``--rounds`` alternating rounds (ours first in odd rounds, timm first in
even ones), of the ratio of our images/s to timm's, with the spread (min..max) over the rounds. Every
configuration checks that the logits agree within 1e-4. Achieved GFLOP/s (2 x multiply-accumulates per
image) stand beside the CPU's fp32 peak, worked out from ``/proc/cpuinfo`` (cores x clock x FMA lanes x
2 FMA units x 2 flops: an assumption, stated in the output). On CUDA: bf16 autocast at batch 256.

timm is a test-only dependency (requirements-test.txt). Run from the repository root::

    python benchmarks/timm_speed.py                      # the three models, CPU, ~5 minutes on 2 cores
    python benchmarks/timm_speed.py --compile            # adds the compiled comparison (slow to compile)

Writes ``benchmarks/results/timm_speed_{cpu,cuda}.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another) and the markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import coatnet  # noqa: E402
from benchmarks import results_file  # noqa: E402
from tests.support.timm import ensure_torchvision_ops  # noqa: E402

ARCHS = ("coatnet_nano_rw_224", "coatnet_0_rw_224", "coatnet_rmlp_nano_rw_224")
TOLERANCE = 1e-4


def paired_models(arch: str, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, timm's) for ``arch`` with the same random weights, ours imported from a weights file."""
    ensure_torchvision_ops()
    import timm

    torch.manual_seed(0)
    reference = timm.create_model(arch, pretrained=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
        ours = coatnet.from_timm(path, arch=arch)
    return ours.to(device).eval(), reference.to(device)


def per_call(step: Callable[[], object], iters: int, *, cuda: bool) -> float:
    """Seconds per call of ``step`` over ``iters`` calls (the device synchronised around them on CUDA)."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def throughput(step: Callable[[], object], batch: int, *, iters: int, cuda: bool) -> float:
    """Images per second of ``step`` (one batch), after one warm-up call."""
    step()
    return batch / per_call(step, iters, cuda=cuda)


def infer(model, x, autocast) -> Callable[[], object]:
    def step():
        with torch.inference_mode(), autocast():
            return model(x)

    return step


def train_step(model, x, autocast) -> Callable[[], object]:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    labels = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def compare(ours_step, timm_step, batch: int, *, rounds: int, iters: int, cuda: bool) -> dict:
    """Alternate the two, ``rounds`` times: the median ratio (ours / timm) and its spread."""
    ratios, ours_rates, timm_rates = [], [], []
    for r in range(rounds):
        order = ((ours_step, ours_rates), (timm_step, timm_rates))
        for step, rates in order if r % 2 == 0 else order[::-1]:
            rates.append(throughput(step, batch, iters=iters, cuda=cuda))
        ratios.append(ours_rates[-1] / timm_rates[-1])
    return {
        "ratio": round(statistics.median(ratios), 3),
        "spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "ours_img_s": round(statistics.median(ours_rates), 2),
        "timm_img_s": round(statistics.median(timm_rates), 2),
    }


def max_difference(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor, autocast) -> float:
    with torch.inference_mode(), autocast():
        return float((a(x).float() - b(x).float()).abs().max())


def cpu_peak() -> dict:
    """The CPU's fp32 peak, worked out from /proc/cpuinfo and the threads torch uses (an assumption: two
    FMA units per core, each ``lanes`` fp32 wide, two flops per FMA, at the clock /proc/cpuinfo reports)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M)[1].split()) if "flags" in text else set()
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else 4
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    clock = max(mhz) / 1000 if mhz else float("nan")
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    cores = torch.get_num_threads()
    return {
        "cpu": model[1] if model else platform.processor(),
        "threads": cores,
        "clock_ghz": round(clock, 2),
        "fp32_lanes": lanes,
        "peak_gflops": round(cores * clock * lanes * 2 * 2, 1),
        "assumption": "threads x clock (/proc/cpuinfo) x fp32 FMA lanes x 2 FMA units x 2 flops per FMA",
    }


def run(args: argparse.Namespace) -> dict:
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = "cuda" if cuda else "cpu"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    batches = [256] if cuda else args.batches
    rows = []
    for arch in args.arch:
        plain, reference = paired_models(arch, device)
        fast = coatnet.for_inference(plain)
        side = plain.config.img_size  # 224, or 256 for the MaxViTs whose windows are 8
        macs = coatnet.count_macs(plain, side)
        cells: dict[str, dict] = {}
        for batch in batches:
            x = torch.randn(batch, 3, *side, device=device)
            diff = max_difference(fast, reference, x, autocast)
            cell = compare(infer(fast, x, autocast), infer(reference, x, autocast), batch, rounds=args.rounds,
                           iters=args.iters, cuda=cuda)  # fmt: skip
            cells[f"default bs{batch}"] = {**cell, "max_abs_diff": diff}
            print(f"{arch} default bs{batch}: {cell} diff {diff:.2e}", flush=True)
        batch = max(batches)
        x = torch.randn(batch, 3, *side, device=device)
        last = x.contiguous(memory_format=torch.channels_last)
        timm_last = reference.to(memory_format=torch.channels_last)
        diff = max_difference(fast, timm_last, last, autocast)
        cell = compare(
            infer(fast, last, autocast), infer(timm_last, last, autocast), batch, rounds=args.rounds,
            iters=args.iters, cuda=cuda,
        )  # fmt: skip
        cells[f"both channels_last bs{batch}"] = {**cell, "max_abs_diff": diff}
        print(f"{arch} both channels_last bs{batch}: {cell} diff {diff:.2e}", flush=True)
        if args.compile:
            compiled_ours, compiled_timm = torch.compile(fast), torch.compile(timm_last)
            diff = max_difference(compiled_ours, compiled_timm, last, autocast)
            cell = compare(infer(compiled_ours, last, autocast), infer(compiled_timm, last, autocast), batch,
                           rounds=args.rounds, iters=args.iters, cuda=cuda)  # fmt: skip
            cells[f"both compiled bs{batch}"] = {**cell, "max_abs_diff": diff}
            print(f"{arch} both compiled bs{batch}: {cell} diff {diff:.2e}", flush=True)
        reference = reference.to(memory_format=torch.contiguous_format)
        trained = plain.to(memory_format=torch.channels_last)
        cell = compare(
            train_step(trained, last, autocast), train_step(reference, x, autocast), batch,
            rounds=args.rounds, iters=max(1, args.iters // 2), cuda=cuda,
        )  # fmt: skip
        cells[f"training step bs{batch}"] = cell
        print(f"{arch} training step bs{batch}: {cell}", flush=True)
        best = max(c["ours_img_s"] for k, c in cells.items() if k.startswith("default"))
        rows.append({"arch": arch, "gmacs_per_image": round(macs / 1e9, 3), "cells": cells,
                     "ours_gflops_best": round(best * 2 * macs / 1e9, 1)})  # fmt: skip
    return {
        "machine": cpu_peak() if not cuda else {"gpu": torch.cuda.get_device_name()},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": __import__("timm").__version__,
            "coatnet": coatnet.__version__,
        },
        "device": device,
        "precision": "bf16 autocast" if cuda else "fp32",
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "iters": args.iters,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    """The result as a markdown table: one row per model, one column per configuration."""
    columns = list(dict.fromkeys(k for row in result["rows"] for k in row["cells"]))
    lines = [
        "| model | " + " | ".join(columns) + " | best GFLOP/s |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for row in result["rows"]:
        cells = [_cell(row["cells"][c]) if c in row["cells"] else "" for c in columns]
        lines.append(f"| {row['arch']} | " + " | ".join(cells) + f" | {row['ours_gflops_best']} |")
    machine = result["machine"]
    if "peak_gflops" in machine:
        lines.append(
            f"\n{machine['cpu']}, {machine['threads']} threads; fp32 peak {machine['peak_gflops']} GFLOP/s "
            f"({machine['assumption']}: {machine['threads']} x {machine['clock_ghz']} GHz x "
            f"{machine['fp32_lanes']} x 2 x 2)."
        )
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    lines.append(f"{versions}; {result['precision']}; median ratio of images/s over {result['rounds']} "
                 "alternating rounds (min-max).")  # fmt: skip
    return "\n".join(lines)


def _cell(cell: dict) -> str:
    low, high = cell["spread"]
    return f"{cell['ratio']:.2f}x ({low:.2f}-{high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also compare both torch.compile'd")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    results_file.add_out_argument(parser, "timm_speed_{device}")
    args = parser.parse_args()
    result = run(args)
    table = markdown(result)
    print(table)
    out = results_file.out_path(args, device=result["device"])
    path = results_file.write(out, result, rounds=args.rounds, device=result["device"])
    path.with_suffix(".md").write_text(table + "\n")
    for row in result["rows"]:
        for name, cell in row["cells"].items():
            if cell.get("max_abs_diff", 0.0) > TOLERANCE and "bf16" not in result["precision"]:
                print(f"{row['arch']} {name}: outputs differ by {cell['max_abs_diff']:.2e}", file=sys.stderr)
                sys.exit(1)


if __name__ == "__main__":
    main()
