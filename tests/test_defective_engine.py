"""benchmarks/defective_engine.py: the speaking engine with issue 18's quality defects applied to the
chunks it emits (it drives no model component, so benchmarks/inject.py cannot reach it), and the
speaking engine's `seed=` (checked, then ignored: its output is deterministic)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the speaking engine needs espeak-ng (the quality extra)")

from benchmarks.defective_engine import CLICK, DEFECTS, JOIN_ZEROS_S, DefectiveEngine, build
from benchmarks.speaking_engine import SpeakingEngine
from cosyvoice_runtime import InvalidInput, Runtime

TEXT = "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."
SPEAKER = "tiny_speaker"    # the tiny model's one sft speaker (the speaking engine ignores the voice)


@pytest.fixture(scope="module")
def runtime(tiny_v2_dir: Path) -> Runtime:
    import cosyvoice_runtime

    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


@pytest.fixture(scope="module")
def clean(runtime: Runtime) -> list[np.ndarray]:
    chunks = [c.audio for c in SpeakingEngine(runtime).stream(TEXT, speaker=SPEAKER)]
    assert len(chunks) >= 3, "the text must give at least two joins"
    return chunks


def streamed(engine: SpeakingEngine, **kw: Any) -> list[np.ndarray]:
    return [c.audio for c in engine.stream(TEXT, speaker=SPEAKER, **kw)]


def test_seed_is_checked_and_changes_nothing(runtime: Runtime, clean: list[np.ndarray]) -> None:
    engine = SpeakingEngine(runtime)
    for seed in (0, 12345):
        got = streamed(engine, seed=seed)
        assert len(got) == len(clean) and all(np.array_equal(a, b) for a, b in zip(got, clean, strict=True))
    one, two = (engine.synthesize(TEXT, speaker=SPEAKER, seed=s).audio for s in (1, 2))
    assert np.array_equal(one, two)
    for bad in (-1, 2**63, 1.5, "7", True):
        with pytest.raises(InvalidInput, match=r"seed=.*expected None or a whole number"):
            engine.stream(TEXT, speaker=SPEAKER, seed=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match=r"seed=.*expected None or a whole number"):
            engine.synthesize(TEXT, speaker=SPEAKER, seed=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("defect", "db"), [("vocoder-noise-20", 20.0), ("vocoder-noise-30", 30.0)])
def test_noise_at_the_stated_level(runtime: Runtime, clean: list[np.ndarray], defect: str, db: float) -> None:
    got = streamed(DefectiveEngine(runtime, defect))
    assert [len(x) for x in got] == [len(x) for x in clean]
    for g, ref in zip(got, clean, strict=True):
        ref64 = ref.astype(np.float64)
        snr = 10 * np.log10(np.sum(ref64 ** 2) / np.sum((g - ref64) ** 2))
        assert abs(snr - db) < 1.0, f"noise {snr:.2f} dB below the chunk, stated {db}"


def test_joins_zeroed(runtime: Runtime, clean: list[np.ndarray]) -> None:
    got = streamed(DefectiveEngine(runtime, "joins-zeroed"))
    n = round(JOIN_ZEROS_S * runtime.sample_rate)
    assert [len(x) for x in got] == [len(x) for x in clean]
    for g, ref in zip(got[:-1], clean[:-1], strict=True):
        assert np.all(g[-n:] == 0.0) and np.count_nonzero(ref[-n:]) > n // 2
        assert np.array_equal(g[:-n], ref[:-n])
    assert np.array_equal(got[-1], clean[-1])    # the stream's end is no join


def test_joins_click(runtime: Runtime, clean: list[np.ndarray]) -> None:
    got = streamed(DefectiveEngine(runtime, "joins-click"))
    for g, ref in zip(got[:-1], clean[:-1], strict=True):
        step = g.astype(np.float64) - ref
        assert abs(abs(step[-1]) - CLICK) < 1e-6 and np.all(step[:-1] == 0.0)
    assert np.array_equal(got[-1], clean[-1])


def test_joins_defects_leave_a_synthesis_alone(runtime: Runtime) -> None:
    ref = SpeakingEngine(runtime).synthesize(TEXT, speaker=SPEAKER).audio
    for defect in ("joins-zeroed", "joins-click"):
        got = DefectiveEngine(runtime, defect).synthesize(TEXT, speaker=SPEAKER).audio
        assert np.array_equal(got, ref), "one chunk, no join"


def test_speaker_swapped_speaks_the_text_with_another_voice(runtime: Runtime, clean: list[np.ndarray]) -> None:
    engine = DefectiveEngine(runtime, "speaker-swapped")
    ref, got = np.concatenate(clean), engine.synthesize(TEXT, speaker=SPEAKER).audio
    assert not (got.shape == ref.shape and np.array_equal(got, ref))
    assert 0.75 < len(got) / len(ref) < 1.33, "the same words, about as long"
    assert np.array_equal(got, engine.synthesize(TEXT, speaker=SPEAKER).audio), "still deterministic"


def test_build_reads_cosy_inject(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cosyvoice.engine import build as build_engine

    monkeypatch.delenv("COSY_INJECT", raising=False)
    assert type(build(runtime)) is SpeakingEngine
    monkeypatch.setenv("COSY_INJECT", "defect:joins-click")
    engine = build_engine("benchmarks.defective_engine:build", runtime)   # through the plugin's loader
    assert isinstance(engine, DefectiveEngine) and engine.defect == "joins-click"


@pytest.mark.parametrize("spec", ["defect:flow-fp16", "defect:llm-top-k", "defect:nope", "slow:llm=0.1", "defect:"])
def test_build_refuses_what_does_not_apply_naming_what_does(runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
                                                            spec: str) -> None:
    monkeypatch.setenv("COSY_INJECT", spec)
    with pytest.raises(ValueError, match=", ".join(DEFECTS)):
        build(runtime)


def test_an_unknown_voice_variant_is_refused(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"variant='nobody': expected an espeak-ng voice variant"):
        SpeakingEngine(runtime, variant="nobody")
