"""`cosy_tts`: calls the engine like a user would and records every call behind a watchdog.

Each call's iterator is drained by a daemon reader thread into a queue, as fast as the engine
produces (a real player buffers too), so arrival times measure the engine, not the test's loop.
The test side reads the queue with a timeout: when neither a chunk nor a speech token (counted at
the LLM) arrives for the stall timeout plus a margin, the call fails the test with the chunk count
and the seconds waited. A reader stuck inside the engine (upstream's stream spins forever when its
LLM thread dies) is abandoned: it is a daemon thread, so it never holds up the session, and the
recording names it.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from .checks import Recording
from .markers import RtfSpec

if TYPE_CHECKING:
    from cosyvoice_runtime import Chunk, Synthesis

# The runtime raises its own StreamStalled at the stall timeout, after joining its producer for up to
# its join_timeout_s; the watchdog waits that long plus a margin, so the runtime's clean error wins
# wherever there is one.
WATCHDOG_MARGIN_S = 1.0
# Threads the call started get this long to end after it before they count as leaked (the runtime
# joins its producer before the stream ends, so this is only scheduling slack).
TIDY_GRACE_S = 1.0
_MISSING = object()
_readers = itertools.count(1)


class _Lineage:
    """Which thread started which, while calls run: `threading.Thread.start` is wrapped (process-wide,
    only while a cosy_tts call is in flight) so that every new thread remembers the thread that started
    it. A token, or a thread left behind, then belongs to the call whose reader thread is its ancestor:
    the engine's LLM thread is started (directly or further down) by the thread that iterates the
    engine, whatever the engine. Threads that existed before the call (a pool) have no such ancestor."""

    PARENT = "_cosy_tts_parent"
    _users = 0
    _saved: Any = None
    _lock = threading.Lock()

    @classmethod
    def track(cls) -> None:
        with cls._lock:
            cls._users += 1
            if cls._users == 1:
                cls._saved = start = threading.Thread.start

                def start_with_parent(thread: threading.Thread) -> None:
                    setattr(thread, cls.PARENT, threading.current_thread())
                    start(thread)
                threading.Thread.start = start_with_parent  # type: ignore[method-assign]

    @classmethod
    def untrack(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                threading.Thread.start = cls._saved  # type: ignore[method-assign]

    @classmethod
    def reader_of(cls, thread: threading.Thread | None) -> "_Reader | None":
        """The nearest cosy_tts reader among the thread and its ancestors."""
        while thread is not None:
            if isinstance(thread, _Reader):
                return thread
            thread = getattr(thread, cls.PARENT, None)
        return None


class _Tokens:
    """Counts speech tokens at the LLM (installed on `llm.inference` for the duration of the calls),
    per call: the independent 'generated' count of the complete check, and the watchdog's sign of
    progress. `owner()` names the call a token generated in the current thread belongs to."""

    def __init__(self, owner: Callable[[], "_Call | None"], live: Callable[[], "list[_Call]"]) -> None:
        self._owner = owner
        self._live = live
        self._saved: dict[str, Any] = {}
        self._llm: Any = None
        self._wrappers: dict[str, Any] = {}

    def _wrap(self, fn: Callable[..., Iterable[int]]) -> Callable[..., Iterator[int]]:
        def counted(*args: Any, **kwargs: Any) -> Iterator[int]:
            for tok in fn(*args, **kwargs):
                now = time.perf_counter()
                call = self._owner()
                if call is not None:
                    call.tokens += 1
                    call.last_token = now
                else:
                    # Cannot say whose token this is: every call in flight loses its count (not judged)
                    # but gets the sign of life.
                    for c in self._live():
                        c.unattributed += 1
                        c.last_token = now
                yield tok
        return counted

    def install(self, llm: Any) -> None:
        self._llm = llm
        for name in ("inference", "inference_bistream"):
            fn = getattr(llm, name, None)
            if fn is None:
                continue
            self._saved[name] = llm.__dict__.get(name, _MISSING)
            self._wrappers[name] = self._wrap(fn)
            setattr(llm, name, self._wrappers[name])

    def uninstall(self) -> None:
        for name, prev in self._saved.items():
            if self._llm.__dict__.get(name) is not self._wrappers[name]:
                continue  # the test replaced it meanwhile; leave the test's choice in place
            if prev is _MISSING:
                delattr(self._llm, name)
            else:
                setattr(self._llm, name, prev)
        self._saved.clear()
        self._wrappers.clear()


class _Reader(threading.Thread):
    """Drains one engine call into a queue: ("chunk", Chunk), ("result", Synthesis), ("end", None),
    ("closed", None) or ("error", exc), each with its perf_counter time."""

    def __init__(self, work: Callable[["_Reader"], None]) -> None:
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


def _drain(it: Iterator["Chunk"]) -> Callable[[_Reader], None]:
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


class CosyTTS:
    """The `cosy_tts` fixture's object: `stream(...)` and `synthesize(...)` with the engine's
    signature, plus `recordings` (one `Recording` per call, replays included)."""

    def __init__(self, engine: Any, runtime: Any, *, stall_timeout_s: float, rtf: RtfSpec | None = None,
                 first_use: Callable[[], bool] = lambda: False, round: int = 0) -> None:
        self.engine = engine
        self.runtime = runtime
        self.stall_timeout_s = stall_timeout_s
        self.rtf = rtf
        self.round = round      # the RTF round this test run records (0: the main pass; see rounds.py)
        self.recordings: list[Recording] = []
        self._first_use = first_use
        self._warmed = False
        self._n = {"stream": 0, "synthesize": 0}
        self._tokens = _Tokens(self._owner, self._live_calls)
        self._active = 0
        self._prev_hook: Any = None
        self._live: list[_Call] = []
        # Threads that call cosy_tts or read for it: under concurrent calls they are the harness's and
        # the test's, not threads a stream left behind.
        self._harness_threads: set[int | None] = set()
        self._lock = threading.Lock()
        flow = getattr(runtime, "flow", None)
        rate = getattr(flow, "input_frame_rate", None) or (50 if runtime.version == 1 else 25)
        self.samples_per_token = runtime.sample_rate / float(rate)

    @property
    def watchdog_s(self) -> float:
        """Seconds without a chunk or a token after which a call fails."""
        join = getattr(getattr(self.runtime, "settings", None), "join_timeout_s", 0.0)
        return self.stall_timeout_s + float(join) + WATCHDOG_MARGIN_S

    # -- what the test sees ------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.engine.sample_rate)

    @property
    def speakers(self) -> list[str]:
        return list(self.runtime.speakers)

    @property
    def version(self) -> int:
        return int(self.engine.version)

    def stream(self, text: Any, **kwargs: Any) -> Iterator["Chunk"]:
        """`engine.stream(text, **kwargs)`, recorded. Argument errors raise here, as from the engine."""
        self._warmup("stream", text, kwargs)
        return self._stream(self._label("stream"), text, kwargs, round_=self.round, measured=True)

    def synthesize(self, text: Any, **kwargs: Any) -> "Synthesis":
        self._warmup("synthesize", text, kwargs)
        return self._synthesize(self._label("synthesize"), text, kwargs, round_=self.round, measured=True)

    # -- rtf rounds and warm-up ----------------------------------------------------------------------
    def _label(self, kind: str) -> str:
        with self._lock:  # calls may come from several threads at once
            n = self._n[kind]
            self._n[kind] += 1
        return f"{kind} {n}" + (f" (round {self.round + 1})" if self.round else "")

    def _warmup(self, kind: str, text: Any, kwargs: dict[str, Any]) -> None:
        """Under @rtf, the test's first call is run `warmup` times untimed and unrecorded first."""
        if self._warmed or not self.rtf or not isinstance(text, str):
            return
        self._warmed = True
        for k in range(self.rtf.warmup):
            label = f"{kind} warm-up {k + 1}"
            if kind == "stream":
                for _ in self._stream(label, text, kwargs, round_=-1, measured=False):
                    pass
            else:
                self._synthesize(label, text, kwargs, round_=-1, measured=False)

    # -- one recorded call -------------------------------------------------------------------------
    def _begin(self, label: str, kind: str, kwargs: dict[str, Any], round_: int, measured: bool) -> "_Call":
        rec = Recording(label=label, kind=kind, sample_rate=self.sample_rate, samples_per_token=self.samples_per_token,
                        speed=float(kwargs.get("speed", 1.0)), measured=measured, round=round_,
                        cold=self._first_use())
        with self._lock:
            self._active += 1
            if self._active == 1:
                _Lineage.track()
                self._tokens.install(self.runtime.llm)
                self._prev_hook = threading.excepthook
                threading.excepthook = self._thread_died
            # Voice conversion takes its tokens from the source audio: the LLM count says nothing.
            call = _Call(rec, {t.ident for t in threading.enumerate()}, counts_tokens=kwargs.get("source_wav") is None)
            for other in self._live:
                other.overlapped = call.overlapped = True
            self._harness_threads.add(threading.get_ident())
            self._live.append(call)
        if measured:
            self.recordings.append(rec)
        return call

    def _live_calls(self) -> list["_Call"]:
        with self._lock:
            return list(self._live)

    def _owner(self) -> "_Call | None":
        """The call the current thread works for: the call of the nearest reader among its ancestors;
        a thread no reader started belongs to the only call in flight, or to none (not judged)."""
        reader = _Lineage.reader_of(threading.current_thread())
        with self._lock:
            if reader is not None:
                return next((c for c in self._live if c.reader is reader), None)
            return self._live[0] if len(self._live) == 1 else None

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        # Upstream's LLM thread dies this way: only the thread hook ever hears of it.
        name = args.thread.name if args.thread is not None else "?"
        reader = _Lineage.reader_of(args.thread)
        with self._lock:
            calls = [c for c in self._live if reader is None or c.reader is reader]
        for call in calls:
            call.rec.thread_errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        if self._prev_hook is not None:
            self._prev_hook(args)

    def _end(self, call: "_Call", *, keep: bool = True) -> None:
        rec, reader = call.rec, call.reader
        if call not in self._live:
            return
        if reader is not None and not rec.abandoned:
            # A closed stream ends at the reader's next chunk: give it up to a stall timeout.
            reader.join(self.watchdog_s if rec.outcome == "closed" else TIDY_GRACE_S)
        mine = {reader.ident} if reader is not None else set()
        deadline = time.monotonic() + TIDY_GRACE_S
        while True:
            # Under overlapping calls a new thread is this call's only when its reader started it.
            new = [t for t in threading.enumerate()
                   if t.ident not in call.threads_before and t.ident not in mine
                   and t.ident not in self._harness_threads and t.is_alive()
                   and (not call.overlapped or (reader is not None and _Lineage.reader_of(t) is reader))]
            if not new or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        rec.leaked_threads = ([rec.abandoned] if rec.abandoned else []) + [t.name for t in new]
        with self._lock:
            if call.counts_tokens and not call.unattributed:
                rec.generated_tokens = call.tokens
            self._live.remove(call)
            self._active -= 1
            if self._active == 0:
                self._tokens.uninstall()
                threading.excepthook = self._prev_hook
                _Lineage.untrack()
        if not keep and rec in self.recordings:
            self.recordings.remove(rec)

    def _wait(self, call: "_Call", t0: float) -> tuple[str, Any, float]:
        """The next queue item, or a test failure once nothing has progressed for the stall timeout."""
        rec, reader = call.rec, call.reader
        assert reader is not None
        limit = self.watchdog_s
        while True:
            last_chunk = t0 + rec.arrivals_s[-1] if rec.arrivals_s else t0
            idle = time.perf_counter() - max(t0, last_chunk, call.last_token)
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
        pytest.fail(f"cosy_tts {rec.label}: {rec.error}", pytrace=False)

    def _stream(self, label: str, text: Any, kwargs: dict[str, Any], *, round_: int,
                measured: bool) -> Iterator["Chunk"]:
        call = self._begin(label, "stream", kwargs, round_, measured)
        t0 = time.perf_counter()
        try:
            it = self.engine.stream(text, **kwargs)
        except BaseException:
            self._end(call, keep=False)  # refused for its arguments: no stream to check
            if measured:
                self._n["stream"] -= 1
            raise
        call.reader = _Reader(_drain(iter(it)))
        call.reader.start()
        self._harness_threads.add(call.reader.ident)
        return self._consume(call, t0)

    def _consume(self, call: "_Call", t0: float) -> Iterator["Chunk"]:
        rec, reader = call.rec, call.reader
        assert reader is not None
        try:
            while True:
                kind, payload, t = self._wait(call, t0)
                rec.wall_s = t - t0
                if kind == "chunk":
                    self._add(rec, payload, t - t0)
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

    def _synthesize(self, label: str, text: Any, kwargs: dict[str, Any], *, round_: int,
                    measured: bool) -> "Synthesis":
        call = self._begin(label, "synthesize", kwargs, round_, measured)
        rec = call.rec
        t0 = time.perf_counter()
        call.reader = _Reader(lambda r: r.put("result", self.engine.synthesize(text, **kwargs)))
        call.reader.start()
        self._harness_threads.add(call.reader.ident)
        kind, payload, t = self._wait(call, t0)
        rec.wall_s = t - t0
        if kind == "error":
            refused = _is_argument_error(payload)
            if refused and measured:
                self._n["synthesize"] -= 1
            elif not refused:
                rec.outcome, rec.error = type(payload).__name__, str(payload)
            self._end(call, keep=not refused)
            raise payload
        for c in payload.chunks:
            self._add(rec, c, t - t0)  # a non-streamed call delivers everything at once
        self._end(call)
        return payload

    def _add(self, rec: Recording, chunk: "Chunk", at: float) -> None:
        # A copy: an engine's array may be a view of its tensor (whose memory the recording would then
        # keep alive and count as the engine's state) or a buffer the engine reuses.
        rec.chunks.append(np.array(chunk.audio, dtype=np.float32))
        rec.chunk_tokens.append(int(chunk.tokens))
        rec.arrivals_s.append(at)


@dataclass(eq=False)
class _Call:
    rec: Recording
    threads_before: set[int | None]
    counts_tokens: bool = True
    reader: _Reader | None = None
    tokens: int = 0                # counted at the LLM in threads this call's reader started
    unattributed: int = 0          # tokens in flight that no call could be named for (count not judged)
    last_token: float = 0.0        # perf_counter of the call's latest token (the watchdog's progress)
    overlapped: bool = False       # another cosy_tts call was in flight at some point


def _is_argument_error(exc: BaseException) -> bool:
    try:
        from cosyvoice_runtime import InvalidInput
    except ImportError:  # pragma: no cover - the runtime ships with the plugin
        return isinstance(exc, (ValueError, TypeError))
    return isinstance(exc, (InvalidInput, TypeError))
