"""`verdict.judge` is a pure function: a table of specs x recordings x warnings -> the failed checks.
No model, no pytest session: the recordings are built by hand."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from pytest_cosyvoice.judging import junit
from pytest_cosyvoice.judging.checks import Recording, WarningRecord
from pytest_cosyvoice.judging.specs import FirstChunkSpec, NoDeprecationsSpec, RtfSpec, StallTimeoutSpec, StreamingSpec
from pytest_cosyvoice.judging.verdict import Verdict, judge, spec_of

RATE = 24000
SPT = 960.0  # samples per token (v2: 25 tokens a second)


def rec(*, arrivals: tuple[float, ...] = (0.5, 0.6, 0.7), outcome: str = "ok", generated: int | None = 75,
        wall_s: float = 0.8, label: str = "stream 0", kind: str = "stream", round: int = 0,
        nan_in: int | None = None, leaked: tuple[str, ...] = ()) -> Recording:
    """Three 25-token chunks of one continuous sine (1 s each): no click, complete, on time."""
    t = np.arange(3 * 25 * int(SPT)) / RATE
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    chunks = list(np.split(x, 3))
    if nan_in is not None:
        chunks[nan_in] = chunks[nan_in].copy()
        chunks[nan_in][10] = np.nan
    return Recording(label=label, kind=kind, sample_rate=RATE, chunks=chunks, chunk_tokens=[25, 25, 25],
                     arrivals_s=list(arrivals), wall_s=wall_s, outcome=outcome, generated_tokens=generated,
                     samples_per_token=SPT, round=round, leaked_threads=list(leaked))


def warning(category: type[Warning] = DeprecationWarning, message: str = "old_api() is deprecated") -> WarningRecord:
    return WarningRecord(category, message, "x.py", 1, "MainThread")


STREAMING = StreamingSpec(prebuffer_ms=0, max_gap_ms=0)

# (specs, recordings, warnings, failed checks)
TABLE = [
    pytest.param((), [rec()], [], [], id="no-markers-good"),
    pytest.param((), [rec(outcome="StreamError", nan_in=1)], [warning()], [], id="no-markers-nothing-judged"),
    pytest.param((STREAMING,), [rec()], [], [], id="streaming-good"),
    pytest.param((STREAMING,), [rec(arrivals=(0.5, 3.0, 3.1))], [], ["gap-free"], id="late-chunk"),
    pytest.param((StreamingSpec(prebuffer_ms=3000),), [rec(arrivals=(0.5, 3.0, 3.1))], [], [], id="prebuffered"),
    pytest.param((STREAMING,), [rec(generated=80)], [], ["complete"], id="tokens-not-rendered"),
    pytest.param((STREAMING,), [rec(outcome="StreamError")], [], ["complete"], id="error"),
    pytest.param((STREAMING,), [rec(outcome="closed", generated=200)], [], [], id="closed-early"),
    pytest.param((STREAMING,), [rec(nan_in=1)], [], ["sound"], id="nan"),
    pytest.param((STREAMING,), [rec(leaked=("helper",))], [], ["tidy"], id="leaked-thread"),
    pytest.param((STREAMING,), [rec()], [warning(FutureWarning)], ["clean"], id="streaming-warning"),
    pytest.param((StreamingSpec(allow_warnings=("old_api",)),), [rec()], [warning()], [], id="allowed-by-marker"),
    pytest.param((NoDeprecationsSpec(),), [], [warning()], ["clean"], id="no-deprecations"),
    pytest.param((NoDeprecationsSpec(),), [], [warning(UserWarning)], [], id="not-a-deprecation"),
    pytest.param((NoDeprecationsSpec(allow=(DeprecationWarning,)),), [], [warning()], [], id="allowed-by-class"),
    pytest.param((RtfSpec(max=1.0),), [rec(wall_s=1.5)], [], [], id="rtf-within"),
    pytest.param((RtfSpec(max=0.4),), [rec(wall_s=1.5)], [], ["rtf"], id="rtf-over"),
    pytest.param((RtfSpec(),), [], [], ["rtf"], id="rtf-no-call"),
    pytest.param((FirstChunkSpec(max_ms=400),), [rec()], [], ["first_chunk"], id="first-chunk-late"),
    pytest.param((FirstChunkSpec(max_ms=600),), [rec()], [], [], id="first-chunk-in-time"),
    pytest.param((FirstChunkSpec(max_ms=600),), [rec(kind="synthesize")], [], ["first_chunk"],
                 id="first-chunk-no-stream"),
    pytest.param((StallTimeoutSpec(5),), [rec(outcome="StreamError")], [warning()], [],
                 id="stall-timeout-judges-nothing"),
    pytest.param((STREAMING, RtfSpec(max=0.4), FirstChunkSpec(max_ms=400)),
                 [rec(arrivals=(0.5, 3.0, 3.1), wall_s=1.5)], [warning()], ["clean", "gap-free", "first_chunk", "rtf"],
                 id="all-at-once"),
]


@pytest.mark.parametrize("specs, recordings, warns, failed", TABLE)
def test_judge(specs: tuple[object, ...], recordings: list[Recording], warns: list[WarningRecord],
               failed: list[str]) -> None:
    before = copy.deepcopy(recordings)
    verdict = judge(specs, recordings, warns)
    assert verdict.failed_checks == failed
    assert [line.split(":", 1)[0] for line in verdict.lines()] == [c for c, _ in verdict.problems]
    assert len(verdict.streams) == len(recordings)
    # Pure: the inputs are left as they were, and the same inputs give the same verdict.
    assert all(a.outcome == b.outcome and a.arrivals_s == b.arrivals_s and len(a.chunks) == len(b.chunks)
               for a, b in zip(recordings, before, strict=True))
    again = judge(specs, recordings, warns)
    assert again.problems == verdict.problems and again.rtf == verdict.rtf


def test_the_session_allow_list_counts() -> None:
    assert judge((NoDeprecationsSpec(),), [], [warning()], allowed_warnings=["old_api"]).problems == ()


def test_later_rounds_add_samples_but_judge_no_bound() -> None:
    specs = (RtfSpec(max=0.4), FirstChunkSpec(max_ms=100))
    main = judge(specs, [rec(wall_s=1.5)], [])
    later = judge(specs, [rec(wall_s=1.5, round=1)], [], round=1)
    assert main.failed_checks == ["first_chunk", "rtf"] and later.problems == ()
    assert later.rtf == pytest.approx((0.5,)) and later.first_chunk_ms == pytest.approx((500.0,))


def test_figures_per_round() -> None:
    v = judge((), [rec(round=0), rec(arrivals=(0.9, 1.0, 1.1), round=0, label="stream 1"),
                   rec(arrivals=(0.2, 0.3, 0.4), round=1, label="stream 2")], [])
    assert v.first_chunk_ms == pytest.approx((900.0, 200.0))
    assert len(v.rtf) == 2 and len(v.worst_gap_ms) == 2
    assert [s.failed for s in v.streams] == [False] * 3


def test_failed_streams_are_marked() -> None:
    v = judge((STREAMING,), [rec(), rec(nan_in=2, label="stream 1")], [])
    assert [s.failed for s in v.streams] == [False, True]
    assert v.streams[1].trace.label == "stream 1"


def test_spec_of_finds_a_spec_by_type() -> None:
    specs = (RtfSpec(max=2.0), STREAMING)
    assert spec_of(specs, StreamingSpec) is STREAMING and spec_of(specs, FirstChunkSpec) is None


def test_junit_properties_from_the_verdict() -> None:
    v = Verdict((), (), rtf=(0.5, 0.3, 0.4), first_chunk_ms=(500.0, 700.0), worst_gap_ms=(0.0, 12.345))
    assert junit.properties(v) == [("rtf", 0.4), ("first_chunk_ms", 600.0), ("worst_gap_ms", 12.3)]
    assert junit.properties(Verdict((), (), (), (), ())) == []

