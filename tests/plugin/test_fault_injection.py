"""pytest_cosyvoice.faults on its own (no model): what a forced LLM yields, when its fault fires, and
that an injection is taken back."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_cosyvoice.faults import (
    Fault,
    InjectedFault,
    faulty_llm,
    forced_llm,
    forced_tokens,
    injected,
    raising_on_call,
)

TOKENS = list(range(10))


def drain(gen: Any) -> tuple[list[int], BaseException | None]:
    got: list[int] = []
    try:
        for tok in gen:
            got.append(tok)
    except InjectedFault as e:
        return got, e
    return got, None


def test_forced_tokens_are_seeded_and_within_the_vocabulary() -> None:
    v1, v2 = forced_tokens(1, 500, seed=3), forced_tokens(2, 500, seed=3)
    assert forced_tokens(2, 500, seed=3) == v2 != forced_tokens(2, 500, seed=4)
    assert len(v1) == 500 and max(v1) < 4096 <= max(v2) < 6561 and min(v1 + v2) >= 0
    assert all(type(t) is int for t in v2)


def test_forced_llm_yields_exactly_the_tokens_with_any_arguments() -> None:
    llm = forced_llm(TOKENS)
    assert list(llm(text="x", max_token_text_ratio=3)) == TOKENS
    assert list(llm()) == TOKENS   # each call starts over


@pytest.mark.parametrize("at, before", [(0, []), (4, [0, 1, 2, 3]), (len(TOKENS), TOKENS), (99, TOKENS)])
def test_fault_raises_before_token_at(at: int, before: list[int]) -> None:
    got, err = drain(forced_llm(TOKENS, fault=Fault(at=at, message="boom"))())
    assert got == before and isinstance(err, InjectedFault) and isinstance(err, RuntimeError)
    assert str(err) == "boom"


def test_stall_stops_before_token_at_then_goes_on() -> None:
    gen = forced_llm(TOKENS, fault=Fault(at=3, stall_s=0.3))()
    t0 = time.perf_counter()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    assert next(gen) == 3 and time.perf_counter() - t0 >= 0.3
    assert list(gen) == TOKENS[4:]


def test_a_stall_after_the_last_token() -> None:
    release = threading.Event()
    gen = forced_llm(TOKENS, fault=Fault(at=len(TOKENS), stall_s=60.0, release=release))()
    assert [next(gen) for _ in TOKENS] == TOKENS
    ended = threading.Event()
    threading.Thread(target=lambda: (list(gen), ended.set()), daemon=True).start()
    assert not ended.wait(0.2)  # still stalled after its last token
    release.set()
    assert ended.wait(30)


def test_a_stall_ends_when_released() -> None:
    release = threading.Event()
    gen = forced_llm(TOKENS, fault=Fault(at=3, stall_s=60.0, release=release))()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    threading.Timer(0.1, release.set).start()
    t0 = time.perf_counter()
    assert list(gen) == TOKENS[3:]
    assert time.perf_counter() - t0 < 30  # released, not the 60 s stall


def test_delay_before_every_token() -> None:
    t0 = time.perf_counter()
    assert list(forced_llm(TOKENS, delay_s=0.02)()) == TOKENS
    assert time.perf_counter() - t0 >= 0.2


def test_faulty_llm_keeps_the_models_own_tokens() -> None:
    def own(**kwargs: Any) -> Any:
        yield from range(100, 100 + kwargs["n"])
    got, err = drain(faulty_llm(own, Fault(at=2, message="late"))(n=5))
    assert got == [100, 101] and str(err) == "late"


def test_faults_are_checked() -> None:
    with pytest.raises(ValueError, match="component='decoder'"):
        Fault("decoder")
    with pytest.raises(ValueError, match="only the llm can stall"):
        Fault("flow", at=1, stall_s=1.0)
    with pytest.raises(ValueError, match="at=0: a flow fault names its call, counted from 1"):
        Fault("flow")
    with pytest.raises(ValueError, match="forced_llm takes an llm fault"):
        forced_llm(TOKENS, fault=Fault("hift", at=1))


def test_raising_on_call_counts_calls_across_threads() -> None:
    fn = raising_on_call(lambda x: x * 2, 5, "fifth")
    results: list[Any] = []

    def call(i: int) -> None:
        try:
            results.append(fn(i))
        except InjectedFault as e:
            results.append(e)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, InjectedFault)]
    assert len(results) == 8 and len(errors) == 1 and str(errors[0]) == "fifth"


class Component:
    def inference(self, *args: Any) -> str:
        return "real"


def test_injected_puts_the_components_back() -> None:
    model = SimpleNamespace(llm=Component(), flow=Component(), hift=Component())
    with injected(model, TOKENS, Fault("flow", at=2, message="flow fault")):
        assert list(model.llm.inference()) == TOKENS and list(model.llm.inference_bistream()) == TOKENS
        assert model.flow.inference() == "real"
        with pytest.raises(InjectedFault, match="flow fault"):
            model.flow.inference()
        assert model.hift.inference() == "real"
    assert model.llm.inference() == model.flow.inference() == "real" and not hasattr(model.llm, "inference_bistream")
    with pytest.raises(KeyError), injected(model, TOKENS, Fault(at=1)):
        got, err = drain(model.llm.inference())
        assert got == [0] and isinstance(err, InjectedFault)
        raise KeyError("the block failed")
    assert vars(model.llm) == {} and vars(model.flow) == {}
