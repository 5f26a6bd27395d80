"""What a model served for inference holds in memory: its weights, its inference build, and oneDNN's packed
copies of the build's convolution weights after one forward pass at batch 1.

* model: the bytes of the model's parameters and buffers;
* build: the bytes of ``coatnet.for_inference(model)``'s parameters and buffers that the model does not
  share (folded: a copy of its own);
* packed: the bytes of the weights ``PackedConv2d`` packed for the one input shape it has seen;
* total / model: what the model costs with its build and one shape's packed weights, as a multiple of its
  weights.

Nothing is timed. A timm architecture is built with random weights (the sizes do not depend on them).
Run from the repository root:

    python benchmarks/memory.py --models coatnet_0_rw_224 coatnet_nano_rw_224 demo-pre

Writes ``benchmarks/results/memory.json`` (``benchmarks/results_file.py``'s format; ``--out`` names another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from analysis.core.inputs import preprocessing_of
from benchmarks import results_file
from coatnet.model.inference import PackedConv2d

MIB = 2**20


def storages(module: torch.nn.Module) -> dict[int, int]:
    """The bytes of each storage a module's parameters and buffers use, by address (each counted once)."""
    return {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in module.state_dict().values()
    }


def packed_bytes(build: torch.nn.Module) -> int:
    """Bytes of the weights the build's packed convolutions hold, for every shape they have seen."""
    total = 0
    for module in build.modules():
        if isinstance(module, PackedConv2d):
            total += sum(t.numel() * t.element_size() for t in module.packed.values())
    return total


def measure(spec: str) -> dict:
    if spec in coatnet.weights.NAMES:
        model = coatnet.load_checkpoint(spec).eval()
    else:
        torch.manual_seed(0)
        model = coatnet.create_model(spec).eval()
    pre = preprocessing_of(model)
    x = torch.randn(1, pre.channels, *pre.size)
    held = storages(model)
    build = coatnet.for_inference(model)
    with torch.inference_mode():
        build(x)
    own = {address: n for address, n in storages(build).items() if address not in held}
    model_bytes, build_bytes, packed = sum(held.values()), sum(own.values()), packed_bytes(build)
    return {
        "model": spec,
        "input": list(x.shape),
        "model_mib": model_bytes / MIB,
        "build_mib": build_bytes / MIB,
        "packed_mib": packed / MIB,
        "total_over_model": (model_bytes + build_bytes + packed) / model_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["coatnet_0_rw_224", "coatnet_nano_rw_224", "demo-pre"]
    )
    results_file.add_out_argument(parser, "memory")
    args = parser.parse_args()
    rows = [measure(spec) for spec in args.models]
    for r in rows:
        print(f"{r['model']:<22} model {r['model_mib']:7.1f} MiB, build {r['build_mib']:7.1f} MiB, packed "
              f"{r['packed_mib']:7.1f} MiB, all {r['total_over_model']:.2f}x the model")  # fmt: skip
    results_file.write(results_file.out_path(args), {"rows": rows}, rounds=None)


if __name__ == "__main__":
    main()
