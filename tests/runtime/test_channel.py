"""The token channel on its own: hand-over, error transport, stall detection, cancellation."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cosyvoice_runtime.channel import TokenChannel, produce, start_producer
from cosyvoice_runtime.errors import StreamError, StreamStalled


def test_tokens_arrive_and_end_flag_is_set() -> None:
    ch = TokenChannel("t")
    t = start_producer(ch, lambda: iter(range(10)))
    count, done = ch.wait_for(100, stall_timeout_s=5)
    t.join(5)
    assert (count, done) == (10, True)
    assert ch.tokens() == list(range(10))
    assert not t.is_alive()


def test_consumer_wakes_on_each_token_without_polling() -> None:
    ch = TokenChannel("t")
    gate = threading.Event()

    def tokens() -> Iterator[int]:
        yield 1
        gate.wait(5)
        yield 2

    t = start_producer(ch, tokens)
    assert ch.wait_for(1, 5) == (1, False)
    gate.set()
    assert ch.wait_for(2, 5)[0] == 2
    t.join(5)


@pytest.mark.parametrize("fail_after", [0, 3])
def test_producer_error_reaches_consumer_with_cause(fail_after: int) -> None:
    ch = TokenChannel("t")

    def tokens() -> Iterator[int]:
        yield from range(fail_after)
        raise RuntimeError("boom")

    produce(ch, tokens)
    with pytest.raises(StreamError, match=f"failed after {fail_after} tokens: RuntimeError: boom") as info:
        ch.wait_for(100, 5)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert ch.tokens() == list(range(fail_after))


def test_stall_raises_after_timeout() -> None:
    ch = TokenChannel("t")
    release = threading.Event()

    def tokens() -> Iterator[int]:
        yield 7
        release.wait(10)

    t = start_producer(ch, tokens)
    with pytest.raises(StreamStalled, match=r"no new speech token for 0.2 s .* after 1 tokens"):
        ch.wait_for(5, stall_timeout_s=0.2)
    release.set()
    t.join(5)
    assert not t.is_alive()


def test_cancel_stops_producer_and_closes_generator() -> None:
    ch = TokenChannel("t")
    closed = threading.Event()

    def tokens() -> Iterator[int]:
        try:
            i = 0
            while True:
                time.sleep(0.001)
                yield i
                i += 1
        finally:
            closed.set()

    t = start_producer(ch, tokens)
    ch.wait_for(5, 5)
    ch.cancel()
    t.join(2)
    assert not t.is_alive()
    assert closed.is_set()
