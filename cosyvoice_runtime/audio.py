"""Audio in and out: prompt audio read with soundfile (any rate, mono or stereo), checked and resampled;
and the one byte form of mono float32 samples (`audio_bytes`, `pack_audio`/`unpack_audio`) that the
xdist wire carries and the golden store checksums."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InvalidInput, shown

MAX_PROMPT_S = 30.0
# Measured on the tiny models: v1 needs 25 ms (kaldi fbank's 400-sample window at 16 kHz; below 20 ms
# the mel extractor's reflect pad fails), v2 40 ms (its mel pads 720 samples at 24 kHz, and one 25 Hz
# speech token). 0.1 s leaves room for the released tokenizers; a shorter prompt carries no voice anyway.
MIN_PROMPT_S = 0.1
SILENCE_PEAK = 1e-4
# Float files are nominally within +-1; far beyond that the frontends' power spectra overflow float32
# and the speaker embedding turns NaN (1e30 did). Such a file is broken, not loud speech.
MAX_PEAK = 100.0


def read_wav(path: str | os.PathLike[str], *, what: str = "prompt_wav") -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate; InvalidInput for unreadable, empty, silent or >30 s audio."""
    import soundfile as sf

    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInput(f"{what}={shown(path)}: expected the path of an audio file (str or os.PathLike), "
                           f"got {type(path).__name__}")
    p = Path(path)
    if p.is_dir():
        raise InvalidInput(f"{what}={str(path)!r}: is a directory; expected an audio file")
    if not p.is_file():
        raise InvalidInput(f"{what}={str(path)!r}: no such file (expected a readable audio file)")
    try:
        # The header first: an hours-long file is refused before its samples are read into memory.
        info = sf.info(str(p))
        if info.samplerate > 0 and info.frames / info.samplerate > MAX_PROMPT_S:
            seconds = info.frames / info.samplerate
            raise InvalidInput(f"{what}={str(path)!r}: {seconds:.1f} s long; prompt audio must be at most "
                               f"{MAX_PROMPT_S:.0f} s")
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except InvalidInput:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for anything it can't parse
        raise InvalidInput(f"{what}={str(path)!r}: unreadable audio ({e}); "
                           "expected WAV/FLAC/OGG readable by soundfile") from e
    if data.size == 0:
        raise InvalidInput(f"{what}={str(path)!r}: the file holds no samples; expected speech audio")
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise InvalidInput(f"{what}={str(path)!r}: {int(bad.sum())} samples are NaN or infinite (the first at "
                           f"{first / rate:.3f} s); expected finite audio samples")
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        raise InvalidInput(f"{what}={str(path)!r}: peak sample {peak:.3g}; expected samples within "
                           f"+-{MAX_PEAK:g} (audio is nominally within +-1)")
    mono = data.mean(axis=1).astype(np.float32)
    seconds = mono.size / rate
    if seconds > MAX_PROMPT_S:
        raise InvalidInput(f"{what}={str(path)!r}: {seconds:.1f} s long; prompt audio must be at most "
                           f"{MAX_PROMPT_S:.0f} s")
    if seconds < MIN_PROMPT_S:
        raise InvalidInput(f"{what}={str(path)!r}: {seconds * 1000:.0f} ms long; prompt audio must be at least "
                           f"{MIN_PROMPT_S * 1000:.0f} ms (the shortest the frontend can process)")
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise InvalidInput(f"{what}={str(path)!r}: the audio is silent (peak below {SILENCE_PEAK}); expected speech")
    return mono, int(rate)


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    if orig == new:
        return x
    import torch
    import torchaudio.functional as AF

    out: np.ndarray = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), orig, new).numpy()
    return out


def check_samples(audio: object, sample_rate: object, *, what: str = "audio") -> tuple[np.ndarray, int]:
    """Mono float32 samples given in memory (a 1-D array, or 2-D with one channel) and their rate;
    InvalidInput for anything else, for no samples, NaN/Inf, absurd peaks or under MIN_PROMPT_S."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InvalidInput(f"sample_rate={shown(sample_rate)}: expected a positive whole number of samples "
                           "per second")
    rate = int(sample_rate)
    if not isinstance(audio, np.ndarray):
        raise InvalidInput(f"{what}={shown(audio)}: expected a numpy array of samples, got {type(audio).__name__}")
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise InvalidInput(f"{what}: an array of shape {audio.shape}; expected mono samples (1-D, or 2-D with "
                           "one channel)")
    if not np.issubdtype(audio.dtype, np.floating):
        # int16 PCM would need a scale the caller knows and we would guess: refused, not rescaled.
        raise InvalidInput(f"{what}: samples of dtype {audio.dtype}; expected float samples (nominally within +-1)")
    if audio.size == 0:
        raise InvalidInput(f"{what}: no samples; expected at least {MIN_PROMPT_S * 1000:.0f} ms of audio")
    x = audio.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise InvalidInput(f"{what}: {int(bad.sum())} samples are NaN or infinite (the first at "
                           f"{int(np.argmax(bad)) / rate:.3f} s); expected finite samples")
    peak = float(np.abs(x).max())
    if peak > MAX_PEAK:
        raise InvalidInput(f"{what}: peak sample {peak:.3g}; expected samples within +-{MAX_PEAK:g} "
                           "(audio is nominally within +-1)")
    if x.size / rate < MIN_PROMPT_S:
        raise InvalidInput(f"{what}: {x.size / rate * 1000:.1f} ms at {rate} Hz; expected at least "
                           f"{MIN_PROMPT_S * 1000:.0f} ms (the shortest the frontend can process)")
    return x, rate


def audio_bytes(audio: np.ndarray) -> bytes:
    """Mono samples as little-endian float32 bytes, flattened: exact, 4 bytes a sample."""
    return np.ascontiguousarray(audio, dtype="<f4").reshape(-1).tobytes()


def pack_audio(audio: np.ndarray | None) -> bytes | None:
    """`audio_bytes`, None kept: a call's audio on the xdist wire (execnet carries bytes as they are)."""
    return None if audio is None else audio_bytes(audio)


def unpack_audio(data: bytes | None) -> np.ndarray | None:
    """The inverse of `pack_audio`: a writable float32 array of its own (not a view of the bytes)."""
    return None if data is None else np.frombuffer(data, dtype="<f4").astype(np.float32)
