"""Speaker similarity for the quality gate (`--cosy-sim PATH`, issue 18): a local transformers
speaker-verification model (an x-vector head, e.g. WavLMForXVector as Seed-TTS-eval's SIM uses WavLM-large)
embeds the prompt and the output; `cosine` of the two embeddings is the SIM figure, judged only as drift from
the baseline's clean runs.

Never a download: `local_speaker_model` takes a directory whose config.json names a `*ForXVector`
architecture, loads it with `local_files_only`, and raises ValueError naming the path and what was expected
for anything else (the plugin turns that into a usage error before any test runs). transformers is imported
when a model is loaded, with the install command when it is missing. No pytest here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cosyvoice_runtime.audio import resample

from .intelligibility import MissingPackage

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
EXPECTED = ("a local transformers speaker-verification model directory (config.json whose \"architectures\" "
            "names a *ForXVector class, e.g. WavLMForXVector, and its weights)")
DEFAULT_RATE = 16000        # what WavLM / wav2vec2 x-vector models are trained on


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1-D, same length); ValueError for another shape or a zero vector."""
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"embeddings of {x.size} and {y.size} values: expected two of the same length")
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0 or not (np.isfinite(nx) and np.isfinite(ny)):
        raise ValueError(f"an embedding of norm {nx if nx == 0.0 or not np.isfinite(nx) else ny}: expected a "
                         f"finite non-zero vector")
    return float(np.dot(x, y) / (nx * ny))


class SpeakerModel:
    """A loaded x-vector model: `embed(audio, sample_rate)` -> a 1-D float32 embedding."""

    def __init__(self, path: Path, model: Any, extractor: Any, rate: int, device: str) -> None:
        self.path, self._model, self._extractor, self.rate, self.device = path, model, extractor, rate, device

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        x = np.asarray(audio, dtype=np.float64)
        if x.ndim == 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"audio of shape {x.shape}: expected one non-empty channel")
        if sample_rate <= 0:
            raise ValueError(f"sample rate {sample_rate} Hz: must be positive")
        # The runtime's resampler: campplus (Runtime.speaker_embedding) and this model hear the same audio.
        x32 = resample(x, sample_rate, self.rate).astype(np.float32)
        if self._extractor is not None:
            inputs = self._extractor(x32, sampling_rate=self.rate, return_tensors="pt")
            values = inputs["input_values"]
        else:
            # No preprocessor_config.json: the wav2vec2 family's own normalisation (zero mean, unit variance).
            values = torch.from_numpy((x32 - x32.mean()) / np.sqrt(x32.var() + 1e-7))[None]
        with torch.inference_mode():
            out = self._model(input_values=values.to(self.device))
        emb: np.ndarray = out.embeddings[0].detach().float().cpu().numpy().astype(np.float32)
        return emb


def check_speaker_dir(path: str | Path) -> str:
    """The x-vector class a local speaker-verification directory names, without loading its weights
    (the plugin calls this before any test runs). A ValueError names the path and what was expected."""
    p = Path(path)
    where = f"speaker model {str(p)!r}"
    if not p.is_dir():
        raise ValueError(f"{where}: {'not a directory' if p.exists() else 'no such directory'}; expected {EXPECTED}")
    config = p / "config.json"
    if not config.is_file():
        raise ValueError(f"{where}: no config.json; expected {EXPECTED}")
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
        architectures = doc.get("architectures") or []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{where}: config.json is not a model config ({e}); expected {EXPECTED}") from None
    heads = [a for a in architectures if isinstance(a, str) and a.endswith("ForXVector")]
    if not heads:
        named = ", ".join(map(str, architectures)) or "no architecture"
        raise ValueError(f"{where}: config.json names {named}, not a speaker-verification (x-vector) head; "
                         f"expected {EXPECTED}")
    if not any((p / w).is_file() for w in WEIGHTS):
        raise ValueError(f"{where}: no weights ({', '.join(WEIGHTS)}); expected {EXPECTED}")
    return str(heads[0])


def local_speaker_model(path: str | Path, device: str = "cpu") -> SpeakerModel:
    """The speaker-verification model of a local directory (see the module's doc); never downloads."""
    p = Path(path)
    where = f"speaker model {str(p)!r}"
    head = check_speaker_dir(p)
    try:
        import transformers
    except ImportError:
        raise MissingPackage(f"the speaker model at {str(p)!r} needs transformers, which is not installed: "
                             "pip install 'pytest-cosyvoice[components]'") from None
    cls = getattr(transformers, head, None)
    if cls is None:
        raise ValueError(f"{where}: {head} is not a class this transformers {transformers.__version__} has; "
                         f"expected {EXPECTED}")
    try:
        model = cls.from_pretrained(str(p), local_files_only=True).to(device).eval()
        extractor = None
        if (p / "preprocessor_config.json").is_file():
            extractor = transformers.AutoFeatureExtractor.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: transformers cannot load it ({e}); expected {EXPECTED}") from None
    rate = int(getattr(extractor, "sampling_rate", DEFAULT_RATE) or DEFAULT_RATE)
    return SpeakerModel(p, model, extractor, rate, device)
