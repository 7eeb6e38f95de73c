"""A head that is slower by a set share of its own work, for the A/B part of benchmarks/gate_truth.py
(issue 17): the Runtime itself, with a sleep after each chunk.

    COSY_SLOW=0.1 python -m pytest suites --cosy-engine benchmarks.slow_engine:build --cosy-base-engine fixed

After each chunk the engine sleeps `COSY_SLOW` times the time that chunk took to come (the first from
the `stream` call, each later one from the moment the caller asked for it), then hands it on;
`synthesize` sleeps that share of its whole call. A sleep, not a busy loop: a pure-Python spin holds
the GIL and slows the Runtime's producer thread as well, so the stream would slow by far more than the
stated share (benchmarks/inject.py's docstring has the numbers). With a sleep the producer keeps
generating tokens meanwhile, so the stream as a whole slows by less than the share: gate_truth reports
the slowdown a level actually applied (the median pooled A/B ratio) beside the level.

`stream` and `synthesize` name `observer=` and `stall_timeout_s=` and hand them to the Runtime, so the
harness counts each call's tokens from the Runtime's own observer calls and passes the test's stall
timeout, exactly as for the Runtime (no foreign adapter, nothing of the process patched). Chunks,
results and errors are the Runtime's, unchanged; arguments are checked at the call, by the Runtime.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cosyvoice_runtime import StreamObserver
from cosyvoice_runtime.types import Chunk, Synthesis

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime
    from cosyvoice_runtime.runtime_settings import RuntimeSettings

VARIABLE = "COSY_SLOW"


def slow_share(environ: Mapping[str, str]) -> float:
    """The share `COSY_SLOW` names in `environ` (0 when unset or empty): a finite number >= 0.
    ValueError naming the variable and the value otherwise."""
    raw = environ.get(VARIABLE, "").strip()
    if not raw:
        return 0.0
    try:
        share = float(raw)
    except ValueError:
        raise ValueError(f"{VARIABLE}={raw!r} is not a number; expected a share of each chunk's time "
                         f"to sleep, >= 0 (0.1 means 10 % slower)") from None
    if not math.isfinite(share) or share < 0.0:
        raise ValueError(f"{VARIABLE}={raw!r}: expected a finite share >= 0 (0.1 means 10 % slower)")
    return share


class SlowEngine:
    """The Runtime's `stream`/`synthesize`, each chunk followed by a sleep of `share` times its time.

    `clock` (seconds, monotonic) and `sleep` are the wrapper's only contact with time, so a test can
    see what it slept for which chunk without timing anything."""

    def __init__(self, runtime: Runtime, share: float, *, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not (math.isfinite(share) and share >= 0.0):
            raise ValueError(f"share {share!r}: expected a finite number >= 0")
        self.runtime = runtime
        self.share = share
        self._clock = clock
        self._sleep = sleep
        self.version = runtime.version
        self.sample_rate = runtime.sample_rate

    # What the suites and the plugin read of an engine, besides the protocol: the Runtime's own.
    @property
    def speakers(self) -> list[str]:
        return self.runtime.speakers

    @property
    def modes(self) -> list[str]:
        return self.runtime.modes

    @property
    def active_requests(self) -> int:
        return self.runtime.active_requests

    @property
    def settings(self) -> RuntimeSettings:
        return self.runtime.settings

    # `seed=` named, as the Runtime names it: an A/B pair then seeds both sides per request, the same work.
    def stream(self, text: str | Iterable[str], *, observer: StreamObserver | None = None,
               stall_timeout_s: float | None = None, seed: int | None = None, **voice: Any) -> Iterator[Chunk]:
        """The Runtime's stream (its arguments checked now, by it), each chunk handed on after the sleep."""
        start = self._clock()
        chunks = self.runtime.stream(text, observer=observer, stall_timeout_s=stall_timeout_s, seed=seed, **voice)
        return self._slowed(chunks, start)

    def synthesize(self, text: str | Iterable[str], *, observer: StreamObserver | None = None,
                   stall_timeout_s: float | None = None, seed: int | None = None, **voice: Any) -> Synthesis:
        """The Runtime's result, returned after sleeping `share` of the call's time."""
        start = self._clock()
        result = self.runtime.synthesize(text, observer=observer, stall_timeout_s=stall_timeout_s, seed=seed,
                                         **voice)
        self._wait(self._clock() - start)
        return result

    def _slowed(self, chunks: Iterator[Chunk], start: float) -> Iterator[Chunk]:
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                self._wait(self._clock() - start)
                yield chunk
                # The next chunk's time starts when the caller asks for it: its own time between
                # chunks (and this sleep) is not the engine's.
                start = self._clock()
        finally:
            # A caller that stops early closes this generator: close the Runtime's stream now, in this
            # thread, so the request's state is released as it would be without the wrapper.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _wait(self, took: float) -> None:
        if self.share > 0.0:
            self._sleep(self.share * max(took, 0.0))


def build(runtime: Runtime) -> SlowEngine:
    """The `--cosy-engine benchmarks.slow_engine:build` factory: slowed by `COSY_SLOW` (default 0)."""
    return SlowEngine(runtime, slow_share(os.environ))
