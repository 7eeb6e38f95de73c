"""The token channel between the LLM producer thread and the chunk consumer.

The producer side knows nothing about threads: ``produce`` drains any token iterator into the
channel. Errors travel through the channel and re-raise in the consumer; the end flag is always
set; the consumer sleeps on a condition variable and wakes on every token (no polling).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from .errors import CosyVoiceError, StreamError, StreamStalled


class TokenChannel:
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self._cond = threading.Condition()
        self._tokens: list[int] = []
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._last_token_at = time.monotonic()

    # producer side
    def put(self, token: int) -> None:
        with self._cond:
            self._tokens.append(token)
            self._last_token_at = time.monotonic()
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done = True
            self._error = error
            self._cond.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # consumer side
    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def wait_for(self, count: int, stall_timeout_s: float) -> tuple[int, bool]:
        """Blocks until ``count`` tokens exist or the producer ended; returns (tokens, done).

        Raises StreamError when the producer failed before ``count`` tokens, StreamStalled when no token arrived for
        ``stall_timeout_s`` while the producer still ran.
        """
        with self._cond:
            while len(self._tokens) < count and not self._done:
                left = self._last_token_at + stall_timeout_s - time.monotonic()
                if left <= 0:
                    raise StreamStalled(
                        f"request {self.request_id}: no new speech token for {stall_timeout_s:g} s "
                        f"(stall_timeout_s) after {len(self._tokens)} tokens; the LLM producer is stuck"
                    )
                self._cond.wait(left)
            # Tokens already handed over are rendered first; the failure surfaces when more are needed.
            if len(self._tokens) < count and self._error is not None:
                if isinstance(self._error, CosyVoiceError):
                    raise self._error  # our own errors (cap hit, bad text piece) already say what happened
                raise StreamError(
                    f"request {self.request_id}: the LLM producer failed after {len(self._tokens)} tokens: "
                    f"{type(self._error).__name__}: {self._error}"
                ) from self._error
            return len(self._tokens), self._done

    def tokens(self) -> list[int]:
        """A copy of every token received so far."""
        with self._cond:
            return list(self._tokens)


def produce(channel: TokenChannel, make_tokens: Callable[[], Iterable[int]],
            context: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext) -> None:
    """Drains the token iterator into the channel; whatever happens, the end flag is set."""
    error: BaseException | None = None
    try:
        with context():
            it: Iterator[int] = iter(make_tokens())
            try:
                for tok in it:
                    if channel.cancelled:
                        break
                    channel.put(int(tok))
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
    except BaseException as e:  # noqa: BLE001 - everything must reach the consumer
        error = e
    finally:
        channel.finish(error)


def start_producer(channel: TokenChannel, make_tokens: Callable[[], Iterable[int]],
                   context: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
                   ) -> threading.Thread:
    # daemon: a producer stuck inside a model call must never keep the interpreter alive.
    t = threading.Thread(target=produce, args=(channel, make_tokens, context),
                         name=f"cosyvoice-llm-{channel.request_id}", daemon=True)
    t.start()
    return t
