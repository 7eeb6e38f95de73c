"""Prompt audio: read with soundfile (any rate, mono or stereo), checked and resampled."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InvalidInput

MAX_PROMPT_S = 30.0
SILENCE_PEAK = 1e-4


def read_wav(path: str | os.PathLike[str], *, what: str = "prompt_wav") -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate; InvalidInput for unreadable, empty, silent or >30 s audio."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{what}={str(path)!r}: no such file (expected a readable audio file)")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for anything it can't parse
        raise InvalidInput(f"{what}={str(path)!r}: unreadable audio ({e}); expected WAV/FLAC/OGG readable by soundfile") from e
    mono = data.mean(axis=1).astype(np.float32)
    if mono.size == 0:
        raise InvalidInput(f"{what}={str(path)!r}: the file holds no samples; expected speech audio")
    seconds = mono.size / rate
    if seconds > MAX_PROMPT_S:
        raise InvalidInput(f"{what}={str(path)!r}: {seconds:.1f} s long; prompt audio must be at most {MAX_PROMPT_S:.0f} s")
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise InvalidInput(f"{what}={str(path)!r}: the audio is silent (peak below {SILENCE_PEAK}); expected speech")
    return mono, int(rate)


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    if orig == new:
        return x
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), orig, new).numpy()
