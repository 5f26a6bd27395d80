"""One model object serves every thread (issue 11): no analysis observes or disturbs another call's forward
pass, and each leaves the model, and the process, as it found them.

Deterministic, not timed: every analysis enters a forward pass in a thread of its own and is held there (an
event waited for inside a block), all at once; then they are released one at a time, each running to its end
while every later one is still held: in one order, each held in its first pass, and in the reverse, each held
in its last (where an intervention, a patch or a randomised copy is in force); every result must equal its
single-thread result. A soak of 8 threads mixes every analysis. "As found" is checked with
:func:`tests.support.model_state.snapshot` on a model in eval mode and one in training mode, after success and
after an error.
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
    EVAL_ONLY,
    PLAIN_PASSES,
    RUNS_THE_MODEL,
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


class Gates:
    """Holds each thread it is given inside its n-th MBConv block forward (counted in that thread), until it
    is released."""

    def __init__(self) -> None:
        self.at: dict[threading.Thread, int] = {}
        self.seen: dict[threading.Thread, int] = {}
        self.entered: dict[threading.Thread, threading.Event] = {}
        self.release: dict[threading.Thread, threading.Event] = {}

    def hold(self, thread: threading.Thread, at: int) -> None:
        self.at[thread], self.seen[thread] = at, 0
        self.entered[thread], self.release[thread] = threading.Event(), threading.Event()

    def wrap(self, forward: Callable) -> Callable:
        def paused(module: MBConvBlock, *args: Any, **kwargs: Any) -> Any:
            me = threading.current_thread()
            if me in self.at:
                self.seen[me] += 1
                if self.seen[me] == self.at[me]:
                    self.entered[me].set()
                    assert self.release[me].wait(WAIT), "never released"
            return forward(module, *args, **kwargs)

        return paused


def entrances(model: CoAtNet, name: str, seed: int) -> int:
    """How many MBConv block forwards analysis ``name`` runs on batch ``seed``, alone."""
    counted = []
    forward = MBConvBlock.forward

    def counting(module: MBConvBlock, *args: Any, **kwargs: Any) -> Any:
        counted.append(module)
        return forward(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MBConvBlock, "forward", counting)
        ANALYSES[name](model, batch(seed))
    return len(counted)


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


def staircase(
    model: CoAtNet, names: list[str], seed: int, monkeypatch: pytest.MonkeyPatch, *, last: bool
) -> dict[str, Any]:
    """Each analysis of ``names`` that runs the model (on batch ``seed``), in a thread of its own, enters its
    first MBConv block forward (its last, given ``last``: inside the intervened, patched or randomised pass
    an analysis ends with) and is held there, all of them at once; those that do not run the model then
    run. The held calls are released one at a time in the order given, each running to its end while every
    later one is still held inside its forward pass. Their results, by name."""
    held = [name for name in names if name in RUNS_THE_MODEL]
    at = {name: entrances(model, name, seed) if last else 1 for name in held}
    gates = Gates()
    monkeypatch.setattr(MBConvBlock, "forward", gates.wrap(MBConvBlock.forward))
    calls = {name: Call(lambda name=name: ANALYSES[name](model, batch(seed))) for name in held}
    try:
        for name in held:
            gates.hold(calls[name], at[name])
            calls[name].start()
            assert gates.entered[calls[name]].wait(WAIT), f"{name} never reached forward pass {at[name]}"
        results = {name: ANALYSES[name](model, batch(seed)) for name in names if name not in held}
        for name in held:
            gates.release[calls[name]].set()
            results[name] = calls[name].outcome()
    finally:
        for release in gates.release.values():
            release.set()
    monkeypatch.undo()
    return results


# between the two orders, every call that runs the model runs to its end while every other one is held
# inside a forward pass (its first in one order, its last in the other), and is held while every other one
# runs; each order on a batch of its own
ORDERS = {"table order": 1, "reversed": 2}


@pytest.mark.parametrize("order", ORDERS)
def test_calls_held_inside_a_forward_pass_neither_see_nor_block_one_another(
    order: str, models: dict[str, CoAtNet], alone: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, seed = models["pre"], ORDERS[order]
    names = list(ANALYSES) if order == "table order" else list(reversed(ANALYSES))
    before = snapshot(model)
    results = staircase(model, names, seed, monkeypatch, last=order == "reversed")
    for i, name in enumerate(names):
        later = [other for other in names[i + 1 :] if other in RUNS_THE_MODEL]
        assert_same(results[name], alone["pre", name, seed], path=f"{name} run while {later} were held")
    assert_as_found(before, model)


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
    if mode == "train" and name in EVAL_ONLY:  # refused in one line, the model as found
        with pytest.raises(ValueError, match="eval mode") as refused:
            ANALYSES[name](model, batch(1))
        assert "\n" not in str(refused.value)
        assert_as_found(before, model)
        return
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


@pytest.mark.parametrize("order", ORDERS)
def test_windowed_analyses_of_one_maxvit_neither_see_nor_block_one_another(
    order: str, maxvit_alone: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, seed = maxvit_toy(), ORDERS[order]
    names = list(WINDOWED) if order == "table order" else list(reversed(WINDOWED))
    before = snapshot(model)
    results = staircase(model, names, seed, monkeypatch, last=order == "reversed")
    for i, name in enumerate(names):
        later = [other for other in names[i + 1 :] if other in RUNS_THE_MODEL]
        assert_same(results[name], maxvit_alone[name, seed], path=f"{name} run while {later} were held")
    assert_as_found(before, model)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", WINDOWED)
def test_windowed_analyses_leave_a_maxvit_and_the_process_as_found(name: str, mode: str) -> None:
    model = maxvit_toy()
    if mode == "train":
        model.train()
    torch.manual_seed(5)
    before = snapshot(model)
    if mode == "train" and name in EVAL_ONLY:  # refused in one line, the model as found
        with pytest.raises(ValueError, match="eval mode") as refused:
            ANALYSES[name](model, batch(1))
        assert "\n" not in str(refused.value)
        assert_as_found(before, model)
        return
    first = ANALYSES[name](model, batch(1))
    assert_as_found(before, model)
    assert_same(ANALYSES[name](model, batch(1)), first, path=f"{name} repeated ({mode})")
