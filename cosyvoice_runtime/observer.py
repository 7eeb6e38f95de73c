"""Per-request progress callbacks: pass an object to ``Runtime.stream(..., observer=obs)`` (or
``synthesize``) to hear of that request's tokens, chunks and end.

Every callback but the two producer-side ones runs in the thread that iterates the stream (the
consumer), never in the LLM producer thread and never while a lock the producer needs is held: a
slow callback delays the next chunk, not token generation. A callback that raises ends the request
with that exception. Exceptions: a stream dropped without ``close()`` ends (``on_end``) in the
thread that collects it, and a stream never iterated runs nothing, so it gets no callback at all.

Producer side (``on_generated``, ``on_producer_died``): for an engine whose consumer cannot see its
tokens as they come, or whose orchestration swallows its producer's death (the upstream engine in
``cosyvoice_runtime.upstream``: its ``tts()`` keeps the consumer until a chunk, and a dead LLM thread
leaves it waiting or returning short audio). They run in the producer thread; keep them short and
never block. The Runtime calls neither: its consumer reports every token through ``on_tokens`` and its
producer's errors reach the caller as ``StreamError``.
"""
from __future__ import annotations

from collections.abc import Iterator

from .errors import InvalidInput, shown
from .types import Chunk, StreamStats


class StreamObserver:
    """No-op defaults; override what you need. One instance may observe one request at a time."""

    def on_tokens(self, n_new: int, total: int) -> None:
        """``n_new`` speech tokens arrived from the LLM since the last call; ``total`` so far in this
        request (all sentences). Called as the consumer sees them: while it waits for the next hop,
        about once per token; tokens that arrive while a chunk renders are reported together after it."""

    def on_chunk(self, chunk: Chunk) -> None:
        """A chunk is about to be handed to the caller (``synthesize``: each rendered sentence)."""

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        """The request ended: exhausted (``error`` None), closed by the caller (None too), or failed."""

    def on_generated(self) -> None:
        """Producer side: the request's LLM generated a token (a sign of life; the count still comes
        through ``on_tokens``)."""

    def on_producer_died(self, thread: str, error: BaseException) -> None:
        """Producer side: the thread producing this request's tokens died of ``error``, and the
        orchestration does not hand that error to the consumer."""


def check_observer(observer: object) -> None:
    """InvalidInput unless ``observer`` is a StreamObserver or None (checked at the call, not at the
    first callback)."""
    if observer is not None and not isinstance(observer, StreamObserver):
        raise InvalidInput(f"observer={shown(observer)}: expected a cosyvoice_runtime.StreamObserver (or None)")


def observed(chunks: Iterator[Chunk], observer: StreamObserver, stats: StreamStats) -> Iterator[Chunk]:
    """``chunks`` with ``observer`` told, in the iterating thread, of each chunk's tokens (the request's
    running total) just before it, of the chunk, and of the end (``stats`` as the request left them;
    the error it failed with, or None when exhausted or closed by the caller). For an engine that
    learns its tokens with each chunk (the upstream engine, a team's own); the Runtime reports tokens
    as they arrive instead."""
    total = 0
    error: BaseException | None = None
    try:
        for chunk in chunks:
            if chunk.tokens:
                total += chunk.tokens
                observer.on_tokens(chunk.tokens, total)
            observer.on_chunk(chunk)
            yield chunk
    except GeneratorExit:
        close = getattr(chunks, "close", None)  # the caller closed the stream: no error of the request;
        if close is not None:                   # stop the engine now, in this thread
            close()
        raise
    except BaseException as e:
        error = e
        raise
    finally:
        observer.on_end(stats, error)
