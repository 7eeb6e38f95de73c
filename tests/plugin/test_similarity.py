"""--cosy-sim's loader and scoring: a tiny random-weight WavLMForXVector built here (no download), and the
directories that are not a speaker model named as such."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pytest_cosyvoice.judging.similarity import SpeakerModel, cosine, local_speaker_model
from tests.fixtures import build_xvector_dir

PROMPT = Path(__file__).resolve().parents[2] / "pytest_cosyvoice" / "data" / "prompt.wav"


@pytest.fixture(scope="module")
def xvector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return build_xvector_dir(tmp_path_factory.mktemp("wavlm-xvector"))


def test_same_audio_is_cosine_one_other_audio_less(xvector_dir: Path) -> None:
    model = local_speaker_model(xvector_dir)
    assert isinstance(model, SpeakerModel) and model.rate == 16000
    speech, rate = sf.read(PROMPT, dtype="float32")
    a = model.embed(speech, rate)
    assert a.dtype == np.float32 and a.shape == (16,)
    assert cosine(a, model.embed(speech, rate)) == pytest.approx(1.0, abs=1e-6)
    # The same speech at 24 kHz is resampled to the model's 16 kHz first: nearly the same embedding.
    from scipy.signal import resample_poly

    assert cosine(a, model.embed(resample_poly(speech, 3, 2), 24000)) > 0.99
    other = np.random.default_rng(0).normal(scale=0.1, size=speech.size).astype(np.float32)
    assert cosine(a, model.embed(other, rate)) < 0.99


def test_cosine() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="embeddings of 2 and 3 values"):
        cosine(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="norm 0.0"):
        cosine(np.zeros(2), np.ones(2))


def test_what_is_not_a_speaker_model_is_named(tmp_path: Path, xvector_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"speaker model '.*nowhere': no such directory; expected a local "
                                         r"transformers speaker-verification model"):
        local_speaker_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty': no config.json; expected"):
        local_speaker_model(empty)
    asr = tmp_path / "whisper"
    asr.mkdir()
    (asr / "config.json").write_text(json.dumps({"model_type": "whisper",
                                                 "architectures": ["WhisperForConditionalGeneration"]}))
    with pytest.raises(ValueError, match=r"names WhisperForConditionalGeneration, not a speaker-verification"):
        local_speaker_model(asr)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"config.json is not a model config"):
        local_speaker_model(broken)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((xvector_dir / "config.json").read_text())
    with pytest.raises(ValueError, match=r"no weights \(model.safetensors, pytorch_model.bin\)"):
        local_speaker_model(no_weights)
