"""Whose tokens, thread deaths and threads are whose: per engine (`EngineAttribution`, built once per
session) and per call (`CallTrack`).

An engine that takes `observer=` (declared, as the Runtime and the upstream engine do, or named in
its signature: see `pytest_cosyvoice.engine.EngineAbilities`) gets a `cosyvoice_runtime.StreamObserver`
per call and reports that call's tokens itself: nothing of the process is touched. For an engine
without it, `foreign.ForeignAdapter` counts at the LLM and keeps thread lineage (see its limits); it is
installed once, when the engine's attribution is built.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cosyvoice_runtime import StreamObserver, StreamStats

from ..engine import Engine, takes_keyword
from .foreign import ForeignAdapter

if TYPE_CHECKING:
    from cosyvoice_runtime import Chunk, Runtime

KINDS = ("stream", "synthesize")


@dataclass(frozen=True)
class Takes:
    """Which of the harness's keywords an engine method is passed (read once per engine: see
    `pytest_cosyvoice.engine.takes_keyword`)."""

    observer: bool
    stall_timeout_s: bool
    seed: bool = False      # a per-request seed= (the runtime's; an A/B pair passes its seed that way)


@dataclass(eq=False)
class CallTrack:
    """One call's tokens, thread deaths and the threads around it. Updated from the reader thread (the
    observer) or, for a foreign engine, from any thread (the adapter): every field behind `lock`."""

    observed: bool                 # the engine reports this call's tokens (observer=), not the adapter
    counts_tokens: bool            # False for voice conversion counted at the LLM (tokens from the audio)
    threads_before: set[int | None]
    reader: threading.Thread | None = None
    tokens: int = 0
    unattributed: int = 0          # tokens in flight that no call could be named for (count not judged)
    last_token: float = 0.0        # perf_counter of the call's latest token (the watchdog's progress)
    overlapped: bool = False       # another call was in flight at some point
    thread_errors: list[str] = field(default_factory=list)
    speech_tokens: list[int] | None = None   # the ids the engine reported at the call's end
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observed_total(self, total: int, now: float) -> None:
        with self.lock:
            self.tokens, self.last_token = total, now

    def llm_token(self, now: float) -> None:
        with self.lock:
            if not self.observed:
                self.tokens += 1
            self.last_token = now

    def unattributed_token(self, now: float) -> None:
        with self.lock:
            if not self.observed:
                self.unattributed += 1
            self.last_token = now   # a sign of life of some call in flight, maybe this one

    def generated(self, now: float) -> None:
        """A sign of life from the engine's producer (the count comes through `observed_total`)."""
        with self.lock:
            self.last_token = now

    def thread_died(self, text: str) -> None:
        with self.lock:
            self.thread_errors.append(text)

    def progress(self) -> float:
        with self.lock:
            return self.last_token

    def generated_tokens(self) -> int | None:
        """The call's token count, where it can be judged."""
        with self.lock:
            return self.tokens if self.counts_tokens and not self.unattributed else None


class _CallObserver(StreamObserver):
    """Hears one call's tokens from the engine (in the reader thread, which iterates it) and hands
    every callback on to the test's own observer, if the test passed one."""

    def __init__(self, track: CallTrack, inner: StreamObserver | None, clock: Callable[[], float]) -> None:
        self._track = track
        self._inner = inner
        self._clock = clock

    def on_tokens(self, n_new: int, total: int) -> None:
        self._track.observed_total(total, self._clock())
        if self._inner is not None:
            self._inner.on_tokens(n_new, total)

    def on_chunk(self, chunk: Chunk) -> None:
        if self._inner is not None:
            self._inner.on_chunk(chunk)

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        if stats.speech_tokens is not None:
            with self._track.lock:
                self._track.speech_tokens = list(stats.speech_tokens)
        if self._inner is not None:
            self._inner.on_end(stats, error)

    # Producer side (an engine whose consumer sees tokens only with chunks, or whose producer dies
    # silently: the upstream engine): a sign of life for the watchdog, and the death for the checks.
    def on_generated(self) -> None:
        self._track.generated(self._clock())
        if self._inner is not None:
            self._inner.on_generated()

    def on_producer_died(self, thread: str, error: BaseException) -> None:
        self._track.thread_died(f"{thread}: {type(error).__name__}: {error}")
        if self._inner is not None:
            self._inner.on_producer_died(thread, error)


class EngineAttribution:
    """What one engine takes (its declaration, else its signatures), read once, and its foreign adapter
    where it needs one. `close()` at the end of the session takes the adapter back out."""

    def __init__(self, engine: Engine, runtime: Runtime) -> None:
        self.takes = {kind: Takes(takes_keyword(engine, kind, "observer"),
                                  takes_keyword(engine, kind, "stall_timeout"),
                                  takes_keyword(engine, kind, "seed")) for kind in KINDS}
        self.adapter: ForeignAdapter | None = None
        if not all(t.observer for t in self.takes.values()):
            self.adapter = ForeignAdapter(runtime.llm)
            self.adapter.install()

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.uninstall()
            self.adapter = None

    def track(self, kind: str, kwargs: dict[str, Any], threads_before: set[int | None]) -> CallTrack:
        observed = self.takes[kind].observer
        # Voice conversion takes its tokens from the source audio: the LLM's count says nothing of it
        # (the engine's observer, where there is one, counts the tokens actually rendered).
        return CallTrack(observed=observed, counts_tokens=observed or kwargs.get("source_wav") is None,
                         threads_before=threads_before)

    def begin(self, track: CallTrack) -> None:
        if self.adapter is not None:
            self.adapter.begin(track)

    def end(self, track: CallTrack) -> None:
        if self.adapter is not None:
            self.adapter.end(track)

    def engine_kwargs(self, kind: str, track: CallTrack, kwargs: dict[str, Any], stall_timeout_s: float,
                      clock: Callable[[], float]) -> dict[str, Any]:
        """The test's arguments plus what the engine takes of ours: the per-call observer (chaining the
        test's own, if it passed one) and the test's stall timeout (unless the test passed one)."""
        takes = self.takes[kind]
        out = dict(kwargs)
        theirs = kwargs.get("observer")
        # Ours chains a test's own observer; anything else the test passed goes to the engine as
        # given, so the engine refuses it at the call (InvalidInput), as without the harness.
        if takes.observer and (theirs is None or isinstance(theirs, StreamObserver)):
            out["observer"] = _CallObserver(track, theirs, clock)
        if takes.stall_timeout_s:
            out.setdefault("stall_timeout_s", stall_timeout_s)
        return out

    def descends(self, thread: threading.Thread, reader: threading.Thread | None) -> bool | None:
        """Whether `reader` started `thread` (directly or further down); None where lineage is not kept
        (engines with an observer: nothing watches `Thread.start` for them)."""
        if self.adapter is None:
            return None
        return reader is not None and self.adapter.ancestor(thread, (reader,)) is reader

    def started_by(self, track: CallTrack, harness: Iterable[int | None]) -> list[threading.Thread]:
        """Threads alive now that the call started: new since it began, not the harness's, and under
        overlapping calls only those its own reader started, where the engine's lineage is kept (a
        foreign engine); elsewhere all new ones (the recorder settles those when the calls have ended)."""
        new = new_threads(track, harness)
        if not track.overlapped:
            return new
        return [t for t in new if self.descends(t, track.reader) is not False]


def new_threads(track: CallTrack, harness: Iterable[int | None]) -> list[threading.Thread]:
    """Threads alive now that were not when the call began, other than the harness's (callers, readers)
    and the current one."""
    skip = set(harness) | {threading.get_ident()}
    return [t for t in threading.enumerate()
            if t.ident not in track.threads_before and t.ident not in skip and t is not track.reader
            and t.is_alive()]
