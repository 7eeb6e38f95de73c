"""Intelligibility: what an ASR model hears in the synthesised audio, scored against the text asked for
(issue 18, item 4): the quality gate's `wer`, with `--cosy-asr PATH|pocketsphinx` (the option checks a
directory with `check_asr_dir` before any test and turns its ValueError into the exit-4 usage error).

Scoring follows Seed-TTS-eval, the benchmark CosyVoice publishes its WER/CER on, so figures taken with
the same recogniser are comparable with published ones:

- punctuation is stripped (removed, not replaced by a space), except the apostrophe `'`; a typographic
  apostrophe (U+2019) is read as `'` first, so "don't" and "don’t" are the same word (Seed-TTS-eval
  strips U+2019, so it would score them as different words);
- English is lower-cased and scored per word (WER), Chinese per character (CER, spaces ignored);
- a set's figure is the **mean of the per-utterance error rates** (not the corpus WER, which weighs long
  utterances more), and the utterances above 50 % are counted apart (a sentence the recogniser lost).

Seed-TTS-eval converts Paraformer's Chinese output to simplified characters (zh-cn) before scoring;
no package for that conversion is installed here, so it is not done: a recogniser that writes
traditional characters scores them as errors.

Recognisers (`Recogniser`: `transcribe(audio, sample_rate) -> str`):

- `PocketSphinx`: pocketsphinx and the en-us model its wheel bundles (the `quality` extra). Offline and
  weak (about 60 % WER on clearly spoken espeak-ng numbers): it exists to test this path on any machine,
  never to judge a model;
- `local_asr(path)`: a local model directory, never a download - a transformers ASR model (Whisper for
  English, the documented choice) or, for Chinese, a FunASR Paraformer directory (needs `funasr`).

This module imports no pytest and nothing of the plugin; its heavy imports (jiwer, pocketsphinx,
transformers, funasr) happen when first used, with an install hint when missing.
"""
from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cosyvoice_runtime.audio import resample

__all__ = ["LANGUAGES", "POCKETSPHINX", "MissingPackage", "PocketSphinx", "Recogniser", "Score", "check_asr_dir",
           "local_asr", "normalise", "score", "utterance_error"]

LANGUAGES = ("en", "zh")
POCKETSPHINX = "pocketsphinx"   # --cosy-asr's name for the recogniser the pocketsphinx wheel bundles
INSTALL = "pip install 'pytest-cosyvoice[quality]' (in this repository: bash scripts/bootstrap.sh)"
# Above this error rate an utterance is counted apart (Seed-TTS-eval's "bad case" line).
OVER = 0.5
# Python's string.punctuation holds ASCII symbols (`$+<=>^|~` and the backtick) that Unicode files under
# symbols, not punctuation; Seed-TTS-eval strips them too.
_ASCII_SYMBOLS = frozenset(string.punctuation) - {"'"}
_TYPOGRAPHIC_APOSTROPHE = "\u2019"


class MissingPackage(ImportError):
    """A package a recogniser or the scoring needs is not installed; the message says what to install."""


def _jiwer() -> Any:
    try:
        import jiwer
    except ImportError:
        raise MissingPackage(f"intelligibility scoring needs jiwer, which is not installed: {INSTALL}") from None
    return jiwer


def _check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"lang={lang!r}: expected one of {', '.join(LANGUAGES)}")
    return lang


def _is_stripped(ch: str) -> bool:
    return ch != "'" and (ch in _ASCII_SYMBOLS or unicodedata.category(ch).startswith("P"))


def normalise(text: str, lang: str) -> str:
    """`text` as Seed-TTS-eval scores it: punctuation except `'` removed, whitespace collapsed; English
    lower-cased, Chinese as its characters separated by single spaces (so a word error rate over the
    result is the character error rate)."""
    _check_lang(lang)
    kept = "".join(ch for ch in text.replace(_TYPOGRAPHIC_APOSTROPHE, "'") if not _is_stripped(ch))
    if lang == "en":
        return " ".join(kept.lower().split())
    return " ".join(ch for ch in kept if not ch.isspace())


def utterance_error(ref: str, hyp: str, lang: str) -> float:
    """One utterance's error rate: WER for English, CER for Chinese, after `normalise`. 0 is exact;
    it exceeds 1 when the recogniser inserts more than the reference holds. A reference with nothing
    left to score (empty, or punctuation only) is a ValueError: its rate is undefined."""
    truth, heard = normalise(ref, lang), normalise(hyp, lang)
    if not truth:
        raise ValueError(f"reference {ref!r} has no words left to score after normalisation")
    if not heard:  # nothing heard: every word deleted (said here, not left to how jiwer treats "")
        return 1.0
    return float(_jiwer().wer(truth, heard))


@dataclass(frozen=True)
class Score:
    """A set of utterances scored the Seed-TTS-eval way."""

    mean: float       # mean of the per-utterance error rates (WER or CER)
    over_half: int    # how many utterances had an error rate above 50 %
    n: int            # utterances scored


def score(pairs: Iterable[tuple[str, str]], lang: str) -> Score:
    """(reference, hypothesis) pairs of one language -> their `Score`. One language per call: a mean
    over WERs and CERs together would mix two units, and Seed-TTS-eval reports them apart."""
    return summarise([utterance_error(ref, hyp, lang) for ref, hyp in pairs])


def summarise(errors: Sequence[float]) -> Score:
    """Per-utterance error rates (of one unit: WER or CER) -> their `Score`."""
    if not errors:
        raise ValueError("score of no utterances")
    return Score(mean=sum(errors) / len(errors), over_half=sum(e > OVER for e in errors), n=len(errors))


class Recogniser(Protocol):
    """Speech -> text. `audio` is 1-D float within +-1 at `sample_rate`; the recogniser resamples."""

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str: ...


def _mono_at(audio: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """`audio` as 1-D float32 at `rate`."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio of shape {x.shape}: expected 1-D (mono) samples")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r}: expected a positive rate in Hz")
    out: np.ndarray = resample(x, sample_rate, rate).astype(np.float32)    # the runtime's resampler
    return out


class PocketSphinx:
    """pocketsphinx with the en-us model its wheel bundles: offline, English only, and weak - for testing
    the scoring path where no real ASR model is available. One decoder per instance; not thread-safe
    (use one instance per thread)."""

    RATE = 16000  # the bundled model's rate; it takes 16-bit samples

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise MissingPackage(f"the PocketSphinx recogniser needs pocketsphinx, which is not installed: "
                                 f"{INSTALL}") from None
        self._decoder = Decoder(loglevel="FATAL")

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        x = _mono_at(audio, sample_rate, self.RATE)
        pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return str(hyp.hypstr) if hyp is not None else ""


# -- local model directories ---------------------------------------------------------------------------------

# What `from_pretrained` loads a transformers model's weights from (single file or sharded index).
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# A FunASR model directory (as ModelScope ships Paraformer): its config and its weights.
_FUNASR = ("config.yaml", "model.pt")
_EXPECTED = ("a local ASR model directory: a transformers speech-recognition model (config.json of a "
             "speech-to-text or CTC model, its weights and preprocessor_config.json; Whisper for English) or a "
             "FunASR Paraformer directory (config.yaml and model.pt)")


class TransformersAsr:
    """A transformers speech-recognition pipeline over a local model directory (see `local_asr`)."""

    def __init__(self, path: Path, model_type: str, *, lang: str, device: str) -> None:
        try:
            from transformers import pipeline
        except ImportError:
            raise MissingPackage(f"the ASR model at {str(path)!r} needs transformers, which is not installed: "
                                 "pip install 'pytest-cosyvoice[components]'") from None
        self.path, self.whisper = path, model_type == "whisper"
        self.lang = _check_lang(lang)
        try:
            # A directory path is read as it is; local_files_only makes sure a file missing there is an
            # error rather than a download.
            self._pipe = pipeline("automatic-speech-recognition", model=str(path), device=device,
                                  model_kwargs={"local_files_only": True})
        except (OSError, ValueError) as e:
            raise ValueError(f"ASR model {str(path)!r}: transformers cannot load it ({e}); expected "
                             f"{_EXPECTED}") from None
        self.rate = int(self._pipe.feature_extractor.sampling_rate)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        x = _mono_at(audio, sample_rate, self.rate)
        kwargs: dict[str, Any] = {}
        if self.whisper:
            # Whisper guesses the language otherwise (and may translate); over 30 s it needs timestamps
            # for transformers' sequential long-form decoding.
            kwargs["generate_kwargs"] = {"language": "english" if self.lang == "en" else "chinese",
                                         "task": "transcribe"}
            kwargs["return_timestamps"] = len(x) > 30 * self.rate
        out = self._pipe({"raw": x, "sampling_rate": self.rate}, **kwargs)
        return str(out["text"]).strip()


class FunAsrParaformer:
    """A FunASR model directory (Paraformer-zh, as Seed-TTS-eval scores Chinese), through funasr."""

    RATE = 16000

    def __init__(self, path: Path, *, device: str) -> None:
        try:
            from funasr import AutoModel
        except ImportError:
            raise MissingPackage(f"the Paraformer model at {str(path)!r} needs funasr, which is not installed: "
                                 "pip install funasr") from None
        self.path = path
        # disable_update: funasr otherwise asks the network for a newer version at load.
        self._model = AutoModel(model=str(path), device=device, disable_update=True)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        res = self._model.generate(input=_mono_at(audio, sample_rate, self.RATE))
        return str(res[0]["text"]).strip() if res else ""


def _asr_model_types() -> set[str]:
    """The transformers model types with a speech-recognition head (sequence-to-sequence or CTC)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CTC_MAPPING_NAMES,
        MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
    )

    return set(MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES) | set(MODEL_FOR_CTC_MAPPING_NAMES)


def check_asr_dir(path: str | Path) -> str:
    """What kind of local ASR model directory `path` is, without loading it: "funasr", or the
    transformers model type. A ValueError names the path and what was expected; a missing package is a
    `MissingPackage`. (The plugin calls this before any test runs, `local_asr` when it first transcribes.)"""
    p = Path(path)
    where = f"ASR model {str(p)!r}"
    if not p.is_dir():
        raise ValueError(f"{where}: {'not a directory' if p.exists() else 'no such directory'}; expected {_EXPECTED}")
    config = p / "config.json"
    if not config.is_file():
        if all((p / name).is_file() for name in _FUNASR):
            return "funasr"
        raise ValueError(f"{where}: no config.json; expected {_EXPECTED}")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{where}: config.json is not a model config ({e}); expected {_EXPECTED}") from None
    if not isinstance(model_type, str):
        raise ValueError(f"{where}: config.json names no model_type; expected {_EXPECTED}")
    try:
        asr_types = _asr_model_types()
    except ImportError:
        raise MissingPackage(f"the ASR model at {str(p)!r} needs transformers, which is not installed: "
                             "pip install 'pytest-cosyvoice[components]'") from None
    if model_type not in asr_types:
        raise ValueError(f"{where}: config.json is of a {model_type!r} model, which transformers has no "
                         f"speech-recognition head for; expected {_EXPECTED}")
    if not any((p / name).is_file() for name in _WEIGHTS):
        raise ValueError(f"{where}: no weights ({', '.join(_WEIGHTS)}); expected {_EXPECTED}")
    if not (p / "preprocessor_config.json").is_file():
        raise ValueError(f"{where}: no preprocessor_config.json (the audio feature extractor); expected {_EXPECTED}")
    return model_type


def local_asr(path: str | Path, *, lang: str = "en", device: str = "cpu") -> Recogniser:
    """The recogniser of a local model directory; never downloads anything.

    A transformers ASR model (config.json of a speech-to-text or CTC model type, its weights and its
    preprocessor_config.json) runs through transformers' speech-recognition pipeline; a FunASR directory
    (config.yaml and model.pt, as ModelScope ships Paraformer-zh) through funasr. Anything else is a
    ValueError naming the path and what was expected (`check_asr_dir`); a missing package is a `MissingPackage`."""
    _check_lang(lang)
    p = Path(path)
    kind = check_asr_dir(p)
    if kind == "funasr":
        return FunAsrParaformer(p, device=device)
    return TransformersAsr(p, kind, lang=lang, device=device)
