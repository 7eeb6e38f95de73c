"""The fault matrix: each failure gives its named error within a bounded time, leaves no thread
alive and no per-request state behind. Bounds: every case ends within a few seconds (the stall
timeout is set to 0.5 s); RSS grows by less than 64 MB over 200 sequential requests."""
from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import psutil
import pytest

import cosyvoice_runtime
from cosyvoice_runtime import Runtime, StreamError, StreamStalled
from pytest_cosyvoice.faults import Fault, forced_llm, forced_tokens, raising_on_call

from .helpers import llm_threads

TOKENS = forced_tokens(2, 140, seed=7)
# With a speaker (no prompt) the schedule is 25, 50, then the rest: 3 chunks for 140 tokens.


@pytest.fixture
def rt(tiny_v2_dir: Path) -> Runtime:
    r = cosyvoice_runtime.load(tiny_v2_dir, device="cpu", stall_timeout_s=0.5)
    yield r
    assert r.active_requests == 0, "per-request state left behind"
    deadline = time.monotonic() + 5
    while llm_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not llm_threads(), "producer thread left alive"


def drain(rt: Runtime) -> tuple[list, BaseException | None]:
    got, err = [], None
    try:
        for c in rt.stream("x", speaker=rt.speakers[0]):
            got.append(c)
    except Exception as e:  # noqa: BLE001 - the test inspects it
        err = e
    return got, err


@pytest.mark.parametrize("fail_after, chunks_before", [(0, 0), (40, 1), (len(TOKENS), 2)],
                         ids=["first-token", "mid-stream", "after-last-token"])
def test_llm_raising_reaches_consumer_after_rendered_chunks(rt: Runtime, fail_after: int, chunks_before: int) -> None:
    rt.llm.inference = forced_llm(TOKENS, fault=Fault(at=fail_after, message="injected LLM failure"))  # type: ignore[method-assign]
    got, err = drain(rt)
    assert isinstance(err, StreamError) and not isinstance(err, StreamStalled)
    assert isinstance(err.__cause__, RuntimeError) and "injected LLM failure" in str(err.__cause__)
    assert len(got) == chunks_before


@pytest.mark.parametrize("stream", [True, False])
def test_llm_raising_non_stream_is_not_silently_truncated(rt: Runtime, stream: bool) -> None:
    rt.llm.inference = forced_llm(TOKENS, fault=Fault(at=40, message="injected LLM failure"))  # type: ignore[method-assign]
    with pytest.raises(StreamError, match="failed after 40 tokens"):
        if stream:
            list(rt.stream("x", speaker=rt.speakers[0]))
        else:
            rt.synthesize("x", speaker=rt.speakers[0])


def test_stalled_llm_raises_stream_stalled(rt: Runtime) -> None:
    # The LLM stalls until the test has its answer (at most 60 s): however long a busy machine takes
    # to render the first chunk, the stall outlasts it.
    release = threading.Event()
    fault = Fault(at=30, stall_s=60.0, release=release)
    rt.llm.inference = forced_llm(TOKENS, fault=fault)  # type: ignore[method-assign]
    try:
        got, err = drain(rt)
    finally:
        release.set()
    assert isinstance(err, StreamStalled)
    assert "no new speech token for 0.5 s" in str(err)
    assert len(got) == 1  # the 25-token chunk was rendered before the stall


@pytest.mark.parametrize("k", [1, 2])
def test_flow_raising_on_chunk_k(rt: Runtime, k: int) -> None:
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    rt.flow.inference = raising_on_call(rt.flow.inference, k, "injected flow failure")  # type: ignore[method-assign]
    got, err = drain(rt)
    assert isinstance(err, RuntimeError) and "injected flow failure" in str(err)
    assert len(got) == k - 1


def test_hift_raising(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    rt.hift.inference = raising_on_call(rt.hift.inference, 2, "injected hift failure")  # type: ignore[method-assign]
    got, err = drain(rt)
    assert isinstance(err, RuntimeError) and "injected hift failure" in str(err)
    assert len(got) == 1


def test_consumer_closing_after_one_chunk_stops_producer(rt: Runtime) -> None:
    produced = []

    def slow_llm(*args: object, **kwargs: object):
        for tok in TOKENS * 10:
            time.sleep(0.005)
            produced.append(tok)
            yield tok

    rt.llm.inference = slow_llm  # type: ignore[method-assign]
    it = rt.stream("x", speaker=rt.speakers[0])
    next(it)
    it.close()
    t0 = time.monotonic()
    while llm_threads() and time.monotonic() - t0 < 1.0:
        time.sleep(0.01)
    assert not llm_threads(), "producer still alive 1 s after the consumer walked away"
    assert rt.active_requests == 0
    assert len(produced) < len(TOKENS) * 10


def test_eight_concurrent_streams_get_the_solo_schedule(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(TOKENS, delay_s=0.001)  # type: ignore[method-assign]
    solo = [(c.tokens, c.audio.size) for c in rt.stream("x", speaker=rt.speakers[0])]
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        try:
            results[i] = [(c.tokens, c.audio.size) for c in rt.stream("x", speaker=rt.speakers[0])]
        except Exception as e:  # noqa: BLE001 - a worker's error is kept and compared below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results[i] == solo for i in range(8)), results


def test_two_hundred_sequential_requests_keep_memory_flat(rt: Runtime) -> None:
    rt.llm.inference = forced_llm(TOKENS[:30])  # type: ignore[method-assign]
    spk = rt.speakers[0]
    proc = psutil.Process()
    for _ in range(20):  # warm allocator caches first
        list(rt.stream("x", speaker=spk))
    gc.collect()
    before = proc.memory_info().rss
    for _ in range(200):
        assert sum(c.tokens for c in rt.stream("x", speaker=spk)) == 30
    gc.collect()
    grown = proc.memory_info().rss - before
    assert grown < 64 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 200 requests"
    assert rt.active_requests == 0
