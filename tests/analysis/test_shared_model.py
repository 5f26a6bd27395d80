"""One model object serves every thread (issue 11): no analysis observes or disturbs another call's forward
pass, and each leaves the model, and the process, as it found them.

Deterministic, not timed: one thread is held inside a forward pass (an event set inside a block) while
another thread runs every other analysis through the same model, one after another, and every result
must equal its single-thread result. A soak of 8 threads mixes every analysis. "As found" is checked with
:func:`tests.support.model_state.snapshot` on a model in eval mode and one in training mode, after success
and after an error.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch

from analysis.core.running import twin
from coatnet import CoAtNet
from coatnet.model.blocks import MBConvBlock
from tests.support.every_analysis import (
    ANALYSES,
    PLAIN_PASSES,
    RUNS_THE_MODEL,
    USES_HOOKS_OR_GRADIENTS,
    assert_same,
)
from tests.support.model_state import assert_as_found, snapshot
from tests.support.toys import breaks_mid_way, maxvit_toy, toy

WAIT = 120  # seconds; only reached when a call is blocked, which is the failure these tests look for


def batch(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def models() -> dict[str, CoAtNet]:
    return {"pre": toy(attention="pre"), "post": toy(attention="post")}


@pytest.fixture(scope="module")
def alone(models: dict[str, CoAtNet]) -> dict[tuple[str, str, int], Any]:
    """Every analysis of both models on two batches, run alone in this thread."""
    return {
        (mode, name, seed): run(models[mode], batch(seed))
        for mode in models
        for name, run in ANALYSES.items()
        for seed in (1, 2)
    }


class Gate:
    """Holds one chosen thread inside its first MBConv block's forward until released."""

    def __init__(self) -> None:
        self.holder: threading.Thread | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def wrap(self, forward: Callable) -> Callable:
        def paused(module: MBConvBlock, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self.holder and not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(WAIT), "never released"
            return forward(module, *args, **kwargs)

        return paused


class Call(threading.Thread):
    """One analysis in a thread of its own, keeping its result or its error."""

    def __init__(self, run: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.run_call, self.result, self.error = run, None, None

    def run(self) -> None:
        try:
            self.result = self.run_call()
        except BaseException as error:  # raised again by the test
            self.error = error

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "the call did not finish: another call blocked it"
        if self.error is not None:
            raise self.error
        return self.result


def pairs() -> list[tuple[str, str]]:
    """(held, runner): every analysis that runs the model held while every other one runs, where either
    of the two registers hooks or takes gradients."""
    return [
        (held, runner)
        for held in RUNS_THE_MODEL
        for runner in ANALYSES
        if held in USES_HOOKS_OR_GRADIENTS or runner in USES_HOOKS_OR_GRADIENTS
    ]


@pytest.mark.parametrize("held", RUNS_THE_MODEL)
def test_a_call_held_inside_a_forward_pass_neither_sees_nor_blocks_another(
    held: str, models: dict[str, CoAtNet], alone: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["pre"]
    before = snapshot(model)
    runners = [runner for h, runner in pairs() if h == held]
    first, others = held_while(model, held, runners, monkeypatch)
    for runner in runners:
        assert_same(others[runner], alone["pre", runner, 2], path=f"{runner} run while {held} was held")
    assert_same(first, alone["pre", held, 1], path=f"{held} held while {', '.join(runners)} ran")
    assert_as_found(before, model)


def held_while(
    model: CoAtNet, held: str, runners: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, Any]]:
    """The result of analysis ``held`` (on batch 1), held inside its first MBConv forward pass while each
    analysis of ``runners`` (on batch 2) runs through the same model in another thread, one after another;
    and theirs, by name. The held call runs once: its result has seen every runner pass by."""
    gate = Gate()
    monkeypatch.setattr(MBConvBlock, "forward", gate.wrap(MBConvBlock.forward))
    first = Call(lambda: ANALYSES[held](model, batch(1)))
    gate.holder = first
    first.start()
    assert gate.entered.wait(WAIT), f"{held} never entered a forward pass"
    second = Call(lambda: {runner: ANALYSES[runner](model, batch(2)) for runner in runners})
    second.start()
    try:
        others = second.outcome()
    finally:
        gate.release.set()
    result = first.outcome()
    monkeypatch.undo()
    return result, others


@pytest.mark.slow
def test_eight_threads_mixing_every_analysis_get_their_single_thread_results(
    models: dict[str, CoAtNet], alone: dict
) -> None:
    before = snapshot(*models.values())
    jobs = [(mode, name, seed) for mode in models for name in ANALYSES for seed in (1, 2)]

    def worker(index: int) -> list[tuple[tuple[str, str, int], Any]]:
        order = jobs[index % 2 :: 2]  # every job in four threads, each thread in its own order
        random.Random(index).shuffle(order)
        return [(job, ANALYSES[job[1]](models[job[0]], batch(job[2]))) for job in order]

    threads = [Call(lambda i=i: worker(i)) for i in range(8)]
    for thread in threads:
        thread.start()
    done = 0
    for thread in threads:
        for job, result in thread.outcome():
            assert_same(result, alone[job], path=f"{job} in a soak of 8 threads")
            done += 1
    assert done == 4 * len(jobs)
    assert_as_found(before, *models.values())


def training_model() -> CoAtNet:
    """A toy in training mode whose passes draw random numbers (stochastic depth, dropout) and update
    BatchNorm statistics, with gradients set on its parameters and some parameters frozen."""
    model = toy(drop_path_rate=0.3, dropout=0.3).train()
    for i, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, float(i))
        p.requires_grad_(i % 3 != 0)
    return model


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", [name for name in ANALYSES if name not in PLAIN_PASSES])
def test_every_analysis_leaves_model_and_process_as_found(name: str, mode: str) -> None:
    model = toy() if mode == "eval" else training_model()
    model.stem.register_forward_hook(lambda *args: None)  # the user's own hook stays where it was
    torch.manual_seed(5)
    before = snapshot(model)
    first = ANALYSES[name](model, batch(1))
    assert_as_found(before, model)
    assert_same(ANALYSES[name](model, batch(1)), first, path=f"{name} repeated ({mode})")


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", [name for name in RUNS_THE_MODEL if name not in PLAIN_PASSES])
def test_every_analysis_leaves_model_and_process_as_found_after_an_error(name: str, mode: str) -> None:
    model = toy() if mode == "eval" else training_model()
    before = snapshot(model)
    with breaks_mid_way(model.stages[3]):
        ANALYSES[name](model, batch(1))
    assert_as_found(before, model)


def test_a_twin_shares_the_weights_and_nothing_else() -> None:
    model = training_model()
    kept = []
    model.stages[1].register_forward_hook(lambda *args: kept.append(True))  # the owner's, before the twin
    own = twin(model)
    for (name, p), q in zip(model.named_parameters(), own.parameters(), strict=True):
        assert p is not q and p.data_ptr() == q.data_ptr(), name
        assert q.requires_grad == p.requires_grad and q.grad is None
    for (name, b), c in zip(model.named_buffers(), own.buffers(), strict=True):
        assert b.data_ptr() != c.data_ptr() and torch.equal(b, c), name  # training mode: own statistics
    with torch.no_grad():
        own(batch(1))
    assert kept == [True]
    fired = []
    own.stem.register_forward_hook(lambda *args: fired.append("twin"))
    model.stages[0].register_forward_hook(lambda *args: fired.append("owner"))  # after the twin was made
    with torch.no_grad():
        model(batch(1))
    assert fired == ["owner"] and not model.stem._forward_hooks and kept == [True, True]
    with torch.no_grad():
        model.stem.conv1.weight.add_(1.0)  # a weight update in place is seen by the twin
    assert torch.equal(own.stem.conv1.weight, model.stem.conv1.weight)


def test_every_public_analysis_of_the_face_is_in_the_table() -> None:
    """The face is the registry of analyses: each of its functions that takes a model is run by the table
    (by its name) or says why not; nothing named there is stale."""
    from tests.support.every_analysis import NOT_ANALYSES, PUBLIC_ANALYSES

    assert {"attention_maps", "faithfulness", "cka"} <= set(PUBLIC_ANALYSES)
    assert set(NOT_ANALYSES) <= set(PUBLIC_ANALYSES)
    assert [name for name in PUBLIC_ANALYSES if name not in ANALYSES and name not in NOT_ANALYSES] == []


# the analyses that map windowed attention (issue 27), on a MaxViT: a held call and another, both as alone
WINDOWED = ("attention_maps", "attention_statistics", "attention_rollout", "class_relevance", "grad_rollout",
            "relative_bias_kernels", "gradcam", "integrated_gradients", "faithfulness", "sanity_checks",
            "robustness")  # fmt: skip


@pytest.fixture(scope="module")
def maxvit_alone() -> dict[tuple[str, int], Any]:
    """Every windowed analysis of the MaxViT toy on two batches, run alone in this thread."""
    model = maxvit_toy()
    return {(name, seed): ANALYSES[name](model, batch(seed)) for name in WINDOWED for seed in (1, 2)}


# held: a recorded pass, a composed one, a gradient through the records, input gradients, randomised copies
@pytest.mark.parametrize(
    "held",
    ["attention_maps", "attention_rollout", "class_relevance", "integrated_gradients", "sanity_checks"],
)
def test_windowed_analyses_of_one_maxvit_neither_see_nor_block_another(
    held: str, maxvit_alone: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, alone = maxvit_toy(), maxvit_alone
    before = snapshot(model)
    first, others = held_while(model, held, list(WINDOWED), monkeypatch)
    for runner in WINDOWED:
        assert_same(others[runner], alone[runner, 2], path=f"{runner} run while {held} was held")
    assert_same(first, alone[held, 1], path=f"{held} held while every windowed analysis ran")
    assert_as_found(before, model)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", WINDOWED)
def test_windowed_analyses_leave_a_maxvit_and_the_process_as_found(name: str, mode: str) -> None:
    model = maxvit_toy()
    if mode == "train":
        model.train()
    torch.manual_seed(5)
    before = snapshot(model)
    first = ANALYSES[name](model, batch(1))
    assert_as_found(before, model)
    assert_same(ANALYSES[name](model, batch(1)), first, path=f"{name} repeated ({mode})")
