"""Our CoAtNet vs timm's on the same weights, side by side in one run: images/s and the ratio.

CPU: fp32, batch 8, 224x224. CUDA (when present): bf16 autocast, channels_last, batch 256. timm is a
test-only dependency (requirements-test.txt); run from the repository root:

    python benchmarks/timm_speed.py --arch coatnet_0_rw_224
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from tests.timm_support import ensure_torchvision_ops


def images_per_second(model, x: torch.Tensor, *, iters: int, autocast) -> float:
    with torch.inference_mode(), autocast():
        model(x)  # warm-up
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return x.shape[0] * iters / (time.perf_counter() - start)


def paired_models(arch: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, timm's) for ``arch``, with the same random weights."""
    ensure_torchvision_ops()
    import timm

    reference = timm.create_model(arch, pretrained=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
        ours = coatnet.from_timm(path, arch=arch)
    return ours, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["coatnet_0_rw_224", "coatnet_nano_rw_224"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two models this many times")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batch = 256 if cuda else 8
    results = []
    for arch in args.arch:
        ours, reference = paired_models(arch)
        x = torch.randn(batch, 3, 224, 224, device=device)
        models = {"coatnet": ours.to(device), "timm": reference.to(device)}
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
            models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}

        def autocast(cuda: bool = cuda):
            return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

        best = {name: 0.0 for name in models}
        for _ in range(args.rounds):  # alternate, keep each model's best round
            for name, model in models.items():
                best[name] = max(best[name], images_per_second(model, x, iters=args.iters, autocast=autocast))
        results.append(
            {
                "arch": arch,
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "precision": "bf16" if cuda else "fp32",
                "batch": batch,
                "coatnet_img_s": round(best["coatnet"], 2),
                "timm_img_s": round(best["timm"], 2),
                "ratio_coatnet_over_timm": round(best["coatnet"] / best["timm"], 3),
            }
        )
    print(f"{'arch':<24}{'coatnet img/s':>15}{'timm img/s':>12}{'ratio':>8}")
    for r in results:
        print(
            f"{r['arch']:<24}{r['coatnet_img_s']:>15.1f}{r['timm_img_s']:>12.1f}{r['ratio_coatnet_over_timm']:>8.2f}"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
