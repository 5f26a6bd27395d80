"""Interventions (coatnet.model.interventions): known answers, both normalizations, fused == explicit ==
build, per-row substitution, composition, threads, and the compiled fallback."""

from __future__ import annotations

import threading

import pytest
import torch

import coatnet
from coatnet.model.interventions import ATTENTION_KINDS, Intervention, intervene
from tests.support.model_state import assert_as_found, snapshot
from tests.support.toys import attentions, images, toy, zero_qk

MODES = ("pre", "post")


def lively(mode: str = "pre") -> coatnet.CoAtNet:
    """The toy with biases and content logits large enough that every substitution shows in the logits
    (a fresh model's bias tables are ~0.02: bias-only would look like uniform)."""
    model = toy(attention=mode)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for attn in attentions(model):
            attn.rel_pos.table.copy_(torch.randn(attn.rel_pos.table.shape, generator=generator))
            attn.qkv.weight.mul_(4.0)
            if mode == "post":
                attn.rel_pos.table.mul_(0.1)
    return model


def logits(model, x, *items, recorded=False):
    with torch.no_grad(), intervene(*items, model=model):
        if recorded:
            with coatnet.record_attention() as records:
                return model(x), records
        return model(x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_fused_explicit_and_the_inference_build_agree_under_every_intervention(mode, kind):
    model = lively(mode)
    x = images(3)
    item = Intervention("S3.0", kind, heads=(1, 3) if kind == "knockout" else None, rows=(1, 3))
    fused = logits(model, x, item)
    explicit, records = logits(model, x, item, recorded=True)
    built = logits(coatnet.for_inference(model), x, item)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(built, fused, rtol=1e-4, atol=2e-5)
    plain = logits(model, x)
    torch.testing.assert_close(fused[0], plain[0], rtol=0, atol=0)  # row 0 is outside the rows
    assert (fused[1:] - plain[1:]).abs().max() > 1e-5  # and the others changed (float noise: ~1e-7)
    if kind == "knockout":
        assert torch.all(records[0].weights[1:, [1, 3]] == 0) and torch.all(records[0].weights[0] != 0)


@pytest.mark.parametrize("mode", MODES)
def test_knocking_out_a_head_whose_projection_columns_are_zero_changes_nothing(mode):
    model = toy(attention=mode)
    attn = attentions(model)[0]
    with torch.no_grad():
        attn.proj.weight[:, 8:16] = 0  # head 1's 8 channels reach nothing
    x = images(2)
    torch.testing.assert_close(
        logits(model, x, Intervention("S3.0", "knockout", heads=(1,))), logits(model, x)
    )


@pytest.mark.parametrize("mode", MODES)
def test_content_only_on_a_model_whose_bias_tables_are_zero_equals_the_plain_model(mode):
    model = toy(attention=mode)
    with torch.no_grad():
        for attn in attentions(model):
            attn.rel_pos.table.zero_()
    x = images(2)
    items = [Intervention(name, "content_only") for name in ("S3.0", "S4.0")]
    torch.testing.assert_close(logits(model, x, *items), logits(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_bias_only_on_a_model_whose_q_and_k_are_zero_equals_the_plain_model(mode):
    """q = k = 0: the content logits are 0, softmax(C) = 1/N, so pre: softmax(0 + w) = softmax(w) and
    post: 1/N + w, exactly the bias-only substitutions."""
    model = toy(attention=mode)
    for attn in attentions(model):
        zero_qk(attn)
    x = images(2)
    items = [Intervention(name, "bias_only") for name in ("S3.0", "S4.0")]
    torch.testing.assert_close(logits(model, x, *items), logits(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_all_heads_knocked_out_equals_the_branch_replaced_by_the_projection_bias(mode):
    model = toy(attention=mode, layer_scale=0.5)
    block = next(m for m in model.modules() if isinstance(m, coatnet.model.blocks.TransformerBlock))
    x = images(2)
    knocked = logits(model, x, Intervention("S3.0", "knockout"))
    original = block.attn.forward

    def constant(h):  # the attention branch as the output projection of zeros: its bias, everywhere
        out = original(h)
        return block.attn.proj.bias[None, :, None, None].expand_as(out)

    block.attn.forward = constant
    try:
        replaced = logits(model, x)
    finally:
        del block.attn.forward
    torch.testing.assert_close(knocked, replaced, rtol=1e-5, atol=1e-6)


def test_uniform_and_swap_normalization_have_their_closed_forms():
    """uniform: every query's output is the mean of the values; swap on a post model: softmax(C + w)
    (the pre model's weights); both checked on the recorded weights."""
    model = toy(attention="post")
    x = images(1)
    _, plain = logits(model, x, recorded=True)
    _, uniform = logits(model, x, Intervention("S3.0", "uniform"), recorded=True)
    n = uniform[0].weights.shape[-1]
    torch.testing.assert_close(uniform[0].weights, torch.full_like(uniform[0].weights, 1 / n))
    _, swapped = logits(model, x, Intervention("S3.0", "swap_normalization"), recorded=True)
    expected = torch.softmax(plain[0].content_logits + plain[0].bias, dim=-1)
    torch.testing.assert_close(swapped[0].weights, expected)
    assert Intervention("S3.0", "swap_normalization").label.endswith("(untrained combination)")


@pytest.mark.parametrize("mode", MODES)
def test_mbconv_interventions_zero_the_branch_and_open_the_gate(mode):
    model = toy(attention=mode)
    x = images(2)
    block = model.stages[0].blocks[0]
    seen = {}
    handle = block.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    try:
        logits(model, x, Intervention("S1.0", "zero_branch"))
    finally:
        handle.remove()
    torch.testing.assert_close(seen["out"], block.shortcut(seen["x"]))  # the shortcut alone
    ungated = logits(model, x, Intervention("S1.0", "no_se"))
    block.se.forward = lambda h, ungated=None, fresh=False: h  # squeeze-excitation with a gate of 1
    try:
        expected = logits(model, x)
    finally:
        del block.se.forward
    torch.testing.assert_close(ungated, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ungated, logits(model, x))


def test_interventions_compose_and_knockout_wins():
    model = toy()
    x = images(2)
    both = logits(model, x, Intervention("S3.0", "knockout", heads=(0,)), Intervention("S3.0", "uniform"))
    with torch.no_grad(), intervene(Intervention("S3.0", "uniform")):
        nested = logits(model, x, Intervention("S3.0", "knockout", heads=(0,)))
    torch.testing.assert_close(both, nested)
    items = [Intervention("S3.0", "uniform"), Intervention("S3.0", "knockout", heads=(0,))]
    _, records = logits(model, x, *items, recorded=True)
    assert torch.all(records[0].weights[:, 0] == 0) and torch.all(records[0].weights[:, 1:] > 0)


def test_bad_interventions_say_what_is_wrong():
    model = toy()
    with pytest.raises(ValueError, match="unknown intervention"):
        Intervention("S3.0", "remove")
    with pytest.raises(ValueError, match=r"named like S3\.0"):
        Intervention("block3", "uniform")
    wrong = {
        r"has no block S9\.0": Intervention("S9.0", "uniform"),
        "is an MBConv block": Intervention("S1.0", "uniform"),
        "is a Transformer block": Intervention("S3.0", "no_se"),
        r"has heads 0\.\.3": Intervention("S3.0", "knockout", heads=(4,)),
    }
    for message, item in wrong.items():
        with pytest.raises(ValueError, match=message), intervene(item, model=model):
            pass


def test_interventions_leave_the_model_as_found_and_stay_in_their_thread():
    model = toy()
    before = snapshot(model)
    x = images(2)
    plain = logits(model, x)
    barrier = threading.Barrier(2)
    results = {}

    def run(name, items):
        with torch.no_grad(), intervene(*items):
            barrier.wait()  # both threads inside their contexts at once
            results[name] = model(x)
            barrier.wait()

    threads = [
        threading.Thread(target=run, args=("knocked", [Intervention("S3.0", "knockout")])),
        threading.Thread(target=run, args=("plain", [])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.testing.assert_close(results["plain"], plain, rtol=0, atol=0)
    assert not torch.allclose(results["knocked"], plain)
    assert_as_found(before, model)


def test_a_compiled_model_asked_to_intervene_runs_the_call_eagerly():
    model = toy()
    x = images(2)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    item = Intervention("S3.0", "knockout")
    with torch.no_grad():
        expected = logits(model, x, item)
        torch.testing.assert_close(compiled(x), model(x))
        with intervene(item):
            got = compiled(x)
    torch.testing.assert_close(got, expected)


def test_every_kind_is_written_once_and_the_public_names_read_that_table():
    from typing import get_args

    from coatnet.model.interventions import (
        CONV_KINDS,
        DESCRIPTIONS,
        INTERVENTION_KINDS,
        KINDS,
        AttentionKind,
        ConvKind,
    )

    names = [k.name for k in INTERVENTION_KINDS]
    assert len(set(names)) == len(names) and tuple(names) == KINDS
    assert get_args(AttentionKind) == ATTENTION_KINDS and get_args(ConvKind) == CONV_KINDS
    assert list(DESCRIPTIONS) == names and coatnet.INTERVENTION_DESCRIPTIONS is DESCRIPTIONS
    untrained = [k for k in names if Intervention("S3.0" if k in ATTENTION_KINDS else "S1.0", k).untrained]
    assert untrained == [k.name for k in INTERVENTION_KINDS if k.untrained] == ["swap_normalization"]
