"""Fused vs explicit attention, side by side in one run: images/s of a plain forward pass (fused
``scaled_dot_product_attention``) against a recorded one (explicit path, every block's logits, bias and
weights kept), for pre- and post-normalization. Prints a table, and writes
``benchmarks/results/attention_paths_{cpu,cuda}.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another). Run from the repository root:

    python benchmarks/attention_paths.py --model coatnet_0 --batch 8 --img-size 224
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from benchmarks import results_file


def images_per_second(run, batch: int, *, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    for _ in range(iters):
        run()
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="coatnet_0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    results_file.add_out_argument(parser, "attention_paths_{device}")
    args = parser.parse_args()

    results = []
    for mode in ("pre", "post"):
        model = (
            coatnet.create_model(args.model, attention=mode, img_size=args.img_size).eval().to(args.device)
        )
        x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=args.device)

        def fused(model=model, x=x) -> None:
            with torch.inference_mode():
                model(x)

        def recorded(model=model, x=x) -> None:
            with torch.inference_mode(), coatnet.record_attention():
                model(x)

        fused_ips = images_per_second(fused, args.batch, warmup=args.warmup, iters=args.iters)
        recorded_ips = images_per_second(recorded, args.batch, warmup=args.warmup, iters=args.iters)
        results.append(
            {
                "model": args.model,
                "mode": mode,
                "device": args.device,
                "batch": args.batch,
                "img_size": args.img_size,
                "fused_img_s": round(fused_ips, 2),
                "recorded_img_s": round(recorded_ips, 2),
                "recorded_over_fused_time": round(fused_ips / recorded_ips, 3),
            }
        )
    print(f"{'mode':<6}{'fused img/s':>14}{'recorded img/s':>17}{'time ratio':>12}")
    for r in results:
        print(
            f"{r['mode']:<6}{r['fused_img_s']:>14.1f}{r['recorded_img_s']:>17.1f}"
            f"{r['recorded_over_fused_time']:>12.2f}"
        )
    print(json.dumps(results, indent=2))
    out = results_file.out_path(args, device=args.device)
    results_file.write(out, {"rows": results, "warmup": args.warmup}, rounds=args.iters, device=args.device)


if __name__ == "__main__":
    main()
