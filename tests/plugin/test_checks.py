"""The pure checks of pytest_cosyvoice.judging.checks on synthetic recordings (no model, no pytester)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pytest_cosyvoice.host import DATA_DIR
from pytest_cosyvoice.judging import checks
from pytest_cosyvoice.judging.checks import Recording, WarningRecord
from pytest_cosyvoice.judging.specs import DEFAULT_MAX_CLICK_RATIO
from pytest_cosyvoice.stats import median

SR = 24000
SPT = 960.0  # v2: 24000 / 25 tokens per second


def noise(n: int, seed: int = 0, scale: float = 0.05) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def rec(chunks: list[np.ndarray], *, arrivals: list[float] | None = None, tokens: list[int] | None = None,
        **kw: object) -> Recording:
    r = Recording(label="stream 0", kind="stream", sample_rate=SR, samples_per_token=SPT, **kw)  # type: ignore[arg-type]
    r.chunks = chunks
    r.arrivals_s = arrivals if arrivals is not None else [0.1 * i for i in range(len(chunks))]
    r.chunk_tokens = tokens if tokens is not None else [round(len(c) / SPT) for c in chunks]
    return r


def split(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(x, np.cumsum(sizes)[:-1])


# -- gap-free ----------------------------------------------------------------------------------
def test_gap_free_passes_a_stream_faster_than_real_time() -> None:
    r = rec([noise(24000, i) for i in range(3)], arrivals=[0.3, 0.8, 1.5])
    pb, problems = checks.check_gap_free(r, prebuffer_ms=0, max_gap_ms=0)
    assert problems == [] and pb.worst_chunk is None


def test_gap_free_names_stall_chunk_needed_prebuffer_and_first_chunk() -> None:
    # chunk 1 is due at 1.3 s (0.3 + 1 s of audio) but arrives at 2.0 s.
    r = rec([noise(24000, i) for i in range(3)], arrivals=[0.3, 2.0, 2.1])
    _, problems = checks.check_gap_free(r, prebuffer_ms=0, max_gap_ms=100)
    assert problems == ["stream 0: playback stalled 700 ms at chunk 1 of 3 (max_gap_ms=100, prebuffer_ms=0); "
                        "a prebuffer of 700 ms would have been needed; first chunk after 300 ms"]
    assert checks.check_gap_free(r, prebuffer_ms=700, max_gap_ms=0)[1] == []
    assert checks.check_gap_free(r, prebuffer_ms=0, max_gap_ms=700)[1] == []


# -- complete ----------------------------------------------------------------------------------
def test_complete_passes_when_samples_match_tokens() -> None:
    r = rec([noise(25 * 960), noise(50 * 960, 1)], tokens=[25, 50], generated_tokens=75)
    assert checks.check_complete(r) == []


def test_complete_tolerates_v1_mel_rounding_but_not_a_missing_hop() -> None:
    ok = rec([noise(int(0.98 * 100 * 960))], tokens=[100])
    assert checks.check_complete(ok) == []
    short = rec([noise(75 * 960)], tokens=[100])
    (p,) = checks.check_complete(short)
    assert "72000 samples (3.000 s) for 100 tokens; expected 96000" in p


def test_complete_accounts_for_speed() -> None:
    r = rec([noise(50 * 960)], tokens=[100], speed=2.0)
    assert checks.check_complete(r) == []


def test_complete_fails_on_error_outcome_and_thread_death() -> None:
    r = rec([noise(960 * 25)], tokens=[25], outcome="StreamError", error="LLM failed after 25 tokens")
    r.thread_errors = ["Thread-3 (llm_job): RuntimeError: boom"]
    assert checks.check_complete(r) == [
        "stream 0: ended with StreamError after 1 chunk(s): LLM failed after 25 tokens",
        "stream 0: a thread died during the call: Thread-3 (llm_job): RuntimeError: boom"]


def test_complete_fails_when_generated_tokens_were_not_rendered() -> None:
    r = rec([noise(25 * 960)], tokens=[25], generated_tokens=40)
    assert checks.check_complete(r) == ["stream 0: the LLM generated 40 tokens but the chunks cover 25"]


def test_complete_skips_a_stream_the_test_closed() -> None:
    assert checks.check_complete(rec([noise(960)], tokens=[25], outcome="closed")) == []


# -- sound -------------------------------------------------------------------------------------
def test_sound_passes_noise_split_anywhere() -> None:
    x = noise(SR * 2)
    clicks, problems = checks.check_sound(rec(split(x, [12345, 20000, 15655])), DEFAULT_MAX_CLICK_RATIO)
    assert clicks == [] and problems == []


def test_sound_never_calls_real_speech_a_click() -> None:
    x, sr = sf.read(DATA_DIR / "prompt.wav", dtype="float32")
    ratios = [checks.join_click_ratio(x, j, sr) for j in range(100, len(x) - 100, 7)]
    assert max(ratios) < DEFAULT_MAX_CLICK_RATIO / 1.5


@pytest.mark.parametrize("kind", ["step", "decaying-step", "spike-after", "spike-before"])
def test_sound_finds_a_spliced_click(kind: str) -> None:
    x = noise(SR, scale=0.03)
    j = 9000
    if kind == "step":
        x[j:] += 0.4
    elif kind == "decaying-step":  # what a join without its cross-fade sounds like
        x[j:] += 0.4 * np.exp(-np.arange(SR - j) / (0.002 * SR))
    elif kind == "spike-after":
        x[j] = 0.8
    else:
        x[j - 1] = 0.8
    clicks, problems = checks.check_sound(rec(split(x, [j, SR - j])), DEFAULT_MAX_CLICK_RATIO)
    assert clicks == [1]
    assert problems[0].startswith("stream 0: click at the join into chunk 1 (sample 9000, 0.375 s): jump ")


def test_sound_names_nan_inf_range_and_empty_chunks() -> None:
    a, b, c = noise(1000), noise(1000, 1), noise(1000, 2)
    b[10] = np.nan
    b[20] = np.inf
    c[5] = 1.5
    _, problems = checks.check_sound(rec([a, b, np.zeros(0, np.float32), c]), DEFAULT_MAX_CLICK_RATIO)
    assert problems == [
        "stream 0: chunk 1 has 2 non-finite sample(s) (NaN 1, Inf 1) from sample 10",
        "stream 0: chunk 2 is empty",
        "stream 0: chunk 3 has 1 sample(s) beyond [-1, 1] (peak 1.500)",
    ]


def test_sound_zero_runs_inside_speech_only() -> None:
    x = noise(SR)
    x[:2400] = 0.0          # 100 ms leading silence: allowed
    x[-2400:] = 0.0         # trailing: allowed
    x[12000:12000 + 480] = 0.0   # 20 ms: allowed (limit is "longer than 20 ms")
    assert checks.check_sound(rec([x]), DEFAULT_MAX_CLICK_RATIO)[1] == []
    x[6000:6000 + 600] = 0.0     # 25 ms inside
    assert checks.check_sound(rec([x]), DEFAULT_MAX_CLICK_RATIO)[1] == [
        "stream 0: 25 ms of exact zeros inside the speech at 0.250 s (chunk 0; limit 20 ms)"]


# -- clean -------------------------------------------------------------------------------------
W = [
    WarningRecord(FutureWarning, "`torch.cuda.amp.autocast(args...)` is deprecated", "model.py", 104, "Thread-1"),
    WarningRecord(FutureWarning, "`torch.cuda.amp.autocast(args...)` is deprecated", "model.py", 104, "Thread-2"),
    WarningRecord(DeprecationWarning, "__array_wrap__ must accept context", "common.py", 148),
    WarningRecord(UserWarning, "not a deprecation", "x.py", 1),
]


def test_clean_lists_each_warning_once_with_count_and_location() -> None:
    assert checks.check_clean(W, allow=()) == [
        "FutureWarning: `torch.cuda.amp.autocast(args...)` is deprecated at model.py:104 (thread Thread-1) [x2]",
        "DeprecationWarning: __array_wrap__ must accept context at common.py:148",
    ]


def test_clean_allows_by_pattern_or_class() -> None:
    assert checks.check_clean(W, allow=[r"autocast", DeprecationWarning]) == []
    assert len(checks.check_clean(W, allow=[r"^FutureWarning: "])) == 1


# -- tidy, rtf ---------------------------------------------------------------------------------
def test_tidy_names_leaked_and_abandoned_threads() -> None:
    r = rec([noise(960)])
    assert checks.check_tidy(r) == []
    r.abandoned = "cosy-tts-reader-3"
    r.leaked_threads = ["cosy-tts-reader-3", "leaky"]
    assert checks.check_tidy(r) == [
        "stream 0: thread 'cosy-tts-reader-3' abandoned by the watchdog, stuck in the engine",
        "stream 0: thread(s) started by the call still alive after it: leaky"]


def test_rtf_rounds_sum_wall_and_audio_per_round() -> None:
    a = rec([noise(SR)], wall_s=0.5)                 # 1 s audio
    b = rec([noise(SR * 3)], wall_s=1.5)             # 3 s audio
    c = rec([noise(SR)], wall_s=2.0, round=1)
    warm = rec([noise(SR)], wall_s=9.0, measured=False)
    assert checks.rtf_rounds([a, b, c, warm]) == [pytest.approx(0.5), pytest.approx(2.0)]
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0]) == 1.5
