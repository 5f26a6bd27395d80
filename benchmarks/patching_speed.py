"""The cost of activation patching for one pair of images, against issue 26's lines on the 2-core CPU:

- demo-pre at 28 px: every block, branch and head (one direction) within 2 s; one block's position map
  within 1 s;
- coatnet_0_rw_224 at 224 px: every block, branch and head within 1 minute; every position of the S3 and
  S4 blocks within 5 minutes (and the C stages' in squares of the default size, reported).

Beside each time, the peer: the same rows one pass each (``batch_size=1``), as a hook-per-run patching
loop does them; the ratio is the peer's time over ours, run by run. Times are medians of ``--repeats``
runs after one warm-up. A model named by a timm tag is built with random weights (the time does not depend
on them; nothing is downloaded). Run from the repository root, with nothing else running:

    python benchmarks/patching_speed.py --model demo-pre
    python benchmarks/patching_speed.py --model coatnet_0_rw_224 --repeats 1

Writes ``benchmarks/results/patching_speed_MODEL.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from analysis.causal.patching import activation_patching, position_patching
from analysis.core.inputs import as_batch, preprocessing_of
from app import gallery
from benchmarks import results_file

LINES = {  # seconds: (every block, branch and head; one block's positions; every S3 and S4 position)
    "demo-pre": (2.0, 1.0, None),
    "coatnet_0_rw_224": (60.0, None, 300.0),
}


def timed(run, repeats: int) -> tuple[float, object]:
    result = run()  # the warm-up (its result is the one reported)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], result


def once(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def verdict(seconds: float, line: float | None) -> str:
    return "" if line is None else f" (line {line:g} s: {'met' if seconds <= line else 'NOT met'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-pre")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip the one-pass-per-row peer")
    results_file.add_out_argument(parser, "patching_speed_{model}")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model in coatnet.weights.NAMES:
        model = coatnet.load_checkpoint(args.model).eval()
        samples = gallery.samples("fashion-mnist")
        clean, corrupted = (as_batch(s.image(), model) for s in (samples[0], samples[-1]))
    else:
        model = coatnet.create_model(args.model).eval()
        size = preprocessing_of(model).size
        generator = torch.Generator().manual_seed(0)
        clean, corrupted = torch.randn(2, 1, 3, *size, generator=generator)
    lines = LINES.get(args.model, (None, None, None))
    blocks = model.block_names()
    ours, result = timed(lambda: activation_patching(model, clean, corrupted), args.repeats)
    rows = int(result.present.sum()) + sum(len(h) for h in result.heads.values())
    print(f"{args.model} at {clean.shape[-1]} px, {len(result.blocks)} blocks, {rows} patched rows "
          f"(recovery {'defined' if result.defined else 'undefined'}):")  # fmt: skip
    figures: dict = {"model": args.model, "size_px": clean.shape[-1], "rows": rows, "every_row_s": ours}
    line = f"  every block, branch and head: {ours:.2f} s{verdict(ours, lines[0])}"
    if not args.no_peer:
        peer, _ = timed(lambda: activation_patching(model, clean, corrupted, batch_size=1), args.repeats)
        line += f"; one pass per row {peer:.2f} s, {peer / ours:.1f}x ours"
        figures["one_pass_per_row_s"] = peer
    print(line)
    attention = [b for b, k in zip(result.blocks, result.kinds, strict=True) if k == "T"]
    first = attention[0] if attention else blocks[-1]
    one, positions = timed(lambda: position_patching(model, clean, corrupted, block=first), args.repeats)
    print(f"  positions of {first} ({positions.recovery.size} squares of {positions.cell} cell(s)): "
          f"{one:.2f} s{verdict(one, lines[1])}")  # fmt: skip
    figures["one_block_positions"] = {"block": first, "s": one}
    figures["positions_s"] = {}
    total = 0.0
    for block in result.blocks:
        took, positions = once(lambda b=block: position_patching(model, clean, corrupted, block=b))
        if block.startswith(("S3", "S4")):
            total += took
        print(f"    {block}: {positions.recovery.size} squares of {positions.cell} cell(s), {took:.2f} s")
        figures["positions_s"][block] = took
    print(f"  every position of the S3 and S4 blocks: {total:.2f} s{verdict(total, lines[2])}")
    figures["s3_s4_positions_s"] = total
    figures["lines_s"] = dict(
        zip(("every_row", "one_block_positions", "s3_s4_positions"), lines, strict=True)
    )
    results_file.write(results_file.out_path(args, model=args.model), figures, rounds=args.repeats)


if __name__ == "__main__":
    main()
