"""The slow engine (`benchmarks.slow_engine`, the head of gate_truth's A/B slow levels): the Runtime
with a sleep of `COSY_SLOW` times each chunk's time after the chunk. Time is read through the clock
and sleep it is given, so these tests drive a virtual clock (advanced by the Runtime's own observer
calls) and check what it asked to sleep, not how long anything took."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.slow_engine import VARIABLE, SlowEngine, build, slow_share
from cosyvoice_runtime import InvalidInput, Runtime, StreamObserver, StreamStats
from cosyvoice_runtime.types import Chunk
from pytest_cosyvoice.engine import accepts

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

ROOT = Path(__file__).resolve().parents[2]
TEXT = "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."


@pytest.fixture(scope="module")
def runtime(tiny_v2_dir: Path) -> Runtime:
    import cosyvoice_runtime

    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def voice() -> dict[str, Any]:
    from pytest_cosyvoice.host import default_prompt

    p = default_prompt()
    return {"prompt_wav": str(p.wav), "prompt_text": p.text}


class Clock:
    """Virtual seconds: they pass only when the Runtime hands over a chunk (the chunk's cost, told by
    the observer), when the caller says so, or when the engine sleeps (as a real sleep would)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Costly(StreamObserver):
    """Chunk i costs `0.1 * (i + 1)` virtual seconds, spent just before the Runtime hands it over."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.chunks: list[Chunk] = []
        self.tokens = 0
        self.ended: StreamStats | None = None

    def cost(self, i: int) -> float:
        return 0.1 * (i + 1)

    def on_tokens(self, n_new: int, total: int) -> None:
        self.tokens = total

    def on_chunk(self, chunk: Chunk) -> None:
        self.clock.now += self.cost(len(self.chunks))
        self.chunks.append(chunk)

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        self.ended = stats


def test_each_chunk_is_followed_by_a_sleep_of_the_share_of_its_own_time(runtime: Runtime,
                                                                         voice: dict[str, Any]) -> None:
    clock = Clock()
    engine = SlowEngine(runtime, 0.5, clock=clock, sleep=clock.sleep)
    observer = Costly(clock)
    got = []
    for chunk in engine.stream(TEXT, observer=observer, **voice):
        got.append(chunk)
        clock.now += 7.0   # the caller's own time between chunks is not the engine's
    assert len(got) >= 3
    assert clock.slept == pytest.approx([0.5 * observer.cost(i) for i in range(len(got))])
    # The Runtime's chunks themselves, in order, and its observer calls: tokens and end.
    assert all(a is b for a, b in zip(got, observer.chunks, strict=True))
    assert observer.tokens == sum(c.tokens for c in got) > 0
    assert observer.ended is not None and observer.ended.chunks == len(got)


def test_synthesize_sleeps_the_share_of_the_whole_call(runtime: Runtime, voice: dict[str, Any]) -> None:
    clock = Clock()
    engine = SlowEngine(runtime, 0.25, clock=clock, sleep=clock.sleep)
    observer = Costly(clock)
    result = engine.synthesize(TEXT, observer=observer, **voice)
    assert len(clock.slept) == 1
    assert clock.slept[0] == pytest.approx(0.25 * sum(observer.cost(i) for i in range(len(observer.chunks))))
    assert result.chunks == observer.chunks and result.audio.size == sum(c.audio.size for c in result.chunks)


def test_share_zero_sleeps_never(runtime: Runtime, voice: dict[str, Any]) -> None:
    clock = Clock()
    engine = SlowEngine(runtime, 0.0, clock=clock, sleep=clock.sleep)
    assert list(engine.stream("Hello there.", observer=Costly(clock), **voice))
    engine.synthesize("Hello there.", **voice)
    assert clock.slept == []


def test_the_harness_keywords_are_named_and_reach_the_runtime(runtime: Runtime, voice: dict[str, Any]) -> None:
    engine = SlowEngine(runtime, 0.5)
    for method in (engine.stream, engine.synthesize):
        assert accepts(method, "observer") and accepts(method, "stall_timeout_s") and accepts(method, "seed")
    # The Runtime checks the per-call stall timeout at the call: it got the value.
    with pytest.raises(InvalidInput, match="stall_timeout_s"):
        engine.stream(TEXT, stall_timeout_s=-1.0, **voice)
    with pytest.raises(InvalidInput, match="stall_timeout_s"):
        engine.synthesize(TEXT, stall_timeout_s=-1.0, **voice)
    # The per-request seed too (an A/B pair seeds both sides per request only where both name it).
    with pytest.raises(InvalidInput, match="seed"):
        engine.stream(TEXT, seed=-1, **voice)
    with pytest.raises(InvalidInput, match="seed"):
        engine.synthesize(TEXT, seed=-1, **voice)
    # And the Runtime's own argument checks, at the call as from the Runtime.
    with pytest.raises(InvalidInput, match="speed"):
        engine.stream(TEXT, speed=1.5, **voice)
    assert (engine.version, engine.sample_rate, engine.speakers, engine.modes) == \
        (runtime.version, runtime.sample_rate, runtime.speakers, runtime.modes)


def test_a_stream_closed_early_releases_the_request(runtime: Runtime, voice: dict[str, Any]) -> None:
    clock = Clock()
    engine = SlowEngine(runtime, 0.5, clock=clock, sleep=clock.sleep)
    chunks = engine.stream(TEXT, **voice)
    next(chunks)
    assert engine.active_requests == 1
    chunks.close()    # type: ignore[attr-defined]  # a generator
    assert engine.active_requests == 0 and len(clock.slept) == 1


@pytest.mark.parametrize("raw", ["fast", "-0.1", "nan", "inf"])
def test_a_bad_share_is_refused_naming_the_variable_and_value(raw: str) -> None:
    with pytest.raises(ValueError, match=f"{VARIABLE}='{raw}'"):
        slow_share({VARIABLE: raw})


def test_the_share_comes_from_the_environment() -> None:
    assert slow_share({}) == 0.0 and slow_share({VARIABLE: " "}) == 0.0
    assert slow_share({VARIABLE: "0.05"}) == 0.05


INNER = '''
import pytest

TEXT = "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."


@pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
def test_streams_slowly(cosy_tts, cosy_prompt):
    engine = cosy_tts.engine
    assert type(engine).__name__ == "SlowEngine" and engine.share == 0.5
    chunks = list(cosy_tts.stream(TEXT, prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text))
    assert len(chunks) >= 3
    # Counted from the Runtime's observer calls through the wrapper (no foreign adapter).
    assert all(r.generated_tokens == r.tokens > 0 for r in cosy_tts.recordings)
    assert engine.active_requests == 0
'''


def test_the_plugin_runs_a_streaming_test_through_it(pytester: pytest.Pytester, warm_tiny: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_inner=INNER)
    pytester.syspathinsert(ROOT)   # `benchmarks.slow_engine` by name, as from the repository root
    monkeypatch.setenv(VARIABLE, "0.5")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-engine=benchmarks.slow_engine:build")
    result.assert_outcomes(passed=1)


def test_a_bad_share_stops_the_session_before_any_test(pytester: pytest.Pytester, warm_tiny: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_inner=INNER)
    pytester.syspathinsert(ROOT)
    monkeypatch.setenv(VARIABLE, "fast")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-engine=benchmarks.slow_engine:build")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*benchmarks.slow_engine:build*COSY_SLOW='fast' is not a number*"])


def test_build_reads_the_share_when_built(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "0.2")
    assert build(runtime).share == 0.2
