"""Training speed: our CoAtNet vs timm's (same architecture and weights), side by side in one run.

One training step is forward, backward and AdamW, as `coatnet train` takes it. CPU: fp32, batch 8, 224x224
(and `channels_last` against the default layout for ours). CUDA (when present): bf16 autocast,
channels_last, batch 128. Run from the repository root:

    python benchmarks/training_speed.py --arch coatnet_nano_rw_224

Writes ``benchmarks/results/training_speed_{cpu,cuda}.json`` (``benchmarks/results_file.py``'s format;
``--out`` names another).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import results_file
from benchmarks.timm_speed import paired_models, throughput


def steps_per_second(model, x, y, *, iters: int, cuda: bool) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return throughput(step, 1, iters=iters, cuda=cuda)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["coatnet_nano_rw_224"])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the models this many times")
    results_file.add_out_argument(parser, "training_speed_{device}")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batch = 128 if cuda else 8
    results = []
    for arch in args.arch:
        ours, reference = paired_models(arch, device)
        x = torch.randn(batch, 3, 224, 224, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)
        last = torch.channels_last
        runs = {  # name: (model, input)
            "coatnet channels_last": (ours.to(device, memory_format=last), x.contiguous(memory_format=last)),
            "timm channels_last": (
                reference.to(device, memory_format=last),
                x.contiguous(memory_format=last),
            ),
        }
        if not cuda:
            plain = paired_models(arch, device)[0]
            runs["coatnet contiguous"] = (plain, x)
        best = {name: 0.0 for name in runs}
        for _ in range(args.rounds):
            for name, (model, inputs) in runs.items():
                rate = steps_per_second(model, inputs, y, iters=args.iters, cuda=cuda) * batch
                best[name] = max(best[name], rate)
        ratio = best["coatnet channels_last"] / best["timm channels_last"]
        results.append({
            "arch": arch, "device": torch.cuda.get_device_name() if cuda else "cpu",
            "precision": "bf16" if cuda else "fp32", "batch": batch,
            "img_s": {k: round(v, 2) for k, v in best.items()}, "ratio_coatnet_over_timm": round(ratio, 3),
        })  # fmt: skip
        for name, rate in best.items():
            print(f"{arch:<24}{name:<24}{rate:>10.1f} img/s")
        print(f"{arch:<24}{'coatnet / timm':<24}{ratio:>10.2f}")
    print(json.dumps(results, indent=2))
    figures = {"rows": results, "best_of": "the fastest of the rounds, images/s", "iters": args.iters}
    out = results_file.out_path(args, device=device)
    results_file.write(out, figures, rounds=args.rounds, device=device)


if __name__ == "__main__":
    main()
