"""`cosy_tts`: calls the engine like a user would and records every call behind a watchdog.

Each call's iterator is drained by a daemon reader thread into a queue, as fast as the engine
produces (a real player buffers too), so arrival times measure the engine, not the test's loop.
The test side reads the queue with a timeout: when neither a chunk nor a speech token arrives for the
stall timeout plus a margin, the call fails the test with the chunk count and the seconds waited.

Tokens are counted per call by a `cosyvoice_runtime.StreamObserver` passed as `observer=` where the
engine's `stream`/`synthesize` name that parameter (this project's Runtime does), and the test's stall
timeout goes to the engine as `stall_timeout_s=` where it names that one. An engine without `observer=`
(upstream's class, most custom engines) is counted at the LLM instead: `runtime.llm.inference` is
wrapped while such a call is in flight, and each token goes to the call whose reader thread started
the thread that generated it (`_Lineage`). That wrapper sits on the shared component, so it sees
every engine's tokens whatever the engine, and injected faults (which replace `llm.inference`)
run inside it. A reader stuck inside the engine (upstream's stream spins forever when its
LLM thread dies) is abandoned: it is a daemon thread, so it never holds up the session, and the
recording names it.
"""
from __future__ import annotations

import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cosyvoice_runtime import StreamObserver, StreamStats, token_rate

from ..engine import Engine
from ..judging.checks import Recording
from ..judging.specs import RtfSpec

if TYPE_CHECKING:
    from cosyvoice_runtime import Chunk, Runtime, Synthesis

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
                threading.Thread.start = start_with_parent  # type: ignore[assignment]  # patched while calls run

    @classmethod
    def untrack(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                threading.Thread.start = cls._saved  # type: ignore[method-assign]

    @classmethod
    def reader_of(cls, thread: threading.Thread | None) -> _Reader | None:
        """The nearest cosy_tts reader among the thread and its ancestors."""
        while thread is not None:
            if isinstance(thread, _Reader):
                return thread
            thread = getattr(thread, cls.PARENT, None)
        return None


class _Tokens:
    """Counts speech tokens at the LLM for calls whose engine takes no observer: installed on
    `llm.inference` (and `inference_bistream`) while such a call is in flight; `token()` is called in
    the generating thread for every token and attributes it (see `CosyTTS._llm_token`)."""

    def __init__(self, token: Callable[[], None]) -> None:
        self._token = token
        self._saved: dict[str, Any] = {}
        self._llm: Any = None
        self._wrappers: dict[str, Any] = {}

    def _wrap(self, fn: Callable[..., Iterable[int]]) -> Callable[..., Iterator[int]]:
        def counted(*args: Any, **kwargs: Any) -> Iterator[int]:
            for tok in fn(*args, **kwargs):
                self._token()
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


def accepts(method: Callable[..., Any], name: str) -> bool:
    """Whether `method` names the keyword parameter `name`. `**kwargs` alone does not count: an
    engine that swallows unknown keywords (or hands them to a callee that refuses them) must not be
    given `observer=`/`stall_timeout_s=`."""
    try:
        param = inspect.signature(method).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                 inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _CallObserver(StreamObserver):
    """Hears one call's tokens from the engine (in the reader thread, which iterates it) and hands
    every callback on to the test's own observer, if the test passed one."""

    def __init__(self, tts: CosyTTS, call: _Call, inner: StreamObserver | None) -> None:
        self._tts = tts
        self._call = call
        self._inner = inner

    def on_tokens(self, n_new: int, total: int) -> None:
        self._tts._observed_tokens(self._call, total)
        if self._inner is not None:
            self._inner.on_tokens(n_new, total)

    def on_chunk(self, chunk: Chunk) -> None:
        if self._inner is not None:
            self._inner.on_chunk(chunk)

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        if self._inner is not None:
            self._inner.on_end(stats, error)


class CosyTTS:
    """The `cosy_tts` fixture's object: `stream(...)` and `synthesize(...)` with the engine's
    signature, plus `recordings` (one `Recording` per call, replays included)."""

    def __init__(self, engine: Engine, runtime: Runtime, *, stall_timeout_s: float, rtf: RtfSpec | None = None,
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
        self._tokens = _Tokens(self._llm_token)
        self._counting_at_llm = 0       # calls in flight that count at the LLM (engine without observer=)
        self._active = 0
        self._prev_hook: Callable[[threading.ExceptHookArgs], Any] | None = None
        self._hook: Callable[[threading.ExceptHookArgs], None] | None = None
        self._live: list[_Call] = []
        # Threads that call cosy_tts or read for it: under concurrent calls they are the harness's and
        # the test's, not threads a stream left behind.
        self._harness_threads: set[int | None] = set()
        self._lock = threading.Lock()
        # What the engine's methods take beyond the Runtime's request arguments (see `accepts`).
        self._takes = {kind: (accepts(getattr(engine, kind), "observer"),
                              accepts(getattr(engine, kind), "stall_timeout_s"))
                       for kind in ("stream", "synthesize")}
        # The recording holds the engine's audio: its rate, not the model's (an engine may resample).
        self.samples_per_token = self.sample_rate / token_rate(runtime.version, getattr(runtime, "flow", None))

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

    def stream(self, text: Any, **kwargs: Any) -> Iterator[Chunk]:
        """`engine.stream(text, **kwargs)`, recorded. Argument errors raise here, as from the engine."""
        self._warmup("stream", text, kwargs)
        return self._stream(self._label("stream"), text, kwargs, round_=self.round, measured=True)

    def synthesize(self, text: Any, **kwargs: Any) -> Synthesis:
        self._warmup("synthesize", text, kwargs)
        return self._synthesize(self._label("synthesize"), text, kwargs, round_=self.round, measured=True)

    # -- rtf rounds and warm-up ----------------------------------------------------------------------
    def _label(self, kind: str) -> str:
        with self._lock:  # calls may come from several threads at once
            n = self._n[kind]
            self._n[kind] += 1
        return f"{kind} {n}" + (f" (round {self.round + 1})" if self.round else "")

    def _unlabel(self, kind: str) -> None:
        """A call refused for its arguments gives its number back (it recorded nothing)."""
        with self._lock:
            self._n[kind] -= 1

    def _warmup(self, kind: str, text: Any, kwargs: dict[str, Any]) -> None:
        """Under @rtf, the test's first call is run `warmup` times untimed and unrecorded first."""
        if not self.rtf or not isinstance(text, str):
            return
        with self._lock:
            if self._warmed:
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
    def _begin(self, label: str, kind: str, kwargs: dict[str, Any], round_: int, measured: bool) -> _Call:
        rec = Recording(label=label, kind=kind, sample_rate=self.sample_rate, samples_per_token=self.samples_per_token,
                        speed=float(kwargs.get("speed", 1.0)), measured=measured, round=round_,
                        cold=self._first_use())
        observed = self._takes[kind][0]
        # Voice conversion takes its tokens from the source audio: the LLM's count says nothing of it
        # (the engine's observer, where there is one, counts the tokens actually rendered).
        call = _Call(rec, {t.ident for t in threading.enumerate()}, observed=observed,
                     counts_tokens=observed or kwargs.get("source_wav") is None)
        with self._lock:
            self._active += 1
            if self._active == 1:
                _Lineage.track()
                self._prev_hook = threading.excepthook
                self._hook = self._thread_died
                threading.excepthook = self._hook
            if not observed:
                self._counting_at_llm += 1
                if self._counting_at_llm == 1:
                    self._tokens.install(self.runtime.llm)
            for other in self._live:
                other.overlapped = call.overlapped = True
            self._harness_threads.add(threading.get_ident())
            self._live.append(call)
            if measured:
                self.recordings.append(rec)
        return call

    def _engine_kwargs(self, kind: str, call: _Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The test's arguments plus what the engine takes of ours: the per-call observer (chaining the
        test's own, if it passed one) and the test's stall timeout (unless the test passed one)."""
        observer, stall = self._takes[kind]
        out = dict(kwargs)
        theirs = kwargs.get("observer")
        # Ours chains a test's own observer; anything else the test passed goes to the engine as
        # given, so the engine refuses it at the call (InvalidInput), as without the harness.
        if observer and (theirs is None or isinstance(theirs, StreamObserver)):
            out["observer"] = _CallObserver(self, call, theirs)
        if stall:
            out.setdefault("stall_timeout_s", self.stall_timeout_s)
        return out

    def _observed_tokens(self, call: _Call, total: int) -> None:
        now = time.perf_counter()
        with self._lock:
            call.tokens = total
            call.last_token = now

    def _llm_token(self) -> None:
        """A token generated at the LLM, in the current thread (engines without observer=): counted
        for the call whose reader is an ancestor of this thread, or for the only call in flight."""
        reader = _Lineage.reader_of(threading.current_thread())
        now = time.perf_counter()
        with self._lock:
            if reader is not None:
                call = next((c for c in self._live if c.reader is reader), None)
            else:
                call = self._live[0] if len(self._live) == 1 else None
            if call is not None:
                if not call.observed:
                    call.tokens += 1
                call.last_token = now
                return
            # Cannot say whose token this is: every call counted here loses its count (not judged),
            # every call in flight gets the sign of life.
            for c in self._live:
                if not c.observed:
                    c.unattributed += 1
                c.last_token = now

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        # Upstream's LLM thread dies this way: only the thread hook ever hears of it.
        name = args.thread.name if args.thread is not None else "?"
        reader = _Lineage.reader_of(args.thread)
        with self._lock:
            for call in self._live:
                if reader is None or call.reader is reader:
                    call.rec.thread_errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
            prev = self._prev_hook
        # A hook that chains to ours after we were restored still reaches Python's default report.
        (prev or threading.__excepthook__)(args)

    def _started_by(self, call: _Call) -> list[threading.Thread]:
        """Threads alive now that the call started: new since it began, not the harness's (callers,
        readers), and under overlapping calls only those its own reader started."""
        reader = call.reader
        with self._lock:
            harness = set(self._harness_threads)
        me = threading.get_ident()
        return [t for t in threading.enumerate()
                if t.ident not in call.threads_before and t.ident not in harness and t.ident != me
                and t is not reader and t.is_alive()
                and (not call.overlapped or (reader is not None and _Lineage.reader_of(t) is reader))]

    def _end(self, call: _Call, *, keep: bool = True) -> None:
        rec, reader = call.rec, call.reader
        with self._lock:
            if call not in self._live:
                return
        if reader is not None and not rec.abandoned:
            # A closed stream ends at the reader's next chunk: give it up to a stall timeout.
            reader.join(self.watchdog_s if rec.outcome == "closed" else TIDY_GRACE_S)
        # The threads the call started get the grace period, in all, to end (joined, not polled).
        deadline = time.monotonic() + TIDY_GRACE_S
        for t in self._started_by(call):
            try:
                t.join(max(0.0, deadline - time.monotonic()))
            except (AssertionError, RuntimeError):  # a _DummyThread (started outside `threading`) cannot be
                # joined: AssertionError up to Python 3.12, RuntimeError from 3.13
                pass
        new = self._started_by(call)
        with self._lock:
            rec.leaked_threads = ([rec.abandoned] if rec.abandoned else []) + [t.name for t in new]
            if call.counts_tokens and not call.unattributed:
                rec.generated_tokens = call.tokens
            self._live.remove(call)
            if not call.observed:
                self._counting_at_llm -= 1
                if self._counting_at_llm == 0:
                    self._tokens.uninstall()
            self._active -= 1
            if self._active == 0:
                # Restored only where it is still ours: a hook set meanwhile by the test stays.
                if threading.excepthook is self._hook:
                    threading.excepthook = self._prev_hook  # type: ignore[assignment]
                self._hook = self._prev_hook = None
                _Lineage.untrack()
            if not keep and rec in self.recordings:
                self.recordings.remove(rec)

    def _wait(self, call: _Call, t0: float) -> tuple[str, Any, float]:
        """The next queue item, or a test failure once nothing has progressed for the stall timeout."""
        rec, reader = call.rec, call.reader
        assert reader is not None
        limit = self.watchdog_s
        while True:
            last_chunk = t0 + rec.arrivals_s[-1] if rec.arrivals_s else t0
            with self._lock:
                last_token = call.last_token
            idle = time.perf_counter() - max(t0, last_chunk, last_token)
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

    def _start_reader(self, call: _Call, work: Callable[[_Reader], None]) -> None:
        call.reader = _Reader(work)
        call.reader.start()
        with self._lock:
            self._harness_threads.add(call.reader.ident)

    def _stream(self, label: str, text: Any, kwargs: dict[str, Any], *, round_: int,
                measured: bool) -> Iterator[Chunk]:
        call = self._begin(label, "stream", kwargs, round_, measured)
        t0 = time.perf_counter()
        try:
            it = self.engine.stream(text, **self._engine_kwargs("stream", call, kwargs))
        except BaseException:
            self._end(call, keep=False)  # refused for its arguments: no stream to check
            if measured:
                self._unlabel("stream")
            raise
        self._start_reader(call, _drain(iter(it)))
        return self._consume(call, t0)

    def _consume(self, call: _Call, t0: float) -> Iterator[Chunk]:
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
                    measured: bool) -> Synthesis:
        call = self._begin(label, "synthesize", kwargs, round_, measured)
        rec = call.rec
        t0 = time.perf_counter()
        engine_kwargs = self._engine_kwargs("synthesize", call, kwargs)
        self._start_reader(call, lambda r: r.put("result", self.engine.synthesize(text, **engine_kwargs)))
        kind, payload, t = self._wait(call, t0)
        rec.wall_s = t - t0
        if kind == "error":
            refused = _is_argument_error(payload)
            if refused and measured:
                self._unlabel("synthesize")
            elif not refused:
                rec.outcome, rec.error = type(payload).__name__, str(payload)
            self._end(call, keep=not refused)
            raise payload
        for c in payload.chunks:
            self._add(rec, c, t - t0)  # a non-streamed call delivers everything at once
        self._end(call)
        result: Synthesis = payload  # the engine's result object (see Engine)
        return result

    def _add(self, rec: Recording, chunk: Chunk, at: float) -> None:
        # A copy: an engine's array may be a view of its tensor (whose memory the recording would then
        # keep alive and count as the engine's state) or a buffer the engine reuses.
        rec.chunks.append(np.array(chunk.audio, dtype=np.float32))
        rec.chunk_tokens.append(int(chunk.tokens))
        rec.arrivals_s.append(at)


@dataclass(eq=False)
class _Call:
    rec: Recording
    threads_before: set[int | None]
    observed: bool = False         # the engine reports this call's tokens (observer=), not the LLM wrapper
    counts_tokens: bool = True
    reader: _Reader | None = None
    tokens: int = 0                # generated for this call (guarded by CosyTTS._lock)
    unattributed: int = 0          # tokens in flight that no call could be named for (count not judged)
    last_token: float = 0.0        # perf_counter of the call's latest token (the watchdog's progress)
    overlapped: bool = False       # another cosy_tts call was in flight at some point


def _is_argument_error(exc: BaseException) -> bool:
    try:
        from cosyvoice_runtime import InvalidInput
    except ImportError:  # pragma: no cover - the runtime ships with the plugin
        return isinstance(exc, (ValueError, TypeError))
    return isinstance(exc, (InvalidInput, TypeError))
