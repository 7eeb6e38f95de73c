"""The speaking engine (`benchmarks.speaking_engine`, espeak-ng behind the `Engine` protocol): the
project's engine for showing quality checks on real speech, since the embedded tiny model outputs
noise. It passes the plugin's streaming checks, it is heard as speech by an offline ASR (pocketsphinx
and its bundled en-us model, both from the `quality` extra) where the tiny model is not, it is
deterministic, and it refuses what the Runtime refuses, with the same words."""
from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.speaking_engine import SpeakingEngine, build
from cosyvoice_runtime import InvalidInput, Runtime, StreamObserver, StreamStats
from cosyvoice_runtime.types import Chunk

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

ROOT = Path(__file__).resolve().parents[2]
TEXT = "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."
NUMBERS = "One two three four five six seven eight nine ten."
NUMBER_WORDS = set(NUMBERS.lower().rstrip(".").split())


@pytest.fixture(scope="module")
def runtime(tiny_v2_dir: Path) -> Runtime:
    import cosyvoice_runtime

    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def engine(runtime: Runtime) -> SpeakingEngine:
    return build(runtime)


@pytest.fixture(scope="module")
def voice() -> dict[str, Any]:
    from pytest_cosyvoice.host import default_prompt

    p = default_prompt()
    return {"prompt_wav": str(p.wav), "prompt_text": p.text}


def heard(audio: np.ndarray, sample_rate: int) -> list[str]:
    """The words pocketsphinx's bundled en-us model hears in `audio` (it takes 16 kHz int16)."""
    from math import gcd

    from pocketsphinx import Decoder
    from scipy.signal import resample_poly

    g = gcd(16000, sample_rate)
    x = resample_poly(audio.astype(np.float64), 16000 // g, sample_rate // g)
    decoder = Decoder(loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.split() if hyp is not None else []


INNER = '''
import pytest

TEXT = "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."


@pytest.mark.streaming
def test_speaks(cosy_tts, cosy_prompt):
    assert type(cosy_tts.engine).__name__ == "SpeakingEngine"
    chunks = list(cosy_tts.stream(TEXT, prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text))
    assert len(chunks) >= 3  # the runtime's schedule: 25, 50, 100 tokens at 25 a second
    cosy_tts.synthesize(TEXT, prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text, speed=1.5)
    assert [r.outcome for r in cosy_tts.recordings] == ["ok", "ok"]
    # Counted from the engine's observer calls, compared with the chunks by the complete check.
    assert all(r.generated_tokens == r.tokens > 0 for r in cosy_tts.recordings)
'''


def test_the_plugin_judges_it_gap_free_complete_and_clean(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile(test_inner=INNER)
    # The inner session imports the factory by name, as `pytest suites --cosy-engine ...` does from the
    # repository root.
    pytester.syspathinsert(ROOT)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-engine=benchmarks.speaking_engine:build")
    result.assert_outcomes(passed=1)


def test_it_is_heard_as_speech_where_the_tiny_model_is_not(engine: SpeakingEngine, runtime: Runtime,
                                                           voice: dict[str, Any]) -> None:
    spoken = heard(engine.synthesize(NUMBERS, **voice).audio, engine.sample_rate)
    assert len(NUMBER_WORDS.intersection(spoken)) >= 2, spoken
    noise = heard(runtime.synthesize(NUMBERS, **voice).audio, runtime.sample_rate)
    assert not NUMBER_WORDS.intersection(noise), noise


def test_it_streams_the_runtimes_schedule_with_tokens_that_match_the_length(engine: SpeakingEngine,
                                                                             voice: dict[str, Any]) -> None:
    chunks = list(engine.stream(TEXT, **voice))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.tokens for c in chunks[:-1]] == [25, 50, 100][:len(chunks) - 1]
    assert all(c.audio.dtype == np.float32 and c.audio.ndim == 1 and c.sample_rate == 24000 for c in chunks)
    audio = np.concatenate([c.audio for c in chunks])
    assert abs(len(audio) - sum(c.tokens for c in chunks) * engine.samples_per_token) <= engine.samples_per_token / 2
    # Pauses carry a dither floor, not digital silence (which the sound check would call a dropout).
    assert np.count_nonzero(audio == 0) < 10 and np.abs(audio).max() <= 1.0


def test_speed_is_espeaks_rate_and_the_tokens_stay_those_of_speed_one(engine: SpeakingEngine,
                                                                      voice: dict[str, Any]) -> None:
    slow = engine.synthesize(TEXT, **voice)
    fast = engine.synthesize(TEXT, speed=2.0, **voice)
    assert len(fast.audio) < 0.6 * len(slow.audio)
    for syn, speed in ((slow, 1.0), (fast, 2.0)):
        assert len(syn.chunks) == 1 and syn.stats.chunks == 1
        assert syn.stats.tokens == syn.chunks[0].tokens
        assert abs(len(syn.audio) - syn.stats.tokens * engine.samples_per_token / speed) <= engine.samples_per_token


def test_voice_conversion_returns_the_source_recording(engine: SpeakingEngine, voice: dict[str, Any]) -> None:
    import soundfile as sf

    source = voice["prompt_wav"]
    seconds = sf.info(source).duration
    # The text is ignored in vc, as by the Runtime (the suites pass "").
    converted = engine.synthesize("", source_wav=source, prompt_wav=source)
    assert abs(len(converted.audio) - seconds * engine.sample_rate) <= 2
    assert converted.stats.tokens == round(len(converted.audio) / engine.samples_per_token)
    streamed = list(engine.stream("ignored", source_wav=source, prompt_wav=source))
    assert len(streamed) > 1 and np.array_equal(np.concatenate([c.audio for c in streamed]), converted.audio)


def test_the_same_text_gives_identical_audio(engine: SpeakingEngine, voice: dict[str, Any]) -> None:
    first = engine.synthesize(TEXT, **voice).audio
    streamed = np.concatenate([c.audio for c in engine.stream(TEXT, **voice)])
    other = engine.synthesize("Hello there.", **voice).audio
    # From other threads, at once: each request is its own espeak-ng process.
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(engine.synthesize(TEXT, **voice).audio))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for again in (streamed, *results, engine.synthesize(TEXT, **voice).audio):
        assert np.array_equal(first, again)
    assert not np.array_equal(first[:len(other)], other)


BAD: dict[str, dict[str, Any]] = {
    "no voice": dict(),
    "prompt_text alone": dict(prompt_text="words"),
    "empty transcript": dict(prompt_wav="VOICE", prompt_text=" "),
    "speaker on a model without speakers": dict(speaker="nobody"),
    "speaker not a str": dict(speaker=3),
    "speed out of range": dict(prompt_wav="VOICE", speed=3.0),
    "speed streamed": dict(prompt_wav="VOICE", speed=1.5),
    "observer": dict(prompt_wav="VOICE", observer=object()),
    "stall timeout": dict(prompt_wav="VOICE", stall_timeout_s=0),
    "text not a str": dict(prompt_wav="VOICE", text=42),
    "text too long": dict(prompt_wav="VOICE", text="word " * 1001),
    "text without words": dict(prompt_wav="VOICE", text=""),
    "iterator in sft mode": dict(speaker="nobody", text=iter(["a"])),
}


@pytest.mark.parametrize("call", ["stream", "synthesize"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_are_refused_as_the_runtime_refuses_them(engine: SpeakingEngine, runtime: Runtime,
                                                               voice: dict[str, Any], case: str, call: str) -> None:
    kwargs = {k: voice["prompt_wav"] if v == "VOICE" else v for k, v in BAD[case].items()}
    if call == "synthesize" and case == "speed streamed":
        pytest.skip("speed 1.5 is valid for synthesize")
    text = kwargs.pop("text", "Hello there.")
    messages = []
    for target in (runtime, engine):
        with pytest.raises(InvalidInput) as e:
            getattr(target, call)(text, **kwargs)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def bad_pieces() -> Iterator[Any]:
    """A text iterator whose second piece is not a str."""
    return iter(["Hello", 7])


def test_a_text_iterator_is_read_when_the_request_runs(engine: SpeakingEngine, voice: dict[str, Any]) -> None:
    read: list[str] = []

    def pieces() -> Iterator[str]:
        for p in ("Hello ", "there."):
            read.append(p)
            yield p

    stream = engine.stream(pieces(), prompt_wav=voice["prompt_wav"])
    assert read == []
    assert np.array_equal(np.concatenate([c.audio for c in stream]),
                          engine.synthesize("Hello there.", prompt_wav=voice["prompt_wav"]).audio)
    with pytest.raises(InvalidInput, match=r"^text iterator yielded int 7; expected str pieces$"):
        list(engine.stream(bad_pieces(), prompt_wav=voice["prompt_wav"]))


class Heard(StreamObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[int] = set()

    def on_tokens(self, n_new: int, total: int) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("tokens", (n_new, total)))

    def on_chunk(self, chunk: Chunk) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("chunk", chunk))

    def on_end(self, stats: StreamStats, error: BaseException | None) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("end", (stats, error)))


def test_the_observer_hears_tokens_chunks_and_the_end_in_the_iterating_thread(engine: SpeakingEngine,
                                                                              voice: dict[str, Any]) -> None:
    obs = Heard()
    stream = engine.stream(TEXT, observer=obs, **voice)
    assert obs.events == []  # nothing runs before the first next
    chunks = list(stream)
    kinds = [k for k, _ in obs.events]
    assert kinds == ["tokens", "chunk"] * len(chunks) + ["end"]
    assert [v for k, v in obs.events if k == "chunk"] == chunks
    totals = [v for k, v in obs.events if k == "tokens"]
    assert [n for n, _ in totals] == [c.tokens for c in chunks]
    assert [t for _, t in totals] == list(np.cumsum([c.tokens for c in chunks]))
    stats, error = obs.events[-1][1]
    assert error is None and stats.tokens == totals[-1][1] and stats.chunks == len(chunks)
    assert obs.threads == {threading.get_ident()}

    closed = Heard()
    stream = engine.stream(TEXT, observer=closed, **voice)
    next(stream)
    stream.close()  # type: ignore[attr-defined]  # a generator
    assert [k for k, _ in closed.events] == ["tokens", "chunk", "end"] and closed.events[-1][1][1] is None

    failed = Heard()
    with pytest.raises(InvalidInput):
        list(engine.stream(bad_pieces(), observer=failed, prompt_wav=voice["prompt_wav"]))
    assert [k for k, _ in failed.events] == ["end"] and isinstance(failed.events[0][1][1], InvalidInput)


def test_without_espeak_the_factory_says_what_to_install() -> None:
    # A child process without the package: this one's imports stay as they are.
    code = ("import sys; sys.modules['espeakng_loader'] = None\n"
            "from benchmarks.speaking_engine import find_espeak\n"
            "find_espeak()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "benchmarks.speaking_engine.EspeakMissing: the speaking engine needs espeak-ng from the espeakng-loader "
        "package, which is not installed: pip install 'pytest-cosyvoice[quality]' (in this repository: "
        "bash scripts/bootstrap.sh)")
