"""On CUDA (gpu-marked: skipped without it): every analysis gives what it gives on the CPU, the inference
build agrees with the plain model, and evaluation runs in bf16 autocast close to fp32."""

from __future__ import annotations

import copy

import pytest
import torch

from coatnet import for_inference
from tests.support.every_analysis import ANALYSES, assert_same
from tests.support.toys import images, toy

pytestmark = pytest.mark.gpu


@pytest.fixture
def exact_cuda(monkeypatch):
    """fp32 on CUDA as on the CPU: no TF32 in convolutions or matmuls (analyses report weights and
    gradients in fp32)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.parametrize("attention", ["pre", "post"])
@pytest.mark.parametrize("name", list(ANALYSES))
def test_every_analysis_gives_on_cuda_what_it_gives_on_the_cpu(name, attention, exact_cuda):
    model, x = toy(attention=attention), images(4)
    on_cpu = ANALYSES[name](model, x)
    on_cuda = ANALYSES[name](copy.deepcopy(model).cuda(), x.cuda())
    assert_same(on_cuda, on_cpu, rtol=1e-3)


def test_the_inference_build_on_cuda_matches_the_plain_model(exact_cuda):
    model = toy().cuda()
    x = images(4).cuda()
    with torch.inference_mode():
        torch.testing.assert_close(for_inference(model)(x), model(x), rtol=1e-4, atol=2e-5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = for_inference(model)(x).float()
    torch.testing.assert_close(fast, model(x).detach(), rtol=0.05, atol=0.05)  # bf16: close, not equal
