"""Forward-only analyses run the model's inference build by themselves (issue 23): every analysis of the
shared-model registry gives the plain model's result, within an absolute 1e-5 x the largest magnitude of
each array of the reference, on models whose BatchNorms hold trained-looking statistics (folding an
identity BatchNorm would prove nothing)."""

from __future__ import annotations

import copy
import math
from dataclasses import is_dataclass
from typing import Any

import numpy as np
import pytest
import torch

import analysis
import analysis.core.running as running
import coatnet
from analysis import plain_model
from analysis.core.running import call_model, fast_runner, twin
from analysis.core.summaries import result_items
from analysis.studies.summaries import Spread
from coatnet import CoAtNet, for_inference
from coatnet.model.inference import automatic_build
from tests.support.every_analysis import ANALYSES, RUNS_THE_MODEL
from tests.support.toys import SIZE, images, trained_looking

# the analyses whose passes are forward-only: each must reach the build without being asked
FORWARD_ONLY = (
    "attention_maps", "attention_statistics", "attention_rollout", "compare", "feature_maps", "cka",
    "intervention_effect", "head_importance", "study_batch", "faithfulness",
)  # fmt: skip


def build(kind: str) -> CoAtNet:
    torch.manual_seed(0)
    overrides = {
        "pre": {},
        "post": {"attention": "post"},
        # timm's CoAtNet-0 blocks: pre-norm with its activation, SE before norm2, the MLP relative bias
        "rmlp-se-early": {"rel_pos": "mlp", "se_early": True, "mbconv_pre_norm_act": True},
    }[kind]
    model = coatnet.create_model("coatnet_toy", img_size=SIZE, strides=(1, 1, 2, 2, 2), **overrides)
    return trained_looking(model)


KINDS = ("pre", "post", "rmlp-se-early")


@pytest.fixture(scope="module")
def models() -> dict[str, CoAtNet]:
    return {kind: build(kind) for kind in KINDS}


def assert_close_to(result: Any, reference: Any, *, path: str = "result", scale: float = 0.0) -> None:
    """``result`` equals ``reference``: floats within an absolute 1e-5 x the largest magnitude of the
    reference's array (or ``scale`` where larger), everything else exactly.

    A standard deviation is a difference of values the size of their mean, so it is compared at the
    mean's scale: two float32 sums that differ in their last bit move a small spread by more than 1e-5 of
    itself."""
    if isinstance(reference, Spread):
        assert type(result) is Spread, path
        assert_close_to(result.mean, reference.mean, path=f"{path}.mean")
        around = abs(reference.mean) if reference.mean is not None and math.isfinite(reference.mean) else 0.0
        assert_close_to(result.std, reference.std, path=f"{path}.std", scale=around)
    elif is_dataclass(reference):
        assert type(result) is type(reference), path
        for (name, a), (_, b) in zip(result_items(result), result_items(reference), strict=True):
            assert_close_to(a, b, path=f"{path}.{name}")  # with what is computed on first read
    elif isinstance(reference, dict):
        assert result.keys() == reference.keys(), f"{path}: keys differ"
        for key in reference:
            assert_close_to(result[key], reference[key], path=f"{path}[{key!r}]")
    elif isinstance(reference, list | tuple) and not (reference and isinstance(reference[0], str | int)):
        assert len(result) == len(reference), path
        for i, (a, b) in enumerate(zip(result, reference, strict=True)):
            assert_close_to(a, b, path=f"{path}[{i}]")
    elif isinstance(reference, np.ndarray | torch.Tensor) or type(reference) is float:
        a, b = np.asarray(result), np.asarray(reference)
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        )
        if not np.issubdtype(b.dtype, np.floating):
            np.testing.assert_array_equal(a, b, err_msg=path)
            return
        finite = np.isfinite(b)
        scale = max(scale, float(np.abs(b[finite]).max()) if finite.any() else 0.0)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(scale, 1e-12), err_msg=path, equal_nan=True)
    else:
        assert result == reference, f"{path}: {result!r} vs {reference!r}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", RUNS_THE_MODEL)
def test_every_analysis_gives_the_plain_models_result(models, name: str, kind: str) -> None:
    model, x = models[kind], images(4)
    with plain_model():
        reference = ANALYSES[name](model, x)
    result = ANALYSES[name](model, x)
    if name == "head_importance":  # a drop is a difference of logits: compared as the logits it comes from
        result, reference = ({"logit": r.logit, "knocked out": {b: r.logit - d for b, d in r.drop.items()}}
                             for r in (result, reference))  # fmt: skip
    assert_close_to(result, reference)


@pytest.mark.parametrize("name", FORWARD_ONLY)
def test_forward_only_analyses_take_the_build_without_being_asked(models, monkeypatch, name: str) -> None:
    taken = []

    def counted(model: CoAtNet, **kwargs: Any) -> CoAtNet:
        taken.append(model)
        return for_inference(model, **kwargs)

    monkeypatch.setattr(running, "for_inference", counted)
    model = models["pre"]
    if name == "study_batch":  # the study hands its runner in itself, as `coatnet eval` does
        from analysis.studies.study import measure_batch, study_plan

        runner = fast_runner(model)
        assert runner.inference_build and taken == [model]
        measure_batch(model, runner, images(4), torch.arange(4), study_plan(model, (SIZE, SIZE)), max_rows=8)
        return
    ANALYSES[name](model, images(4))
    assert taken and all(m is model for m in taken), name
    with plain_model():
        taken.clear()
        ANALYSES[name](model, images(4))
    assert taken == []


def test_which_model_a_call_runs(models) -> None:
    model = build("pre")
    with call_model(model) as own:
        assert own is for_inference(model) and own.inference_build  # one build, kept
    with plain_model(), call_model(model) as own:
        assert own is model
    with call_model(model, private=True) as own:  # hooks or gradients: a twin of the plain model
        assert own is not model and not getattr(own, "inference_build", False)
    with call_model(for_inference(model)) as own:  # a build is run as it is
        assert own is for_inference(model)
    handle = model.stages[3].register_forward_hook(lambda *args: None)
    with call_model(model) as own:  # the owner's hook sees the owner's modules
        assert own is model
    handle.remove()
    model.train()
    with call_model(model) as own:
        assert own is not model and own.training
    half = build("pre").to(torch.bfloat16)
    with call_model(half) as own:  # folding BatchNorm in bf16 would round the weights once more
        assert own is half


def test_a_weight_change_reaches_the_next_call(models) -> None:
    """A build never serves stale weights: an update of the shared model in place (an optimizer step,
    an edit in a notebook) is in the next call's result."""
    model = build("post")
    x = images(2)
    before = analysis.attention_maps(model, x)
    with torch.no_grad():
        model.stages[3].blocks[0].attn.qkv.weight.mul_(1.5)
    after = analysis.attention_maps(model, x)
    with plain_model():
        reference = analysis.attention_maps(model, x)
    assert not np.allclose(before.logits, after.logits)
    assert_close_to(after, reference)


def test_the_build_and_its_twin_record_and_intervene_as_the_model_does(models) -> None:
    """Every intervention of every kind on the build, and hooks on a twin of the build (which a later
    analysis could take), give the plain model's numbers."""
    model = models["rmlp-se-early"]
    fast = for_inference(model)
    x = images(2)
    items = [
        [coatnet.Intervention("S3.0", kind) for kind in coatnet.model.interventions.ATTENTION_KINDS],
        [coatnet.Intervention("S1.0", "zero_branch"), coatnet.Intervention("S2.0", "no_se")],
    ]
    for chosen in [*([i] for i in items[0]), items[1]]:
        with torch.inference_mode(), coatnet.intervene(*chosen):
            torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)
    seen = []
    own = twin(fast)
    own.stages[2].register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    with torch.inference_mode():
        own(x)
        expected = model.forward_intermediates(x)[1][3]  # the stage outputs: S0 (the stem) first
        torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=1e-5)
    assert not fast.stages[2]._forward_hooks


def test_a_call_given_the_models_own_modules_never_takes_the_build_by_itself() -> None:
    """Under ``plain_model``, on a twin, and on the build itself, a pass under ``torch.inference_mode()``
    runs the modules the analysis was handed (the model's call would otherwise take its build)."""
    model = build("pre")
    with torch.inference_mode():
        assert automatic_build(model) is for_inference(model)  # a user's call
    with plain_model(), call_model(model) as own, torch.inference_mode():
        assert own is model and automatic_build(own) is None
    with call_model(model, private=True) as own, torch.inference_mode():
        assert automatic_build(own) is None
    with call_model(model) as own, torch.inference_mode():
        assert own.inference_build and automatic_build(own) is None


def test_global_hooks_and_weights_reassigned_through_data_keep_calls_right() -> None:
    """A global module hook may match the model's own modules: such a call runs the model itself. A
    weight reassigned through ``.data`` (no version bump) still makes a new build."""
    model = build("pre")
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        with call_model(model) as own:
            assert own is model
    finally:
        handle.remove()
    x = images(2)
    before = analysis.attention_maps(model, x).logits
    head = model.head.fc
    head.weight.data = head.weight.data * 2
    after = analysis.attention_maps(model, x).logits
    with plain_model():
        np.testing.assert_allclose(after, analysis.attention_maps(model, x).logits, atol=1e-5)
    assert not np.allclose(before, after)


def test_the_softmaxes_computed_on_first_read_stay_read_only_where_the_logits_are() -> None:
    block = analysis.attention_maps(build("pre"), images(1)).blocks[0]
    block.content_logits.flags.writeable = False  # as the app shares a result between sessions
    block.bias.flags.writeable = False
    assert not block.content.flags.writeable and not block.bias_softmax.flags.writeable


@pytest.mark.parametrize(
    ("name", "mode"), [("coatnet_toy", "eval"), ("coatnet_toy", "train"), ("coatnet_0_rw_224", "eval")]
)
def test_input_gradients_run_the_build_in_eval_mode_and_leave_the_models_parameters_as_they_were(name, mode):
    """Input gradients through the inference build equal the model's own (also timm's CoAtNet-0 layout,
    squeeze-excitation before its BatchNorm, run as one fused pass in the build); in training mode a twin
    of the call's own computes them, no parameter of the shared model changing its ``requires_grad``."""
    from analysis.core.running import input_gradient_model

    torch.manual_seed(0)
    model = coatnet.create_model(name, img_size=32, num_classes=10).train(mode == "train")
    x = torch.randn(2, 3, 32, 32)

    def gradient(net: torch.nn.Module) -> torch.Tensor:
        inputs = x.clone().requires_grad_()
        with coatnet.private_random(torch.Generator().manual_seed(0)):
            return torch.autograd.grad(net(inputs)[:, 3].sum(), inputs)[0]

    with input_gradient_model(model) as own:
        assert own is not model and not any(p.requires_grad for p in own.parameters())
        assert getattr(own, "inference_build", False) == (mode == "eval")
        ours = gradient(own)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    reference = gradient(copy.deepcopy(model))
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)
