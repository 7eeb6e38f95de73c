"""The model reference (`cosyvoice_runtime.reference.ReferenceWork`): the loaded components' own work
on fixed inputs, timed outside any request, the same work every run, and harmless between tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import Runtime
from cosyvoice_runtime.reference import PARTS, ReferenceWork


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def rt(request: pytest.FixtureRequest, tiny_v1_dir: Path, tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v1_dir if request.param == 1 else tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def work(rt: Runtime) -> ReferenceWork:
    return ReferenceWork(rt)


def test_each_component_takes_positive_time_and_the_llm_gives_every_token(rt: Runtime, work: ReferenceWork) -> None:
    seconds = work()
    assert set(seconds) == set(PARTS) and all(v > 0 for v in seconds.values())
    # The text is long enough that the LLM cannot end before: each run does the same decode steps.
    assert work.llm_tokens == work.speech_tokens == round(1.5 * cosyvoice_runtime.token_rate(rt.version, rt.flow))
    assert rt.active_requests == 0


def test_the_tests_random_state_is_left_as_it_was(work: ReferenceWork) -> None:
    torch.manual_seed(11)
    expected = torch.rand(5)
    torch.manual_seed(11)
    work()      # samples tokens and draws noise inside, from its own seeded state
    assert torch.equal(torch.rand(5), expected)


def test_a_stand_in_on_the_instance_is_not_what_is_timed(rt: Runtime, work: ReferenceWork) -> None:
    calls: list[str] = []

    def stand_in(*args: object, **kwargs: object) -> None:
        calls.append("called")
        raise RuntimeError("a fault a test injected")
    for part in (rt.llm, rt.flow, rt.hift):
        part.inference = stand_in
    try:
        seconds = work()
    finally:
        for part in (rt.llm, rt.flow, rt.hift):
            del part.inference
    assert calls == [] and all(v > 0 for v in seconds.values())
    assert work.llm_tokens == work.speech_tokens
