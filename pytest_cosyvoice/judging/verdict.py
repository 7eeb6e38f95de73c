"""The verdict of one test: a pure function of its marker specs, what `cosy_tts` recorded and the
warnings captured during its call. No pytest, no I/O, no session state: the session captures, calls
`judge`, then records the figures and fails the test with `Verdict.lines()`."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..stats import median
from . import checks
from .checks import Recording, WarningRecord
from .specs import FirstChunkSpec, NoDeprecationsSpec, RtfSpec, StreamingSpec

if TYPE_CHECKING:
    from .measurements import StreamTrace

S = TypeVar("S")
Pattern = str | type[Warning]


def spec_of(specs: Iterable[object], cls: type[S]) -> S | None:
    """The spec of type `cls` among a test's specs (at most one per marker), or None."""
    return next((s for s in specs if isinstance(s, cls)), None)


def checks_warnings(specs: Iterable[object]) -> bool:
    """Whether `judge` checks a test's warnings (it has a `streaming` or `no_deprecations` marker):
    the session captures them only then."""
    specs = tuple(specs)
    return spec_of(specs, StreamingSpec) is not None or spec_of(specs, NoDeprecationsSpec) is not None


@dataclass(frozen=True)
class StreamVerdict:
    """One recording, judged: its trace for the report and whether it failed a stream check."""

    recording: Recording
    trace: StreamTrace
    failed: bool
    worst_gap_ms: float


@dataclass(frozen=True)
class Verdict:
    problems: tuple[tuple[str, str], ...]   # (check, text), in the order found
    streams: tuple[StreamVerdict, ...]      # one per recording, in call order
    rtf: tuple[float, ...]                  # one per measured round (checks.rtf_rounds)
    first_chunk_ms: tuple[float, ...]       # per round with a stream: its slowest first chunk
    worst_gap_ms: tuple[float, ...]         # per round with a stream: its worst playback stall

    @property
    def failed_checks(self) -> list[str]:
        """The checks that failed: the five stream checks first, then the others, each group by name."""
        return sorted({c for c, _ in self.problems}, key=lambda c: (c not in checks.CHECKS, c))

    def lines(self) -> list[str]:
        return [f"{check}: {text}" for check, text in self.problems]


def judge(specs: Iterable[object], recordings: Sequence[Recording], warnings: Sequence[WarningRecord], *,
          allowed_warnings: Sequence[Pattern] = (), round: int = 0) -> Verdict:
    """Judges a test. `specs`: its bound marker specs (found by type); `allowed_warnings`: the session's
    (ini/option) allow list; `round`: 0 for the main pass, k for the (k+1)-th RTF round, whose rtf and
    first_chunk bounds are not judged (later rounds only add samples for the drift rule)."""
    specs = tuple(specs)
    streaming = spec_of(specs, StreamingSpec)
    rtf = spec_of(specs, RtfSpec)
    first_chunk = spec_of(specs, FirstChunkSpec)
    no_deprecations = spec_of(specs, NoDeprecationsSpec)
    problems: list[tuple[str, str]] = []

    judged: list[StreamVerdict] = []
    for rec in recordings:
        pb, gap_p = checks.check_gap_free(rec, streaming.prebuffer_ms if streaming else 0.0,
                                          streaming.max_gap_ms if streaming else float("inf"))
        clicks, sound_p = checks.check_sound(rec, streaming.max_click_ratio if streaming else float("inf"))
        mine: list[tuple[str, str]] = []
        if streaming:
            mine += [(checks.GAP_FREE, p) for p in gap_p]
            mine += [(checks.COMPLETE, p) for p in checks.check_complete(rec)]
            mine += [(checks.SOUND, p) for p in sound_p]
            mine += [(checks.TIDY, p) for p in checks.check_tidy(rec)]
        problems += mine
        judged.append(StreamVerdict(rec, rec.to_trace(clicks), bool(mine), pb.worst_stall_s * 1000.0))

    if checks_warnings(specs):
        allow = [*allowed_warnings, *(streaming.allow_warnings if streaming else ()),
                 *(no_deprecations.allow if no_deprecations else ())]
        problems += [(checks.CLEAN, p) for p in checks.check_clean(warnings, allow)]

    rounds = checks.rtf_rounds(recordings)
    if rtf is not None and not round:
        if not rounds:
            problems.append(("rtf", "the test made no complete cosy_tts call to time"))
        elif median(rounds) > rtf.max:
            problems.append(("rtf", f"real-time factor {median(rounds):.3f} > max {rtf.max:g} "
                                    f"(rounds: {', '.join(f'{r:.3f}' for r in rounds)}; wall time / audio seconds "
                                    f"after {rtf.warmup} warm-up run(s))"))
    streams = [s for s in judged if s.recording.kind == "stream" and s.recording.arrivals_s]
    if first_chunk is not None and not round:
        if not streams:
            problems.append(("first_chunk", "the test made no cosy_tts.stream call that produced a chunk"))
        for s in streams:
            ms = s.recording.arrivals_s[0] * 1000.0
            if ms > first_chunk.max_ms:
                problems.append(("first_chunk", f"{s.recording.label}: first chunk after {ms:.0f} ms > max_ms "
                                                f"{first_chunk.max_ms:g}"))

    first: list[float] = []
    worst: list[float] = []
    for k in sorted({s.recording.round for s in streams}):
        in_round = [s for s in streams if s.recording.round == k]
        first.append(max(s.recording.arrivals_s[0] * 1000.0 for s in in_round))
        worst.append(max(s.worst_gap_ms for s in in_round))
    return Verdict(tuple(problems), tuple(judged), tuple(rounds), tuple(first), tuple(worst))
