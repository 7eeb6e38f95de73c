"""Hostile but realistic inputs through the public API on the embedded tiny models: each is refused
where it enters, with an error naming the value and what was expected (no traceback from torch,
numpy, threading or soundfile), and no generation runs without end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime

TIMEOUT_MSG = r"expected a positive number of seconds, finite and at most 86400"


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


# -- timeouts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -2.0, 1e12])
def test_load_refuses_bad_stall_timeout(tiny_v2_dir: Path, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"^stall_timeout_s={value!r}: {TIMEOUT_MSG}$"):
        cosyvoice_runtime.load(tiny_v2_dir, device="cpu", stall_timeout_s=value)


@pytest.mark.parametrize("name", ["stall_timeout_s", "join_timeout_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1])
def test_configure_refuses_bad_timeouts(rt: Runtime, name: str, value: float) -> None:
    before = rt.settings
    with pytest.raises(InvalidInput, match=rf"^{name}={value!r}: {TIMEOUT_MSG}$"):
        rt.configure(**{name: value})
    assert rt.settings == before


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.5, True])
def test_configure_refuses_bad_scale_factor(rt: Runtime, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"stream_scale_factor={value!r}: expected a finite number >= 1"):
        rt.configure(stream_scale_factor=value)


# -- prompt and source audio ---------------------------------------------------------------------------
def clip(voice: Path, tmp_path: Path, seconds: float, name: str = "clip.wav") -> Path:
    x, rate = sf.read(voice, dtype="float32")
    out = tmp_path / name
    sf.write(out, x[: round(rate * seconds)], rate)
    return out


def poisoned(voice: Path, tmp_path: Path, value: float) -> Path:
    x, rate = sf.read(voice, dtype="float32")
    x[rate // 2] = value  # one sample at 0.5 s
    out = tmp_path / "poisoned.wav"
    sf.write(out, x, rate, subtype="FLOAT")
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_prompt_with_non_finite_samples(rt: Runtime, voice: Path, tmp_path: Path, value: float) -> None:
    p = poisoned(voice, tmp_path, value)
    with pytest.raises(InvalidInput, match=r"^prompt_wav='.*poisoned.wav': 1 samples are NaN or infinite \(the first at "
                                           r"0.500 s\); expected finite audio samples$"):
        rt.stream("Hello.", prompt_wav=p, prompt_text="A prompt.")


def test_prompt_with_absurd_peak(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = poisoned(voice, tmp_path, 1e30)
    with pytest.raises(InvalidInput, match=r"prompt_wav='.*': peak sample 1e\+30; expected samples within \+-100"):
        rt.synthesize("Hello.", prompt_wav=p)


def test_source_with_nan_in_voice_conversion(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = poisoned(voice, tmp_path, float("nan"))
    with pytest.raises(InvalidInput, match=r"^source_wav='.*poisoned.wav': 1 samples are NaN or infinite"):
        rt.synthesize("", source_wav=p, prompt_wav=voice)


@pytest.mark.parametrize("seconds", [0.001, 0.02, 0.099])
def test_prompt_too_short(rt: Runtime, voice: Path, tmp_path: Path, seconds: float) -> None:
    p = clip(voice, tmp_path, seconds)
    ms = round(seconds * 1000)
    with pytest.raises(InvalidInput, match=rf"prompt_wav='.*clip.wav': {ms} ms long; prompt audio must be at least "
                                           r"100 ms \(the shortest the frontend can process\)"):
        rt.stream("Hello.", prompt_wav=p, prompt_text="A prompt.")


def test_source_too_short(rt: Runtime, voice: Path, tmp_path: Path) -> None:
    p = clip(voice, tmp_path, 0.02)
    with pytest.raises(InvalidInput, match=r"source_wav='.*': 20 ms long; prompt audio must be at least 100 ms"):
        rt.synthesize("", source_wav=p, prompt_wav=voice)


@pytest.mark.parametrize("version", [1, 2])
def test_shortest_prompt_is_processed(version: int, request: pytest.FixtureRequest, voice: Path, tmp_path: Path) -> None:
    model = cosyvoice_runtime.load(request.getfixturevalue(f"tiny_v{version}_dir"), device="cpu")
    p = clip(voice, tmp_path, 0.1)
    syn = model.synthesize("Hello there.", prompt_wav=p, prompt_text="Hi.")
    assert syn.audio.size > 0 and np.isfinite(syn.audio).all()


@pytest.mark.parametrize("value, kind", [(np.zeros(16000, np.float32), "ndarray"), (b"prompt.wav", "bytes"),
                                         (16000, "int")])
def test_prompt_that_is_not_a_path(rt: Runtime, value: object, kind: str) -> None:
    with pytest.raises(InvalidInput, match=rf"prompt_wav=.*: expected the path of an audio file \(str or os.PathLike\), "
                                           rf"got {kind}"):
        rt.stream("Hello.", prompt_wav=value)


def test_prompt_that_is_a_directory(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"prompt_wav='.*': is a directory; expected an audio file"):
        rt.stream("Hello.", prompt_wav=tmp_path)
