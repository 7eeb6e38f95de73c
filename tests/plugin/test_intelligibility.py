"""Intelligibility scoring (`pytest_cosyvoice.judging.intelligibility`, issue 18 item 4): the Seed-TTS-eval
normalisation, exact error rates on crafted pairs, the per-utterance mean (not the corpus WER) with the
utterances above 50 % counted apart, pocketsphinx hearing real espeak-ng speech better than noise, and
the refusals of a local ASR path that is not an ASR model directory."""
from __future__ import annotations

import importlib.util
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest

from pytest_cosyvoice.judging.intelligibility import (
    MissingPackage,
    PocketSphinx,
    Score,
    local_asr,
    normalise,
    score,
    utterance_error,
)

NUMBERS = "One two three four five six seven eight nine ten."


# -- normalisation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "lang", "expected"), [
    ("Hello, World! It's fine.", "en", "hello world it's fine"),
    # The typographic apostrophe is the same word; other punctuation is removed, not made a space.
    ("Don\u2019t stop \u2014 it\u2019s \u201cwell-known\u201d.", "en", "don't stop it's wellknown"),
    ("  Pay $5 + tax;\tthen   (maybe) leave...  ", "en", "pay 5 tax then maybe leave"),
    ("\u00bfQu\u00e9?", "en", "qu\u00e9"),
    # Chinese: full-width punctuation gone, one token per character, spaces ignored, no lower-casing.
    ("\u4f60\u597d\uff0c\u4e16\u754c\uff01", "zh", "\u4f60 \u597d \u4e16 \u754c"),
    ("\u6211 \u7231 AI\u3002\u300a\u4e66\u300b", "zh", "\u6211 \u7231 A I \u4e66"),
])
def test_normalise_strips_punctuation_but_the_apostrophe(text: str, lang: str, expected: str) -> None:
    assert normalise(text, lang) == expected


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lang='fr': expected one of en, zh"):
        normalise("Bonjour.", "fr")


# -- one utterance --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "hyp", "lang", "expected"), [
    ("The cat sat.", "the CAT sat", "en", 0.0),
    ("The cat sat on the mat.", "the cat sat on mat", "en", 1 / 6),            # one deletion
    ("a b c d", "a x c d e", "en", 2 / 4),                                      # substitution + insertion
    ("Good morning!", "could be warning", "en", 3 / 2),                         # insertions: above 1
    ("It's here.", "its here", "en", 1 / 2),                                    # the apostrophe counts
    ("Nothing heard.", "", "en", 1.0),
    ("\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002", "\u4eca\u5929 \u5929\u6c7d\u5f88\u597d", "zh", 1 / 6),  # CER
])
def test_utterance_error_is_wer_for_english_and_cer_for_chinese(ref: str, hyp: str, lang: str,
                                                                 expected: float) -> None:
    assert utterance_error(ref, hyp, lang) == pytest.approx(expected, abs=1e-12)


def test_a_reference_with_nothing_to_score_is_refused() -> None:
    with pytest.raises(ValueError, match=r"reference '\.\.\.!' has no words left to score"):
        utterance_error("...!", "anything", "en")


# -- a set ------------------------------------------------------------------------------------------------------

SET = [
    ("one two three four five six seven eight nine ten", "one two three four five six seven eight nine ten"),
    ("Hello there.", "yellow there"),        # 0.5: at the line, not above it
    ("Good morning!", "could be warning"),   # 1.5
]


def test_the_set_score_is_the_mean_of_per_utterance_errors_not_the_corpus_wer() -> None:
    s = score(SET, "en")
    assert s.mean == pytest.approx(2 / 3)
    assert (s.over_half, s.n) == (1, 3)   # 0.5 is at the line, not above it
    # The corpus WER weighs the long exact utterance more: 4 errors in 14 words.
    corpus = jiwer.wer([normalise(r, "en") for r, _ in SET], [normalise(h, "en") for _, h in SET])
    assert corpus == pytest.approx(4 / 14)
    assert abs(s.mean - corpus) > 0.3


def test_over_half_counts_each_utterance_above_fifty_percent() -> None:
    pairs = [("a b c d", "a b c d"), ("a b c d", "a x y d"), ("a b c d", "a x y z"), ("a b", "")]
    assert score(pairs, "en") == Score(mean=(0 + 0.5 + 0.75 + 1) / 4, over_half=2, n=4)   # exact in binary


def test_a_score_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="score of no utterances"):
        score([], "en")


# -- pocketsphinx on real speech --------------------------------------------------------------------------------

def espeak(text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by the speaking engine's espeak-ng worker (benchmarks/espeak_worker.py, the process
    `SpeakingEngine.speak` runs; no model needed): float samples and their rate."""
    from benchmarks.speaking_engine import WORDS_PER_MINUTE, WORKER, find_espeak

    library, data = find_espeak()
    done = subprocess.run([sys.executable, "-I", str(WORKER), library, data, "en-us", str(WORDS_PER_MINUTE)],
                          input=text.encode("utf-8"), capture_output=True, timeout=60, check=True)
    (rate,) = struct.unpack("<i", done.stdout[:4])
    return np.frombuffer(done.stdout[4:], dtype="<i2") / 32768.0, rate


def test_pocketsphinx_hears_speech_clearly_better_than_noise() -> None:
    speech, rate = espeak(NUMBERS)
    rng = np.random.default_rng(18)
    rms = float(np.sqrt(np.mean(speech ** 2)))
    noise = rng.normal(0.0, rms, speech.size)
    noisy = speech + rng.normal(0.0, rms * 10 ** (10 / 20), speech.size)   # speech at -10 dB SNR
    asr = PocketSphinx()
    heard = {name: asr.transcribe(x, rate) for name, x in (("clean", speech), ("noise", noise), ("noisy", noisy))}
    errors = {name: utterance_error(NUMBERS, text, "en") for name, text in heard.items()}
    # Weak (about 60 % here: it is for testing the path), but it hears the numbers.
    assert errors["clean"] <= 0.7, heard
    assert errors["noise"] >= errors["clean"] + 0.3, heard
    assert errors["noisy"] >= errors["clean"] + 0.3, heard


def test_pocketsphinx_refuses_audio_that_is_not_mono() -> None:
    with pytest.raises(ValueError, match=r"audio of shape \(2, 100\): expected 1-D"):
        PocketSphinx().transcribe(np.zeros((2, 100)), 16000)


# -- local model directories: the refusals (no ASR weights exist here) ------------------------------------------

EXPECTED = "expected a local ASR model directory"


def test_local_asr_refuses_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "whisper-large-v3"
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{path}': no such directory; {EXPECTED}")):
        local_asr(path)


def test_local_asr_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{path}': not a directory; {EXPECTED}")):
        local_asr(path)


def test_local_asr_refuses_a_directory_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{tmp_path}': no config.json; {EXPECTED}")):
        local_asr(tmp_path)


def test_local_asr_refuses_a_config_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("model_type: whisper\n")
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{tmp_path}': config.json is not a model config")):
        local_asr(tmp_path)


def test_local_asr_refuses_a_model_that_is_not_asr(tmp_path: Path) -> None:
    # A tiny text model's directory: config and weights as `from_pretrained` expects, but no speech head.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"],
                                                      "hidden_size": 8, "num_hidden_layers": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{tmp_path}': config.json is of a 'bert' model, which "
                                                   f"transformers has no speech-recognition head for; {EXPECTED}")):
        local_asr(tmp_path)


def test_local_asr_refuses_an_asr_config_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (tmp_path / "preprocessor_config.json").write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"ASR model '{tmp_path}': no weights (model.safetensors, ")):
        local_asr(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("funasr") is not None, reason="funasr is installed")
def test_a_paraformer_directory_without_funasr_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model: Paraformer\n")
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(MissingPackage, match="needs funasr, which is not installed: pip install funasr"):
        local_asr(tmp_path, lang="zh")
