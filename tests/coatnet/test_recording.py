"""Recording attention: what a record holds, when recording is on, and per-thread isolation."""

from __future__ import annotations

import threading

import pytest
import torch

import coatnet
from coatnet.model.attention import RelativeAttention
from coatnet.model.blocks import TransformerBlock
from coatnet.model.recording import active_recorder


@pytest.fixture(scope="module")
def pico() -> coatnet.CoAtNet:
    """coatnet_pico at 64x64: attention in S3 (2 blocks, 4x4 grid, 4 heads) and S4 (1 block, 2x2, 8 heads)."""
    torch.manual_seed(0)
    return coatnet.create_model("coatnet_pico", img_size=64, num_classes=10).eval()


def recorded(model: torch.nn.Module, x: torch.Tensor, **kwargs: bool) -> list[coatnet.AttentionRecord]:
    with coatnet.record_attention(**kwargs) as records:
        model(x)
    return list(records)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_one_record_per_attention_block_in_forward_order(mode: str) -> None:
    """Each Transformer block leaves one record naming its stage, block, mode and grid, with
    (B, heads, N, N) logits and weights and a (heads, N, N) bias."""
    model = coatnet.create_model("coatnet_pico", attention=mode, img_size=64, num_classes=10).eval()
    records = recorded(model, torch.randn(2, 3, 64, 64))
    blocks = [m.attn for m in model.modules() if isinstance(m, TransformerBlock)]
    assert [(r.stage, r.block) for r in records] == [(b.stage, b.block) for b in blocks]
    assert [r.name for r in records] == ["S3.0", "S3.1", "S4.0"]
    assert [r.grid for r in records] == [(4, 4), (4, 4), (2, 2)]
    for record, block in zip(records, blocks, strict=True):
        n = record.grid[0] * record.grid[1]
        assert record.mode == mode
        assert record.content_logits.shape == record.weights.shape == (2, block.heads, n, n)
        assert record.bias.shape == (block.heads, n, n)
        torch.testing.assert_close(record.bias, block.rel_pos.get_bias(record.grid), atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_recorded_weights_follow_the_mode(mode: str) -> None:
    """Pre: weights == softmax(content + bias). Post: weights == softmax(content) + bias."""
    model = coatnet.create_model("coatnet_pico", attention=mode, img_size=64, num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RelativeAttention):
                m.rel_pos.table.normal_(std=0.5)  # a bias large enough that mixing up the modes shows
    for record in recorded(model, torch.randn(2, 3, 64, 64)):
        content, bias = record.content_logits, record.bias
        if mode == "pre":
            expected, other = torch.softmax(content + bias, -1), torch.softmax(content, -1) + bias
        else:
            expected, other = torch.softmax(content, -1) + bias, torch.softmax(content + bias, -1)
        torch.testing.assert_close(record.weights, expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(record.weights, other, atol=1e-3)


def test_nothing_is_recorded_outside_the_context(pico: coatnet.CoAtNet) -> None:
    """Without an open recorder nothing is active, and a closed recorder does not grow."""
    x = torch.randn(1, 3, 64, 64)
    assert active_recorder() is None
    with coatnet.record_attention() as records:
        assert active_recorder() is records
        pico(x)
    assert len(records) == 3
    assert active_recorder() is None
    pico(x)
    assert len(records) == 3


def test_nested_contexts_record_separately_and_restore(pico: coatnet.CoAtNet) -> None:
    """An inner recorder takes the records while open; on exit the outer one is active again."""
    x = torch.randn(1, 3, 64, 64)
    with coatnet.record_attention() as outer:
        pico(x)
        with coatnet.record_attention() as inner:
            assert active_recorder() is inner
            pico(x)
            pico(x)
        assert active_recorder() is outer
        pico(x)
    assert (len(outer), len(inner)) == (6, 6)
    assert active_recorder() is None


def test_error_inside_context_leaves_no_recorder_active(pico: coatnet.CoAtNet) -> None:
    """A forward pass that raises (bad input size) inside the context, nested or not, restores the
    previous state: no recorder remains active."""
    with pytest.raises(ValueError, match="total stride"), coatnet.record_attention():
        pico(torch.randn(1, 3, 60, 64))
    assert active_recorder() is None
    with coatnet.record_attention() as outer:
        with pytest.raises(RuntimeError), coatnet.record_attention():
            pico(torch.randn(1, 5, 64, 64))  # wrong channel count fails inside the stem
        assert active_recorder() is outer
    assert active_recorder() is None
    assert len(outer) == 0


def test_detach_false_keeps_records_in_graph(pico: coatnet.CoAtNet) -> None:
    """``detach=False`` records carry gradients back to the input; the default stores detached tensors."""
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    kept = recorded(pico, x, detach=False)
    assert all(r.weights.requires_grad and r.content_logits.requires_grad for r in kept)
    kept[0].weights[0, 0, 0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    detached = recorded(pico, x)
    assert not any(r.weights.requires_grad or r.content_logits.requires_grad for r in detached)
    torch.testing.assert_close(detached[0].weights, kept[0].weights.detach(), atol=0, rtol=0)


def test_recorder_in_one_thread_does_not_see_other_threads(pico: coatnet.CoAtNet) -> None:
    """A recorder open in the main thread captures none of another thread's forward passes."""
    x = torch.randn(1, 3, 64, 64)
    seen_in_thread: list[object] = []

    def worker() -> None:
        seen_in_thread.append(active_recorder())
        pico(x)

    with coatnet.record_attention() as records:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen_in_thread == [None]
    assert len(records) == 0


def test_two_threads_sharing_one_model_get_their_own_records(pico: coatnet.CoAtNet) -> None:
    """Two threads run recorded passes through one model at the same time on different images; every pass
    yields exactly its own records, equal to a single-threaded recording of that image."""
    images = [torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)]
    references = [recorded(pico, image) for image in images]
    assert not torch.allclose(references[0][0].weights, references[1][0].weights, atol=1e-3)
    iterations = 20
    barrier = threading.Barrier(2)
    results: list[list[list[coatnet.AttentionRecord]]] = [[], []]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for _ in range(iterations):
                barrier.wait(timeout=30)  # start each pass together so that the passes overlap
                results[index].append(recorded(pico, images[index]))
        except BaseException as error:  # report in the main thread rather than dying silently
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert active_recorder() is None
    for index in range(2):
        assert len(results[index]) == iterations
        for records in results[index]:
            assert len(records) == len(references[index])
            for got, want in zip(records, references[index], strict=True):
                assert (got.stage, got.block, got.grid) == (want.stage, want.block, want.grid)
                torch.testing.assert_close(got.weights, want.weights, atol=1e-6, rtol=0)
                torch.testing.assert_close(got.content_logits, want.content_logits, atol=1e-6, rtol=0)
