"""One recorded engine call behind a watchdog: what `cosy_tts` (`calls.CosyTTS`) runs for each call.

Each call's iterator is drained by a daemon reader thread into a queue, as fast as the engine
produces (a real player buffers too), so arrival times measure the engine, not the test's loop.
The test side reads the queue with a timeout: when neither a chunk nor a speech token arrives for the
stall timeout plus a margin, the call raises `WatchdogExpired` with the chunk count and the seconds
waited (the plugin fails the test with that text). A reader stuck inside the engine (upstream's stream
spins forever when its LLM thread dies) is abandoned: it is a daemon thread, so it never holds up the
session, and the recording names it.

Whose tokens, thread deaths and threads are whose is `attribution.py`'s (per engine, read once): an
engine with `observer=` reports its own; a foreign one is watched by `foreign.ForeignAdapter`.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cosyvoice_runtime import InvalidInput, token_rate

from ..engine import Engine
from ..judging.checks import Recording
from .attribution import CallTrack, EngineAttribution

if TYPE_CHECKING:
    from cosyvoice_runtime import Chunk, Runtime, Synthesis

# Called with a call's recording once the call has ended (A/B mode: the base's turn, see pairing.py).
AfterCall = Callable[[Recording], None]

# The runtime raises its own StreamStalled at the stall timeout, after joining its producer for up to
# its join_timeout_s; the watchdog waits that long plus a margin, so the runtime's clean error wins
# wherever there is one.
WATCHDOG_MARGIN_S = 1.0


def join_timeout_s(runtime: object) -> float:
    """The runtime's producer join at the end of a request (0 for an engine without the runtime's settings)."""
    return float(getattr(getattr(runtime, "settings", None), "join_timeout_s", 0.0))


def watchdog_bound(stall_timeout_s: float, join_timeout_s: float) -> float:
    """Seconds without a chunk or a token after which a call fails: the one definition, for the head's
    calls and the base worker's alike (the other interpreter adds its transfer slack on top)."""
    return stall_timeout_s + join_timeout_s + WATCHDOG_MARGIN_S


# Threads the call started get this long to end after it before they count as leaked (the runtime
# joins its producer before the stream ends, so this is only scheduling slack).
TIDY_GRACE_S = 1.0
_readers = itertools.count(1)


class WatchdogExpired(BaseException):
    """A `cosy_tts` call produced nothing (no chunk, no token) for the watchdog's time; the message
    names the call, the chunks it got and the seconds waited. A BaseException, as pytest's own test
    outcomes: a test's (or an engine wrapper's) `except Exception` does not swallow the hang."""


class _Reader(threading.Thread):
    """Drains one engine call into a queue: ("chunk", Chunk), ("result", Synthesis), ("end", None),
    ("closed", None) or ("error", exc), each with its perf_counter time."""

    def __init__(self, work: Callable[[_Reader], None]) -> None:
        super().__init__(name=f"cosy-tts-reader-{next(_readers)}", daemon=True)
        self.q: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self.stop = threading.Event()
        self._work = work

    def put(self, kind: str, payload: Any) -> None:
        self.q.put((kind, payload, time.perf_counter()))

    def run(self) -> None:
        try:
            self._work(self)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.put("error", e)


def _drain(it: Iterator[Chunk]) -> Callable[[_Reader], None]:
    def work(r: _Reader) -> None:
        for chunk in it:
            r.put("chunk", chunk)
            if r.stop.is_set():
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # stops the producer; must run in the thread that iterates
                r.put("closed", None)
                return
        r.put("end", None)
    return work


@dataclass(eq=False)
class _Call:
    rec: Recording
    track: CallTrack
    reader: _Reader | None = None
    # Under overlapping calls on an engine without lineage: threads that may be this call's, settled
    # when the last call in flight has ended (see `_settle`).
    candidates: list[threading.Thread] = field(default_factory=list)


class Recorder:
    """Runs and records the calls of one `cosy_tts` (`stream`, `synthesize`: each a labelled call,
    appended to `recordings` when measured), tracks the calls in flight and the threads they leave.
    `on_refused(kind)`: a measured call the engine refused for its arguments (it recorded nothing)."""

    def __init__(self, engine: Engine, runtime: Runtime, attribution: EngineAttribution, recordings: list[Recording],
                 *, stall_timeout_s: float, first_use: Callable[[], bool],
                 on_refused: Callable[[str], None]) -> None:
        self.engine = engine
        self.runtime = runtime
        self.attribution = attribution
        self.stall_timeout_s = stall_timeout_s
        self.recordings = recordings
        self._first_use = first_use
        self._on_refused = on_refused
        self._live: list[_Call] = []
        self._unsettled: list[_Call] = []
        # Threads that call cosy_tts or read for it: under concurrent calls they are the harness's and
        # the test's, not threads a stream left behind.
        self._harness_threads: set[int | None] = set()
        self._lock = threading.Lock()
        self.last: Recording | None = None     # the latest call begun
        # The recording holds the engine's audio: its rate, not the model's (an engine may resample).
        self.sample_rate = int(engine.sample_rate)
        self.samples_per_token = self.sample_rate / token_rate(runtime.version, getattr(runtime, "flow", None))

    @property
    def watchdog_s(self) -> float:
        """Seconds without a chunk or a token after which a call fails."""
        return watchdog_bound(self.stall_timeout_s, join_timeout_s(self.runtime))

    def busy(self) -> bool:
        """Whether a call is in flight."""
        with self._lock:
            return bool(self._live)

    def _begin(self, label: str, kind: str, kwargs: dict[str, Any], round_: int, measured: bool,
               text: Any = None) -> _Call:
        seed = kwargs.get("seed") if self.attribution.takes[kind].seed else None
        rec = Recording(label=label, kind=kind, sample_rate=self.sample_rate, samples_per_token=self.samples_per_token,
                        speed=float(kwargs.get("speed", 1.0)), measured=measured, round=round_,
                        cold=self._first_use(), seed=seed if isinstance(seed, int) else None, text=text,
                        request={k: v for k, v in kwargs.items() if k != "seed"})
        call = _Call(rec, self.attribution.track(kind, kwargs, {t.ident for t in threading.enumerate()}))
        with self._lock:
            self.last = rec
            for other in self._live:
                other.track.overlapped = call.track.overlapped = True
            self._harness_threads.add(threading.get_ident())
            self._live.append(call)
            if measured:
                self.recordings.append(rec)
        self.attribution.begin(call.track)
        return call

    def _engine_kwargs(self, kind: str, call: _Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self.attribution.engine_kwargs(kind, call.track, kwargs, self.stall_timeout_s, time.perf_counter)

    def _started_by(self, call: _Call) -> list[threading.Thread]:
        """`EngineAttribution.started_by` the call, past the harness's threads (callers, readers)."""
        with self._lock:
            harness = set(self._harness_threads)
        return self.attribution.started_by(call.track, harness)

    def _end(self, call: _Call, *, keep: bool = True) -> None:
        rec, reader = call.rec, call.reader
        with self._lock:
            if call not in self._live:
                return
        if reader is not None and not rec.abandoned:
            # A closed stream ends at the reader's next chunk: give it up to a stall timeout.
            reader.join(self.watchdog_s if rec.outcome == "closed" else TIDY_GRACE_S)
        # Overlapping calls on an engine without lineage: another call's producer may still run, so
        # whose thread is whose is told when the last of them has ended (`_settle`).
        unsettled = call.track.overlapped and self.attribution.adapter is None
        if not unsettled:
            # The threads the call started get the grace period, in all, to end (joined, not polled).
            _join(self._started_by(call), TIDY_GRACE_S)
        new = self._started_by(call)
        self.attribution.end(call.track)
        with self._lock:
            self._live.remove(call)
            rec.leaked_threads = [rec.abandoned] if rec.abandoned else []
            if unsettled:
                call.candidates = new
                self._unsettled.append(call)
            else:
                rec.leaked_threads += [t.name for t in new]
            settle = [] if self._live else self._unsettled
            if not self._live:
                self._unsettled = []
            rec.generated_tokens = call.track.generated_tokens()
            with call.track.lock:
                rec.thread_errors.extend(call.track.thread_errors)
                rec.speech_tokens = call.track.speech_tokens
            if not keep and rec in self.recordings:
                self.recordings.remove(rec)
        _settle(settle)

    def _wait(self, call: _Call, t0: float) -> tuple[str, Any, float]:
        """The next queue item; WatchdogExpired once nothing has progressed for the watchdog's time."""
        rec, reader = call.rec, call.reader
        assert reader is not None
        limit = self.watchdog_s
        while True:
            last_chunk = t0 + rec.arrivals_s[-1] if rec.arrivals_s else t0
            idle = time.perf_counter() - max(t0, last_chunk, call.track.progress())
            if idle >= limit:
                break
            try:
                return reader.q.get(timeout=min(limit - idle, 0.25))
            except queue.Empty:
                continue
        waited = time.perf_counter() - t0
        reader.stop.set()
        reader.join(0.1)
        rec.outcome = "watchdog"
        rec.wall_s = waited
        rec.error = (f"nothing produced for {idle:.1f} s (stall timeout {self.stall_timeout_s:g} s) after "
                     f"{len(rec.chunks)} chunk(s); waited {waited:.1f} s in all")
        if reader.is_alive():
            rec.abandoned = reader.name
            rec.error += f"; reader thread {reader.name!r} abandoned inside the engine"
        self._end(call)
        raise WatchdogExpired(f"cosy_tts {rec.label}: {rec.error}")

    def _start_reader(self, call: _Call, work: Callable[[_Reader], None]) -> None:
        call.reader = call.track.reader = _Reader(work)
        call.reader.start()
        with self._lock:
            self._harness_threads.add(call.reader.ident)

    def stream(self, label: str, text: Any, kwargs: dict[str, Any], *, round_: int,
                measured: bool, after: AfterCall | None = None) -> Iterator[Chunk]:
        call = self._begin(label, "stream", kwargs, round_, measured, text)
        t0 = time.perf_counter()
        try:
            it = self.engine.stream(text, **self._engine_kwargs("stream", call, kwargs))
        except BaseException:
            self._end(call, keep=False)  # refused for its arguments: no stream to check
            if measured:
                self._on_refused("stream")
            raise
        self._start_reader(call, _drain(iter(it)))
        return self._consume(call, t0, after)

    def _consume(self, call: _Call, t0: float, after: AfterCall | None = None) -> Iterator[Chunk]:
        rec, reader = call.rec, call.reader
        assert reader is not None
        try:
            while True:
                kind, payload, t = self._wait(call, t0)
                rec.wall_s = t - t0
                if kind == "chunk":
                    _add(rec, payload, t - t0)
                    yield payload
                elif kind in ("end", "closed"):
                    rec.outcome = "ok" if kind == "end" else "closed"
                    return
                else:
                    rec.outcome, rec.error = type(payload).__name__, str(payload)
                    raise payload
        except GeneratorExit:
            # The test stopped reading: stop the engine as closing its generator would.
            rec.outcome = "closed"
            reader.stop.set()
            raise
        finally:
            self._end(call)
            if after is not None:   # the call has ended and its threads are counted: the base's turn
                after(rec)

    def synthesize(self, label: str, text: Any, kwargs: dict[str, Any], *, round_: int,
                    measured: bool, after: AfterCall | None = None) -> Synthesis:
        call = self._begin(label, "synthesize", kwargs, round_, measured, text)
        rec = call.rec
        t0 = time.perf_counter()
        engine_kwargs = self._engine_kwargs("synthesize", call, kwargs)
        self._start_reader(call, lambda r: r.put("result", self.engine.synthesize(text, **engine_kwargs)))
        kind, payload, t = self._wait(call, t0)
        rec.wall_s = t - t0
        if kind == "error":
            refused = _is_argument_error(payload)
            if refused and measured:
                self._on_refused("synthesize")
            elif not refused:
                rec.outcome, rec.error = type(payload).__name__, str(payload)
            self._end(call, keep=not refused)
            if after is not None and not refused:
                after(rec)
            raise payload
        for c in payload.chunks:
            _add(rec, c, t - t0)  # a non-streamed call delivers everything at once
        self._end(call)
        if after is not None:
            after(rec)
        result: Synthesis = payload  # the engine's result object (see Engine)
        return result


def _settle(calls: list[_Call]) -> None:
    """The last of overlapping calls has ended: every call's new threads still alive now (after
    their grace) were left behind by one of them, and are named for each that saw them start."""
    _join([t for c in calls for t in c.candidates], TIDY_GRACE_S)
    for c in calls:
        c.rec.leaked_threads += [t.name for t in c.candidates if t.is_alive()]
        c.candidates = []


def _add(rec: Recording, chunk: Chunk, at: float) -> None:
    # A copy: an engine's array may be a view of its tensor (whose memory the recording would then
    # keep alive and count as the engine's state) or a buffer the engine reuses.
    rec.chunks.append(np.array(chunk.audio, dtype=np.float32))
    rec.chunk_tokens.append(int(chunk.tokens))
    rec.arrivals_s.append(at)


def _join(threads: list[threading.Thread], grace_s: float) -> None:
    """Joins the threads for `grace_s` in all."""
    deadline = time.monotonic() + grace_s
    for t in threads:
        try:
            t.join(max(0.0, deadline - time.monotonic()))
        except (AssertionError, RuntimeError):  # a _DummyThread (started outside `threading`) cannot be
            # joined: AssertionError up to Python 3.12, RuntimeError from 3.13
            pass


def _is_argument_error(exc: BaseException) -> bool:
    return isinstance(exc, (InvalidInput, TypeError))
