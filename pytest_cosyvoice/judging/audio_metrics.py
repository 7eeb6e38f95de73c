"""Audio metrics: the waveform comparisons of the quality drift gate (issue 18; `judging/golden_checks.py`
judges with them; the MOS scores are `judging/scores.py`'s).

Pure functions over 1-D float waveforms (numpy arrays; a `(1, n)` array, as CosyVoice returns, is taken
as its one row, `one_channel`). No pytest: a script or a benchmark calls them alike.

- Golden comparisons (same inputs, same sound): `compare_audio` (SNR, max abs difference, log-mel
  distance) for a golden and a current waveform of the same rate and length - anything else is a
  `SoundMismatch` (a ValueError) naming both values, for the caller to name; `TOLERANCES`/`tolerance_for`
  and `count_outside` for torch.testing's per-dtype tolerances.
- Streamed vs offline rendering of the same tokens: `streamed_vs_offline`, a log-mel distance over the
  common length, the length difference reported beside it (the complete check judges lengths).

The log-mel spectrum here (`log_mel`): Hann window of 25 ms, hop 10 ms (Kaldi's fbank frame), FFT size the
next power of two >= twice the window, 80 mel bands (HTK mel scale) from 0 Hz to Nyquist, power in dB;
bands that fall between two FFT bins at low sample rates are left out rather than kept at zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .figures import figure_text

Audio = NDArray[np.float64]

WINDOW_S = 0.025
HOP_S = 0.010
N_MELS = 80
# Both spectra are floored this far below the golden's loudest band and frame, so near-silence on one
# side and digital silence on the other do not read as a 200 dB difference (librosa's top_db default).
FLOOR_DB = 80.0


class SoundMismatch(ValueError):
    """Two waveforms that cannot be compared sample by sample: the message names both values."""


# ---------------------------------------------------------------- tolerances

@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


# torch.testing.assert_close's documented defaults per dtype: |current - golden| <= atol + rtol * |golden|.
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}
_ALIASES = {"fp64": "float64", "double": "float64", "fp32": "float32", "float": "float32",
            "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def tolerance_for(dtype: object) -> Tolerance:
    """The tolerance of a dtype given as a name ("fp16", "bfloat16"), a numpy dtype or a torch dtype
    (read by its name: this module does not import torch)."""
    name = str(dtype).removeprefix("torch.").lower()
    if name.startswith("<class 'numpy."):       # np.float16 the type, not np.dtype("float16")
        name = name.removeprefix("<class 'numpy.").removesuffix("'>")
    name = _ALIASES.get(name, name)
    if name not in TOLERANCES:
        raise ValueError(f"no tolerance for dtype {dtype!s}: one of {', '.join(TOLERANCES)}")
    return TOLERANCES[name]


def count_outside(golden: ArrayLike, current: ArrayLike, dtype: object) -> int:
    """How many samples of current lie outside the dtype's tolerance around golden (0: all close)."""
    g, c = _pair(golden, current)
    tol = tolerance_for(dtype)
    return int(np.count_nonzero(np.abs(c - g) > tol.atol + tol.rtol * np.abs(g)))


# ---------------------------------------------------------------- waveform distances

def one_channel(x: ArrayLike, side: str) -> Audio:
    """`x` as one channel of finite float64 samples, else a SoundMismatch naming `side` ("golden", ...)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] == 1:         # CosyVoice's (1, n) tts_speech
        a = a[0]
    if a.ndim != 1:
        raise SoundMismatch(f"{side} audio has shape {a.shape}: expected one channel")
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        # A NaN distance compares False with every limit: it would pass silently.
        raise SoundMismatch(f"{side} audio has {bad} non-finite samples")
    return a


def _pair(golden: ArrayLike, current: ArrayLike) -> tuple[Audio, Audio]:
    g, c = one_channel(golden, "golden"), one_channel(current, "current")
    if g.size != c.size:
        raise SoundMismatch(f"golden {g.size} samples vs current {c.size}")
    return g, c


def _check_rates(golden_rate: int, current_rate: int) -> None:
    if golden_rate != current_rate:
        raise SoundMismatch(f"golden {golden_rate} Hz vs current {current_rate} Hz")
    if golden_rate <= 0:
        raise ValueError(f"sample rate {golden_rate} Hz: must be positive")


def snr_db(golden: ArrayLike, current: ArrayLike) -> float:
    """Signal-to-noise ratio of current against golden in dB: golden's energy over the difference's.
    inf when identical; -inf when golden is silent and current is not."""
    g, c = _pair(golden, current)
    noise = float(np.sum((c - g) ** 2))
    if noise == 0.0:
        return math.inf
    signal = float(np.sum(g**2))
    return -math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise)


def max_abs_difference(golden: ArrayLike, current: ArrayLike) -> float:
    g, c = _pair(golden, current)
    return float(np.max(np.abs(c - g))) if g.size else 0.0


def _hz_to_mel(f: NDArray[np.float64]) -> NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: NDArray[np.float64]) -> NDArray[np.float64]:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _frames(sample_rate: int) -> tuple[int, int, int]:
    window = max(2, round(WINDOW_S * sample_rate))
    hop = max(1, round(HOP_S * sample_rate))
    n_fft = 1 << (2 * window - 1).bit_length()
    return window, hop, n_fft


def _mel_bank(sample_rate: int, n_fft: int) -> NDArray[np.float64]:
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(sample_rate / 2.0))), N_MELS + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    bank = np.clip(np.minimum(rising, falling), 0.0, None)
    return np.asarray(bank[bank.sum(axis=1) > 0], dtype=np.float64)


def _mel_power(audio: Audio, sample_rate: int) -> NDArray[np.float64]:
    """(frames, bands) mel power; the signal is zero-padded to whole frames (at least one)."""
    window, hop, n_fft = _frames(sample_rate)
    count = max(1, math.ceil(max(audio.size - window, 0) / hop) + 1)
    padded = np.zeros((count - 1) * hop + window)
    padded[: audio.size] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window), n=n_fft)) ** 2
    return np.asarray(spectrum @ _mel_bank(sample_rate, n_fft).T, dtype=np.float64)


def log_mel(audio: ArrayLike, sample_rate: int, floor_db: float = FLOOR_DB) -> NDArray[np.float64]:
    """(frames, bands) log-mel power in dB of one waveform, floored floor_db below its own peak."""
    if sample_rate <= 0:
        raise ValueError(f"sample rate {sample_rate} Hz: must be positive")
    power = _mel_power(one_channel(audio, "the"), sample_rate)
    return _db(power, float(power.max()), floor_db)


def _db(power: NDArray[np.float64], peak: float, floor_db: float) -> NDArray[np.float64]:
    floor = max(peak, 1e-20) * 10.0 ** (-floor_db / 10.0)
    return np.asarray(10.0 * np.log10(np.maximum(power, floor)), dtype=np.float64)


@dataclass(frozen=True)
class SpectralDistance:
    """Log-mel distance in dB: the mean absolute band difference per frame, averaged over frames (mean_db)
    and at the worst frame (worst_db, at worst_at_s): a click or a gap at a few joins hardly moves the mean
    of a long utterance but stands out at its frame."""
    mean_db: float
    worst_db: float
    worst_at_s: float
    frames: int
    length_difference: int = 0      # current - golden samples (streamed vs offline); 0 for golden checks


def _spectral(g: Audio, c: Audio, sample_rate: int, length_difference: int) -> SpectralDistance:
    pg, pc = _mel_power(g, sample_rate), _mel_power(c, sample_rate)
    peak = float(pg.max())          # one floor for both, from the golden: silence must match silence
    per_frame = np.mean(np.abs(_db(pg, peak, FLOOR_DB) - _db(pc, peak, FLOOR_DB)), axis=1)
    worst = int(np.argmax(per_frame))
    _, hop, _ = _frames(sample_rate)
    return SpectralDistance(mean_db=float(np.mean(per_frame)), worst_db=float(per_frame[worst]),
                            worst_at_s=worst * hop / sample_rate, frames=int(per_frame.size),
                            length_difference=length_difference)


def spectral_distance(golden: ArrayLike, current: ArrayLike, sample_rate: int) -> SpectralDistance:
    """Log-mel distance of current from golden: same rate (one argument) and the same length."""
    g, c = _pair(golden, current)
    _check_rates(sample_rate, sample_rate)
    return _spectral(g, c, sample_rate, 0)


def streamed_vs_offline(streamed: ArrayLike, offline: ArrayLike, sample_rate: int) -> SpectralDistance:
    """Log-mel distance between two renderings of the same tokens that may differ in length by a few
    samples: compared over the common length (offline is the reference), the difference reported as
    `length_difference` (streamed - offline). Whether that difference is acceptable is the complete check's."""
    s, o = one_channel(streamed, "streamed"), one_channel(offline, "offline")
    _check_rates(sample_rate, sample_rate)
    n = min(s.size, o.size)
    return _spectral(o[:n], s[:n], sample_rate, s.size - o.size)


@dataclass(frozen=True)
class AudioDistance:
    snr_db: float
    max_abs: float
    spectral: SpectralDistance


def compare_audio(golden: ArrayLike, current: ArrayLike, golden_rate: int, current_rate: int) -> AudioDistance:
    """Every distance of a current waveform from its golden one. Another sample rate or length is a
    SoundMismatch naming both ("golden 24000 Hz vs current 22050 Hz", "golden 48000 samples vs current 47040")."""
    _check_rates(golden_rate, current_rate)
    g, c = _pair(golden, current)
    return AudioDistance(snr_db=snr_db(g, c), max_abs=max_abs_difference(g, c),
                         spectral=_spectral(g, c, golden_rate, 0))


def snr_verdict(what: str, snr: float, limit_db: float) -> str:
    """ "vocoder output 12.0 dB SNR vs golden (limit 40 dB)"."""
    return f"{what} {figure_text(snr)} dB SNR vs golden (limit {limit_db:g} dB)"
