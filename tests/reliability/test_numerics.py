"""Numerics: bf16 autocast on the CPU (and fp16 / bf16 on CUDA, marker ``gpu``) for coatnet_nano and
coatnet_0 at 224 and 384 on all-zero, all-maximum and random images, and every analysis of the demos with
their post-normalization bias tables scaled x100: no NaN or Inf anywhere."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import coatnet
from analysis.core.summaries import result_items
from tests.support.every_analysis import ANALYSES, PLAIN_PASSES


def extremes(size: int, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """All-zero, all-maximum and random pictures, normalised as the model's preprocessing does."""
    pixels = torch.stack([
        torch.zeros(3, size, size),
        torch.ones(3, size, size),
        torch.rand(3, size, size, generator=torch.Generator().manual_seed(0)),
    ])  # fmt: skip
    return (pixels - mean) / std


def finite_logits(name: str, size: int, device: str, dtype: torch.dtype) -> None:
    """The logits of ``extremes`` under autocast to ``dtype``, channels-last (as training runs, and as bf16
    on a CPU should run: there torch hands a channels-last convolution to oneDNN, while a contiguous 1 x 1
    convolution in bf16 falls to its slow im2col path, 2.5x slower for coatnet_nano at 384 on a CPU
    without bf16 instructions), are finite."""
    torch.manual_seed(0)
    model = coatnet.create_model(name, img_size=size).eval().to(device, memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype):
        logits = model(extremes(size).to(device, memory_format=torch.channels_last))
    assert logits.dtype == dtype and logits.shape == (3, 1000)
    assert torch.isfinite(logits).all(), f"{name} at {size} in {dtype}: NaN or Inf in the logits"


@pytest.mark.slow
# coatnet_0 at 384 (slow in bf16 on a CPU without bf16 instructions) is left to the GPU test below: the
# 384 px bias tables are nano's at 384, coatnet_0's widths and depths are its own at 224
@pytest.mark.parametrize(("name", "size"), [("coatnet_nano", 224), ("coatnet_nano", 384), ("coatnet_0", 224)])
def test_bf16_autocast_on_the_cpu_stays_finite(name: str, size: int) -> None:
    finite_logits(name, size, "cpu", torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("size", [224, 384])
@pytest.mark.parametrize("name", ["coatnet_nano", "coatnet_0"])
def test_half_precision_autocast_on_cuda_stays_finite(name: str, size: int, dtype: torch.dtype) -> None:
    finite_logits(name, size, "cuda", dtype)


def finite(value, path: str = "result") -> None:
    """Every float in a result (dataclasses, tuples, dicts, arrays) is finite; a patching result's recovery
    is NaN where it is undefined (its two runs alike) or where a block has no such component, by design."""
    if hasattr(value, "__dataclass_fields__") and hasattr(value, "defined"):
        finite([value.clean_metric, value.corrupted_metric], f"{path}.metrics")
        recovery = np.asarray(value.recovery)
        present = value.present if hasattr(value, "present") else np.ones(recovery.shape, dtype=bool)
        heads = np.concatenate([np.zeros(0), *getattr(value, "heads", {}).values()])
        if value.defined:
            assert np.isfinite(recovery[present]).all() and np.isfinite(heads).all(), path
        else:
            assert np.isnan(recovery).all() and np.isnan(heads).all(), path
    elif hasattr(value, "__dataclass_fields__"):
        for name, item in result_items(value):  # with what is computed on first read
            finite(item, f"{path}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            finite(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            finite(item, f"{path}[{i}]")
    elif isinstance(value, np.ndarray | torch.Tensor | float) and not isinstance(value, bool):
        array = np.asarray(value, dtype=np.float64)
        assert np.isfinite(array).all(), path


def scaled_bias(model: coatnet.CoAtNet, factor: float) -> coatnet.CoAtNet:
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for module in scaled.modules():
            if hasattr(module, "table") and isinstance(module.table, torch.nn.Parameter):
                module.table.mul_(factor)
    return scaled


@pytest.mark.parametrize("demo", ["demo-post", "demo-pre"])
def test_every_analysis_of_a_demo_with_post_bias_tables_scaled_100x_stays_finite(demo: str) -> None:
    model = scaled_bias(coatnet.load_checkpoint(demo, attention="post"), 100.0)
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for name, run in ANALYSES.items():
        if name not in PLAIN_PASSES:
            finite(run(model, images), name)
