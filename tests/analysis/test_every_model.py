"""Every analysis on every kind of model create_model builds: layouts, stems, norms, relative-position MLPs,
pre and post, and from several threads at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import analysis
import coatnet
from tests.support.threads import in_threads

# small members of each family, at small inputs (built narrow where the family is wide)
MODELS = {
    "toy post": dict(name="coatnet_toy", img_size=32, attention="post"),
    "C-T-T-T": dict(name="coatnet_toy", img_size=32, layout="C-T-T-T"),
    "vit_rel": dict(name="vit_rel", img_size=32, strides=(8, 1, 1, 1, 1), dims=(32, 32, 32, 32),
                    depths=(1, 1, 1, 1), head_dim=16),
    "rmlp": dict(name="coatnet_rmlp_nano_rw_224", img_size=64, dims=(32, 32, 64, 64), depths=(1, 1, 1, 1)),
    "bn attention": dict(name="coatnet_bn_0_rw_224", img_size=64, dims=(32, 32, 64, 64), depths=(1, 1, 1, 1)),
    "C-C-C-C": dict(name="coatnet_toy", img_size=32, layout="C-C-C-C"),
}  # fmt: skip


def build(spec: dict) -> coatnet.CoAtNet:
    spec = dict(spec)
    torch.manual_seed(0)
    return coatnet.create_model(spec.pop("name"), **spec).eval()


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_analysis_runs(kind):
    model = build(MODELS[kind])
    size = model.config.img_size
    x = torch.randn(4, 3, *size, generator=torch.Generator().manual_seed(0))
    maps = analysis.attention_maps(model, x)
    assert len(maps.blocks) == sum(kind == "T" for s in model.config.stages for kind in s.block_kinds)
    if maps.blocks:
        stats = analysis.attention_statistics(model, x, maps=maps)
        assert all(np.isfinite(b.distance_px).all() for b in stats.blocks)
        rollout = analysis.attention_rollout(model, x, maps=maps)
        assert rollout.map.shape[0] == 4
        assert analysis.compare(model, model, x[:1]).agreement_rate == 1.0
    kernels = analysis.relative_bias_kernels(model)
    assert len(kernels.bias) == len(maps.blocks)
    fields = analysis.receptive_fields(model, x[:2])
    assert [s.name for s in fields.stages] == ["S0", "S1", "S2", "S3", "S4"]
    assert fields.stages[-1].is_global == bool(maps.blocks)
    for method in ("gradcam", "occlusion"):
        assert analysis.attributions(model, x[:1], method=method).map.shape == size
    assert len(analysis.frequency_profile(model, x).blocks) >= 5
    assert np.allclose(np.diag(analysis.cka(model, x).matrix), 1.0)


def test_several_threads_analyse_one_model_at_once():
    model = build(MODELS["rmlp"])
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    jobs = {
        "maps": lambda: analysis.attention_maps(model, x).block("S3.0").effective,
        "fields": lambda: analysis.receptive_fields(model, x[:2]).stages[2].effective,
        "gradcam": lambda: analysis.attributions(model, x[:1], stage="S2").map,
        "frequency": lambda: np.array(
            [b.high_freq_log_amp for b in analysis.frequency_profile(model, x).blocks]
        ),
    }
    alone = {name: job() for name, job in jobs.items()}
    names = [name for name in jobs for _ in range(2)]  # two threads per analysis, all at once
    together = in_threads(*(jobs[name] for name in names), repeat=2)
    for name, result in zip(names, together, strict=True):
        assert np.allclose(result, alone[name], atol=1e-5), name
    assert not model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.gpu
def test_analyses_run_on_a_cuda_model():
    model = build(MODELS["toy post"]).cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    assert analysis.attention_maps(model, x).blocks[0].effective.shape[0] == 4
    assert analysis.receptive_fields(model, x[:2]).stages[0].effective.shape == (32, 32)
    assert analysis.attributions(model, x[:1], method="gradcam").map.shape == (32, 32)
    assert analysis.attention_rollout(model, x).map.shape[0] == 4
