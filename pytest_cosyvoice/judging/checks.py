"""The five stream checks and the warning filter, as pure functions over `Recording`s.

No pytest import: the plugin calls these after the test body and turns the returned problem texts
into a failure. Each check returns a list of human-readable problems (empty: passed).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .measurements import StreamTrace
from .playback import Playback, simulate_playback

GAP_FREE, COMPLETE, SOUND, CLEAN, TIDY = "gap-free", "complete", "sound", "clean", "tidy"
CHECKS = (GAP_FREE, COMPLETE, SOUND, CLEAN, TIDY)

# Duration vs token count: |samples - tokens * samples_per_token / speed| must stay within
# DURATION_REL of the expected length plus DURATION_TOKENS tokens' worth of samples. v2 renders
# exactly tokens * 960 samples at 24 kHz; v1 rounds each sentence down to whole mel frames
# (measured 0.977-0.990 of tokens/50 s on the tiny v1 model).
DURATION_REL = 0.05
DURATION_TOKENS = 2
# Clicks: see join_click_ratio.
CLICK_WINDOW_MS = 5.0
CLICK_FLOOR = 0.005        # steps below 3 x this (-36 dBFS) never count as clicks at the default
MAX_ZERO_RUN_MS = 20.0


@dataclass
class Recording:
    """Everything the recorder saw of one `cosy_tts.stream` / `cosy_tts.synthesize` call."""

    label: str                              # "stream 0", "synthesize 1", "stream 0 (repeat 2)"
    kind: str                               # "stream" or "synthesize"
    sample_rate: int
    chunks: list[np.ndarray] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)    # perf_counter seconds from the call
    wall_s: float = 0.0                     # call to last chunk (or to the error)
    outcome: str = "ok"                     # ok, closed (the test stopped reading), watchdog, or the error class
    error: str = ""
    generated_tokens: int | None = None     # counted at the LLM; None where unknown (vc, overlapping calls)
    samples_per_token: float | None = None  # sample_rate / token_rate (the engine's rate: the audio's)
    speed: float = 1.0
    thread_errors: list[str] = field(default_factory=list)   # unhandled exceptions in threads during the call
    leaked_threads: list[str] = field(default_factory=list)  # started by the call, alive after it (+ grace)
    abandoned: str = ""                     # the reader thread the watchdog left stuck in the engine
    measured: bool = True                   # counts for rtf (False: warm-up replay)
    round: int = 0                          # measured round (0 .. repeat-1)
    cold: bool = False                      # first call on this model in this process
    speech_tokens: list[int] | None = None  # the token ids, where the engine reports them (observer's on_end)
    seed: int | None = None                 # the call's own seed= where the engine took one (None: global RNG)
    text: Any = None                        # the call's text (a str, or the iterator it was given)
    request: dict[str, Any] = field(default_factory=dict)   # the call's other arguments (voice, speed), as given

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    @property
    def tokens(self) -> int:
        return sum(self.chunk_tokens)

    @property
    def audio_s(self) -> float:
        return sum(len(c) for c in self.chunks) / self.sample_rate if self.sample_rate else 0.0

    def to_trace(self, click_joins: Sequence[int] = ()) -> StreamTrace:
        return StreamTrace(
            label=self.label, sample_rate=self.sample_rate, chunk_samples=[len(c) for c in self.chunks],
            arrivals_s=list(self.arrivals_s), outcome=self.outcome, error=self.error,
            click_joins=list(click_joins))


# -- 1. gap-free -------------------------------------------------------------------------------
def check_gap_free(rec: Recording, prebuffer_ms: float, max_gap_ms: float) -> tuple[Playback, list[str]]:
    """Real-time playback from the first chunk's arrival plus the prebuffer; the worst stall must be
    <= max_gap_ms. The rules of the simulation are in `pytest_cosyvoice.judging.playback`."""
    pb = simulate_playback([len(c) for c in rec.chunks], rec.arrivals_s, rec.sample_rate, prebuffer_ms / 1000.0)
    worst_ms = pb.worst_stall_s * 1000.0
    if pb.worst_chunk is None or worst_ms <= max_gap_ms:
        return pb, []
    first = rec.arrivals_s[0] * 1000.0
    return pb, [f"{rec.label}: playback stalled {worst_ms:.0f} ms at chunk {pb.worst_chunk} of {len(rec.chunks)} "
                f"(max_gap_ms={max_gap_ms:g}, prebuffer_ms={prebuffer_ms:g}); a prebuffer of "
                f"{pb.needed_prebuffer_s * 1000.0:.0f} ms would have been needed; first chunk after {first:.0f} ms"]


# -- 2. complete -------------------------------------------------------------------------------
def expected_samples(tokens: int, samples_per_token: float, speed: float = 1.0) -> float:
    return tokens * samples_per_token / speed


def check_complete(rec: Recording) -> list[str]:
    """The producer ended normally, every generated token was rendered, and the length agrees with
    the token count. A stream the test closed early is not expected to be complete."""
    if rec.outcome == "closed":
        return []
    out: list[str] = []
    if rec.outcome != "ok":
        out.append(f"{rec.label}: ended with {rec.outcome} after {len(rec.chunks)} chunk(s)"
                   + (f": {rec.error}" if rec.error else ""))
    for err in rec.thread_errors:
        out.append(f"{rec.label}: a thread died during the call: {err}")
    if rec.outcome != "ok":
        return out  # the lengths of a broken stream say nothing new
    if rec.generated_tokens is not None and rec.generated_tokens != rec.tokens:
        out.append(f"{rec.label}: the LLM generated {rec.generated_tokens} tokens but the chunks cover {rec.tokens}")
    if rec.samples_per_token and rec.tokens:
        n = sum(len(c) for c in rec.chunks)
        want = expected_samples(rec.tokens, rec.samples_per_token, rec.speed)
        allowed = DURATION_REL * want + DURATION_TOKENS * rec.samples_per_token
        if abs(n - want) > allowed:
            out.append(f"{rec.label}: {n} samples ({n / rec.sample_rate:.3f} s) for {rec.tokens} tokens; expected "
                       f"{want:.0f} ({want / rec.sample_rate:.3f} s = tokens x {rec.samples_per_token:g} samples"
                       f"{f' / speed {rec.speed:g}' if rec.speed != 1 else ''}) +- {allowed:.0f}")
    elif not rec.chunks or not rec.tokens:
        out.append(f"{rec.label}: produced no speech ({len(rec.chunks)} chunks, {rec.tokens} tokens)")
    return out


# -- 3. sound ----------------------------------------------------------------------------------
def join_click_ratio(x: np.ndarray, j: int, sample_rate: int, window_ms: float = CLICK_WINDOW_MS,
                     floor: float = CLICK_FLOOR) -> float:
    """How much the jump across the join before sample j stands out from the jumps around it.

        ratio = |x[j] - x[j-1]| / max(floor, max |x[k] - x[k-1]| for k within window_ms of j,
                                       leaving out k = j-1, j, j+1)

    The three jumps next to the join are left out so that a one-sample spike on either side of it
    cannot hide itself. The max (not the mean) of the neighbours is the reference because speech
    has sharp transients: at every sample of a real recording the ratio stays below 1.6.
    """
    if j <= 0 or j >= len(x):
        return 0.0
    w = max(2, int(round(sample_rate * window_ms / 1000.0)))
    lo, hi = max(1, j - w), min(len(x), j + w + 1)
    d = np.abs(np.diff(x[lo - 1:hi].astype(np.float64)))      # d[i] = |x[lo+i] - x[lo+i-1]|
    k = np.arange(lo, hi)
    around = d[(k < j - 1) | (k > j + 1)]
    ref = max(floor, float(around.max()) if around.size else 0.0)
    return float(abs(float(x[j]) - float(x[j - 1])) / ref)


def zero_runs(x: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, length) of runs of exact zeros longer than min_len samples, not touching either end."""
    z = np.concatenate([[False], x == 0, [False]])
    edges = np.flatnonzero(np.diff(z.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True) if e - s > min_len and s > 0 and e < len(x)]


def check_sound(rec: Recording, max_click_ratio: float,
                max_zero_run_ms: float = MAX_ZERO_RUN_MS) -> tuple[list[int], list[str]]:
    """No NaN/Inf, nothing beyond [-1, 1], no empty chunk, no click at a join, no long exact-zero run
    inside the speech (leading/trailing silence is allowed). Returns (clicking join indices, problems)."""
    out: list[str] = []
    for i, c in enumerate(rec.chunks):
        if c.size == 0:
            out.append(f"{rec.label}: chunk {i} is empty")
            continue
        bad = ~np.isfinite(c)
        if bad.any():
            out.append(f"{rec.label}: chunk {i} has {int(bad.sum())} non-finite sample(s) "
                       f"(NaN {int(np.isnan(c).sum())}, Inf {int(np.isinf(c).sum())}) "
                       f"from sample {int(np.argmax(bad))}")
            continue
        over = np.abs(c) > 1.0
        if over.any():
            out.append(f"{rec.label}: chunk {i} has {int(over.sum())} sample(s) beyond [-1, 1] "
                       f"(peak {float(np.abs(c).max()):.3f})")
    clicks: list[int] = []
    x = rec.audio
    finite = bool(np.isfinite(x).all())
    j = 0
    for i, c in enumerate(rec.chunks[:-1]):
        j += len(c)
        if not finite or not len(c) or not len(rec.chunks[i + 1]):
            continue
        r = join_click_ratio(x, j, rec.sample_rate)
        if r > max_click_ratio:
            clicks.append(i + 1)
            out.append(f"{rec.label}: click at the join into chunk {i + 1} (sample {j}, {j / rec.sample_rate:.3f} s): "
                       f"jump {abs(float(x[j]) - float(x[j - 1])):.3f} is {r:.1f}x the largest jump within "
                       f"{CLICK_WINDOW_MS:g} ms (max_click_ratio={max_click_ratio:g})")
    min_len = int(rec.sample_rate * max_zero_run_ms / 1000.0)
    for start, n in zero_runs(x, min_len):
        out.append(f"{rec.label}: {n / rec.sample_rate * 1000.0:.0f} ms of exact zeros inside the speech at "
                   f"{start / rec.sample_rate:.3f} s (chunk {_chunk_at(rec, start)}; limit {max_zero_run_ms:g} ms)")
    return clicks, out


def _chunk_at(rec: Recording, sample: int) -> int:
    edge = 0
    for i, c in enumerate(rec.chunks):
        edge += len(c)
        if sample < edge:
            return i
    return len(rec.chunks) - 1


# -- 4. clean ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WarningRecord:
    category: type[Warning]
    message: str
    filename: str
    lineno: int
    thread: str = ""

    def describe(self) -> str:
        where = f" (thread {self.thread})" if self.thread and self.thread != "MainThread" else ""
        return f"{self.category.__name__}: {self.message} at {self.filename}:{self.lineno}{where}"


CLEAN_CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def is_allowed(w: WarningRecord, allow: Sequence[str | type[Warning]]) -> bool:
    """Allowed when it is a subclass of an allowed class, or a pattern is found (re.search) in
    'Category: message'."""
    text = f"{w.category.__name__}: {w.message}"
    for a in allow:
        if isinstance(a, type):
            if issubclass(w.category, a):
                return True
        elif re.search(a, text):
            return True
    return False


def check_clean(warns: Sequence[WarningRecord], allow: Sequence[str | type[Warning]]) -> list[str]:
    """Each deprecation-type warning not allowed, once per (category, text, file, line), with a count."""
    seen: dict[tuple[str, str, str, int], int] = {}
    first: dict[tuple[str, str, str, int], WarningRecord] = {}
    for w in warns:
        if not issubclass(w.category, CLEAN_CATEGORIES) or is_allowed(w, allow):
            continue
        key = (w.category.__name__, w.message, w.filename, w.lineno)
        seen[key] = seen.get(key, 0) + 1
        first.setdefault(key, w)
    return [first[k].describe() + (f" [x{n}]" if n > 1 else "") for k, n in seen.items()]


# -- 5. tidy -----------------------------------------------------------------------------------
def check_tidy(rec: Recording) -> list[str]:
    out: list[str] = []
    if rec.abandoned:
        out.append(f"{rec.label}: thread {rec.abandoned!r} abandoned by the watchdog, stuck in the engine")
    leaked = [t for t in rec.leaked_threads if t != rec.abandoned]
    if leaked:
        out.append(f"{rec.label}: thread(s) started by the call still alive after it: {', '.join(leaked)}")
    return out


# -- figures -----------------------------------------------------------------------------------
def rtf_rounds(recs: Sequence[Recording]) -> list[float]:
    """One RTF per measured round: total wall time / total audio seconds of that round's calls."""
    rounds: dict[int, list[Recording]] = {}
    for r in recs:
        if r.measured and r.outcome == "ok":
            rounds.setdefault(r.round, []).append(r)
    out = []
    for k in sorted(rounds):
        audio = sum(r.audio_s for r in rounds[k])
        if audio > 0:
            out.append(sum(r.wall_s for r in rounds[k]) / audio)
    return out

