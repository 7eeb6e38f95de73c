"""The per-request observer and stall timeout: `stream(..., observer=, stall_timeout_s=)` (and
`synthesize`) report that request's tokens, chunks and end, in the consumer's thread, and a stall
timeout given to one request does not change the runtime's default or the next request."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import cosyvoice_runtime
from cosyvoice_runtime import Chunk, InvalidInput, Runtime, StreamError, StreamObserver, StreamStalled, StreamStats
from pytest_cosyvoice.faults import Fault, forced_llm

TOKENS = [int(x) for x in np.random.default_rng(7).integers(0, 6561, 140)]  # speaker mode: 25, 50, 65
SHORT = TOKENS[:30]  # 25, 5: cheaper where the schedule does not matter (the machine is shared)


class Log(StreamObserver):
    def __init__(self) -> None:
        self.tokens: list[tuple[int, int]] = []
        self.chunks: list[Chunk] = []
        self.ends: list[tuple[StreamStats, BaseException | None]] = []
        self.threads: set[str] = set()

    def on_tokens(self, n_new: int, total: int) -> None:
        self.threads.add(threading.current_thread().name)
        self.tokens.append((n_new, total))

    def on_chunk(self, chunk: Chunk) -> None:
        self.threads.add(threading.current_thread().name)
        self.chunks.append(chunk)

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        self.ends.append((stats, error))


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(autouse=True)
def real_llm(rt: Runtime):
    saved = rt.llm.__dict__.get("inference")
    yield
    if saved is None:
        rt.llm.__dict__.pop("inference", None)
    else:
        rt.llm.inference = saved  # type: ignore[method-assign]


def test_stream_reports_its_tokens_chunks_and_end_in_the_consumer_thread(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(TOKENS, delay_s=0.002)  # type: ignore[method-assign]
    obs = Log()
    chunks = list(rt.stream("x", speaker=rt.speakers[0], observer=obs))
    assert [c.tokens for c in chunks] == [25, 50, 65]
    assert obs.chunks == chunks
    totals = [t for _, t in obs.tokens]
    assert sum(n for n, _ in obs.tokens) == totals[-1] == len(TOKENS)
    assert totals == sorted(totals) and len(obs.tokens) > 3  # reported as they come, not once at the end
    assert obs.threads == {threading.current_thread().name}
    [(stats, error)] = obs.ends
    assert error is None and stats.tokens == len(TOKENS) and stats.chunks == 3
    assert stats.speech_tokens == tuple(TOKENS)   # the ids, for an A/B session's output comparison


def test_synthesize_reports_too(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(SHORT)  # type: ignore[method-assign]
    obs = Log()
    syn = rt.synthesize("x", speaker=rt.speakers[0], observer=obs)
    assert obs.chunks == syn.chunks and obs.tokens[-1][1] == len(SHORT) == syn.stats.tokens
    assert len(obs.ends) == 1 and obs.ends[0][1] is None
    assert syn.stats.speech_tokens == tuple(SHORT)


def test_a_failed_request_ends_with_its_error(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(SHORT, fault=Fault(at=29))  # type: ignore[method-assign]
    obs = Log()
    with pytest.raises(StreamError) as err:
        list(rt.stream("x", speaker=rt.speakers[0], observer=obs))
    assert obs.tokens[-1][1] == 29 and len(obs.chunks) == 1
    assert [e for _, e in obs.ends] == [err.value]


class SlowLog(Log):
    """Holds the consumer in its first report long enough for the producer to end (here: fail)."""

    def on_tokens(self, n_new: int, total: int) -> None:
        if not self.tokens:
            threading.Event().wait(0.5)
        super().on_tokens(n_new, total)


@pytest.mark.parametrize("call", ["stream", "synthesize"])
def test_a_producer_failure_is_raised_with_an_observer_as_without(rt: Runtime, call: str) -> None:
    # The observer wakes the consumer per token; a producer that fails between two wake-ups must
    # still be raised, not rendered as a short but complete result.
    rt.llm.inference = forced_llm(TOKENS, fault=Fault(at=70))  # type: ignore[method-assign]
    obs = SlowLog()
    with pytest.raises(StreamError, match="after 70 tokens"):
        if call == "stream":
            list(rt.stream("x", speaker=rt.speakers[0], observer=obs))
        else:
            rt.synthesize("x", speaker=rt.speakers[0], observer=obs)
    assert obs.tokens[-1][1] == 70 and isinstance(obs.ends[-1][1], StreamError)
    assert rt.active_requests == 0


def test_a_closed_stream_ends_without_error(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(SHORT)  # type: ignore[method-assign]
    obs = Log()
    it = rt.stream("x", speaker=rt.speakers[0], observer=obs)
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert len(obs.ends) == 1 and obs.ends[0][1] is None and rt.active_requests == 0


def test_each_request_has_its_own_observer(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(SHORT)  # type: ignore[method-assign]
    logs = [Log(), Log()]
    threads = [threading.Thread(target=lambda o=o: list(rt.stream("x", speaker=rt.speakers[0], observer=o)))
               for o in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [o.tokens[-1][1] for o in logs] == [len(SHORT)] * 2
    assert [len(o.chunks) for o in logs] == [2, 2]


def test_a_stall_timeout_applies_to_its_request_only(rt: Runtime) -> None:
    default = rt.settings.stall_timeout_s
    rt.llm.inference = forced_llm(SHORT, fault=Fault(at=5, stall_s=1.0))  # type: ignore[method-assign]
    with pytest.raises(StreamStalled, match=r"no new speech token for 0\.3 s"):
        list(rt.stream("x", speaker=rt.speakers[0], stall_timeout_s=0.3))
    assert rt.settings.stall_timeout_s == default
    # The next request waits with the default (30 s): the same 1 s stall is no error.
    assert sum(c.tokens for c in rt.stream("x", speaker=rt.speakers[0])) == len(SHORT)
    with pytest.raises(StreamStalled, match=r"no new speech token for 0\.3 s"):
        rt.synthesize("x", speaker=rt.speakers[0], stall_timeout_s=0.3)
    assert rt.synthesize("x", speaker=rt.speakers[0]).stats.tokens == len(SHORT)


@pytest.mark.parametrize("call", ["stream", "synthesize"])
@pytest.mark.parametrize("kwargs, message", [
    ({"stall_timeout_s": 0}, "stall_timeout_s=0: expected a positive number of seconds"),
    ({"stall_timeout_s": float("nan")}, "stall_timeout_s=nan: expected a positive number of seconds"),
    ({"observer": print}, "observer=<built-in function print>: expected a cosyvoice_runtime.StreamObserver"),
], ids=["zero-timeout", "nan-timeout", "not-an-observer"])
def test_bad_per_request_arguments_raise_at_the_call(rt: Runtime, call: str, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        getattr(rt, call)("x", speaker=rt.speakers[0], **kwargs)
    assert rt.active_requests == 0


def test_plan_is_public_and_checks_like_stream(rt: Runtime) -> None:
    plan = rt.plan("Hello there. How are you today?", speaker=rt.speakers[0])
    assert plan.mode == "sft" and len(plan.inputs) >= 1
    with pytest.raises(InvalidInput):
        rt.plan("x")  # no voice: no mode


@pytest.fixture(scope="module")
def upstream(rt: Runtime):
    from cosyvoice_runtime.upstream import UpstreamEngine, UpstreamUnavailable

    try:
        return UpstreamEngine(rt)
    except UpstreamUnavailable as e:
        pytest.skip(f"the installed upstream class is unusable here: {e}")


@pytest.mark.parametrize("call", ["stream", "synthesize"])
def test_the_upstream_engine_reports_through_its_observer(rt: Runtime, upstream, call: str) -> None:
    # Upstream's class counted per request (its own uuid), reported in the iterating thread before
    # each chunk: the same callbacks as the Runtime's, so a caller counts both engines one way.
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    obs = Log()
    if call == "stream":
        chunks = list(upstream.stream("x", speaker=rt.speakers[0], observer=obs))
    else:
        chunks = upstream.synthesize("x", speaker=rt.speakers[0], observer=obs).chunks
    assert obs.chunks == chunks
    assert sum(n for n, _ in obs.tokens) == obs.tokens[-1][1] == sum(c.tokens for c in chunks) == len(TOKENS)
    assert obs.threads == {threading.current_thread().name}
    [(stats, error)] = obs.ends
    assert error is None and stats.tokens == len(TOKENS) and stats.chunks == len(chunks)
    assert stats.speech_tokens == tuple(TOKENS)


@pytest.mark.parametrize("call", ["stream", "synthesize"])
def test_the_upstream_engine_refuses_a_bad_observer_at_the_call(rt: Runtime, upstream, call: str) -> None:
    with pytest.raises(InvalidInput, match=r"^observer=<built-in function print>: expected a "
                                           r"cosyvoice_runtime\.StreamObserver \(or None\)$"):
        getattr(upstream, call)("x", speaker=rt.speakers[0], observer=print)


class ProducerLog(Log):
    def __init__(self) -> None:
        super().__init__()
        self.generated: list[str] = []
        self.deaths: list[tuple[str, BaseException]] = []

    def on_generated(self) -> None:
        self.generated.append(threading.current_thread().name)

    def on_producer_died(self, thread: str, error: BaseException) -> None:
        self.deaths.append((thread, error))


def test_the_upstream_engine_tells_the_producer_side_what_its_consumer_cannot_see(rt: Runtime, upstream) -> None:
    # Upstream's tts() keeps the consumer until a chunk and lets a dead LLM thread go unreported: the
    # producer-side callbacks carry a per-token sign of life and the death, from upstream's LLM thread.
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    obs = ProducerLog()
    upstream.synthesize("x", speaker=rt.speakers[0], observer=obs)
    assert len(obs.generated) == len(TOKENS) and threading.current_thread().name not in obs.generated
    assert obs.deaths == []

    rt.llm.inference = forced_llm(TOKENS, fault=Fault("llm", at=10))  # type: ignore[method-assign]
    obs = ProducerLog()
    upstream.synthesize("x", speaker=rt.speakers[0], observer=obs)   # upstream returns short audio
    [(thread, error)] = obs.deaths
    assert "llm_job" in thread and "injected" in str(error)
    assert len(obs.generated) == 10


def test_the_runtime_calls_no_producer_side_callback(rt: Runtime) -> None:
    # The Runtime's consumer reports every token itself and raises its producer's errors.
    rt.llm.inference = forced_llm(TOKENS, fault=Fault("llm", at=10))  # type: ignore[method-assign]
    obs = ProducerLog()
    with pytest.raises(StreamError):
        rt.synthesize("x", speaker=rt.speakers[0], observer=obs)
    assert obs.generated == [] and obs.deaths == []


def test_the_text_normalisers_are_built_at_load(rt: Runtime) -> None:
    # Their imports take seconds (inflect): built at load, never inside a request's stall window.
    from cosyvoice_runtime import text

    assert text._inflect.cache_info().currsize == 1 and text._wetext.cache_info().currsize == 1
