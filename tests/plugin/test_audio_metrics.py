"""The audio metrics and MOS scores (`pytest_cosyvoice.judging.audio_metrics`, `.golden_checks`' token
comparison and `.scores`' MOS, groundwork for issue 18's quality gate), shown on
real speech: the project's prompt (espeak-ng, 16 kHz) with the defects the issue names injected -
white noise, zeroed samples and clicks at chunk joins, fp16 rounding - and the MOS scorers of the
`speechmos` package (the `quality` extra). Each MOS score costs about a second: they are few."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from pytest_cosyvoice.judging.audio_metrics import (
    TOLERANCES,
    SoundMismatch,
    compare_audio,
    count_outside,
    log_mel,
    snr_db,
    snr_verdict,
    spectral_distance,
    streamed_vs_offline,
    tolerance_for,
)
from pytest_cosyvoice.judging.golden_checks import first_divergence, token_verdict
from pytest_cosyvoice.judging.scores import QUALITY_INSTALL, MosScores, mos_drift, score_mos

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "pytest_cosyvoice" / "data" / "prompt.wav"


@pytest.fixture(scope="module")
def prompt() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(PROMPT, dtype="float64")
    assert rate == 16000 and audio.ndim == 1
    return audio, rate


def with_noise(audio: np.ndarray, db: float, seed: int = 1) -> np.ndarray:
    """audio + white noise `db` below the audio's power."""
    rng = np.random.default_rng(seed)
    out: np.ndarray = audio + rng.normal(size=audio.size) * math.sqrt(float(np.mean(audio**2)) * 10 ** (db / 10))
    return out


def joins_every(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    out: np.ndarray = np.arange(round(rate * seconds), audio.size, round(rate * seconds))
    return out


def zeroed(audio: np.ndarray, at: np.ndarray, samples: int) -> np.ndarray:
    out: np.ndarray = audio.copy()
    for j in at:
        out[j:j + samples] = 0.0
    return out


def clicked(audio: np.ndarray, at: np.ndarray, height: float = 0.5) -> np.ndarray:
    out: np.ndarray = audio.copy()
    out[at] += height
    return out


# ---------------------------------------------------------------- tokens

def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([], []) is None
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([5, 2], [4, 2]) == 0
    assert first_divergence([1, 2, 3], [1, 2]) == 2          # a prefix: the shorter length
    assert first_divergence([1, 2], [1, 2, 3, 4]) == 2
    assert first_divergence(np.array([1, 2, 3]), (1, 2, 4)) == 2


def test_token_verdict_says_where() -> None:
    golden = list(range(120))
    assert token_verdict(golden, golden) == "tokens identical (120)"
    current = golden[:37] + [999] + golden[38:]
    assert token_verdict(golden, current) == "tokens diverge at 37 of 120"
    assert token_verdict(golden, golden[:100]) == "tokens diverge at 100 of 120 (current has 100)"


# ---------------------------------------------------------------- golden audio

def test_identical_audio(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    d = compare_audio(audio, audio.copy(), rate, rate)
    assert d.snr_db == math.inf
    assert d.max_abs == 0.0
    assert d.spectral.mean_db == 0.0 and d.spectral.worst_db == 0.0
    assert snr_verdict("vocoder output", d.snr_db, 40) == "vocoder output inf dB SNR vs golden (limit 40 dB)"


@pytest.mark.parametrize("db", [-20.0, -30.0])
def test_white_noise_is_measured_at_its_level(prompt: tuple[np.ndarray, int], db: float) -> None:
    audio, rate = prompt
    d = compare_audio(audio, with_noise(audio, db), rate, rate)
    assert d.snr_db == pytest.approx(-db, abs=0.5)
    assert d.max_abs > 0
    # The noise fills espeak-ng's pauses, which the golden has (near) silent: the log-mel sees it everywhere.
    assert d.spectral.mean_db > 3.0


def test_noise_louder_is_farther(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    loud, quiet = (compare_audio(audio, with_noise(audio, db), rate, rate) for db in (-20.0, -30.0))
    assert loud.snr_db < quiet.snr_db
    assert loud.max_abs > quiet.max_abs
    assert loud.spectral.mean_db > quiet.spectral.mean_db


def test_fp16_rounding_is_far_above_white_noise(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    rounded = audio.astype(np.float16).astype(np.float64)
    fp16 = snr_db(audio, rounded)
    noise = snr_db(audio, with_noise(audio, -30.0))
    assert math.isfinite(fp16) and fp16 > noise + 30      # ~73 dB against ~30 dB
    # ... and the fp16 tolerance admits it where the fp32 one does not.
    assert count_outside(audio, rounded, "fp16") == 0
    assert count_outside(audio, rounded, "float32") > 0
    assert snr_verdict("vocoder output", 12.04, 40) == "vocoder output 12.0 dB SNR vs golden (limit 40 dB)"


def test_tolerance_table_is_torch_testings() -> None:
    assert (TOLERANCES["float32"].rtol, TOLERANCES["float16"].rtol, TOLERANCES["bfloat16"].rtol) == \
        (1.3e-6, 1e-3, 1.6e-2)
    assert tolerance_for("bf16") == tolerance_for("bfloat16") == tolerance_for("torch.bfloat16")
    assert tolerance_for(np.float16) == tolerance_for(np.dtype("float16")) == TOLERANCES["float16"]
    with pytest.raises(ValueError, match="no tolerance for dtype int8"):
        tolerance_for("int8")


def test_defects_at_joins_stand_out_from_a_clean_rerender(prompt: tuple[np.ndarray, int]) -> None:
    """20 ms zeroed and a click at every join (every 0.5 s) against a clean re-render: the prompt through
    a 24 kHz polyphase round trip (not bit-identical: SNR ~37 dB) and streamed 5 samples short."""
    audio, rate = prompt
    joins = joins_every(audio, rate, 0.5)
    clean = resample_poly(resample_poly(audio, 3, 2), 2, 3)[: audio.size]
    clean_d = streamed_vs_offline(clean[:-5], audio, rate)
    assert clean_d.length_difference == -5
    assert 0 < clean_d.worst_db < 1.0
    for name, bad in (("gaps", zeroed(clean, joins, round(0.020 * rate))), ("clicks", clicked(clean, joins))):
        d = streamed_vs_offline(bad[:-5], audio, rate)
        assert d.length_difference == -5
        assert d.mean_db > 2 * clean_d.mean_db, name
        assert d.worst_db > 10 * clean_d.worst_db and d.worst_db > 10.0, name
        # The worst frame lies at a join (within a window's length).
        assert np.min(np.abs(joins / rate - d.worst_at_s)) < 0.03, name


def test_streamed_longer_or_shorter(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    longer = np.concatenate([audio, np.zeros(7)])
    d = streamed_vs_offline(longer, audio, rate)
    assert d.length_difference == 7 and d.mean_db == 0.0
    assert streamed_vs_offline(audio, longer, rate).length_difference == -7


def test_mismatched_rate_and_length_name_both(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    with pytest.raises(SoundMismatch, match=r"^golden 24000 Hz vs current 22050 Hz$"):
        compare_audio(np.zeros(48000), np.zeros(48000), 24000, 22050)
    with pytest.raises(SoundMismatch, match=r"^golden 48000 samples vs current 47040$"):
        compare_audio(np.zeros(48000), np.zeros(47040), 24000, 24000)
    with pytest.raises(ValueError, match=r"golden 87863 samples vs current 87860"):
        spectral_distance(audio, audio[:-3], rate)
    with pytest.raises(ValueError, match="current audio has 1 non-finite samples"):
        bad = audio.copy()
        bad[100] = np.nan
        snr_db(audio, bad)
    with pytest.raises(ValueError, match=r"golden audio has shape \(2, 10\)"):
        snr_db(np.zeros((2, 10)), np.zeros((2, 10)))


def test_cosyvoice_shaped_audio_and_log_mel(prompt: tuple[np.ndarray, int]) -> None:
    audio, rate = prompt
    assert compare_audio(audio[None, :], audio, rate, rate).snr_db == math.inf   # (1, n) as tts_speech
    mel = log_mel(audio, rate)
    assert mel.shape[0] == math.ceil((audio.size - 400) / 160) + 1      # 25 ms window, 10 ms hop
    assert 60 <= mel.shape[1] <= 80
    assert mel.max() - mel.min() == pytest.approx(80.0)                  # floored 80 dB below the peak


# ---------------------------------------------------------------- MOS

@pytest.fixture(scope="module")
def clean_scores(prompt: tuple[np.ndarray, int]) -> MosScores:
    return score_mos(*prompt)


def test_dnsmos_drops_with_white_noise(prompt: tuple[np.ndarray, int], clean_scores: MosScores) -> None:
    audio, rate = prompt
    noisy = score_mos(with_noise(audio, -20.0), rate)
    assert 1.0 < noisy.dnsmos_ovrl < clean_scores.dnsmos_ovrl - 0.3       # measured 2.41 < 2.97
    assert noisy.dnsmos_bak < clean_scores.dnsmos_bak - 0.5               # background: 2.54 < 3.88
    # Judged as drift: a baseline of 5 clean runs gates the noisy one, not another clean one.
    assert mos_drift([clean_scores.dnsmos_ovrl] * 5, [noisy.dnsmos_ovrl]).failed
    assert mos_drift([clean_scores.dnsmos_ovrl] * 5, [clean_scores.dnsmos_ovrl]).status == "ok"


def test_plcmos_drops_with_gaps_in_speech(prompt: tuple[np.ndarray, int], clean_scores: MosScores) -> None:
    """Nine 50 ms gaps placed in voiced speech (a gap in a pause conceals nothing and PLCMOS rightly does
    not see it)."""
    audio, rate = prompt
    envelope = np.convolve(audio**2, np.ones(800) / 800, mode="same")
    voiced = np.flatnonzero(envelope > 0.1 * envelope.max())
    at = voiced[np.linspace(0, voiced.size - 1, 11)[1:-1].astype(int)]
    gapped = score_mos(zeroed(audio, at, round(0.050 * rate)), rate)
    assert gapped.plcmos < clean_scores.plcmos - 0.2                      # measured 2.26 < 2.70


def test_scores_are_repeatable_at_any_rate_and_leave_the_global_rng(prompt: tuple[np.ndarray, int],
                                                                   clean_scores: MosScores) -> None:
    audio, rate = prompt
    state = np.random.get_state(legacy=False)
    again = score_mos(resample_poly(audio, 3, 2), 24000)     # resampled back to 16 kHz inside
    after = np.random.get_state(legacy=False)
    assert np.array_equal(state["state"]["key"], after["state"]["key"])
    assert state["state"]["pos"] == after["state"]["pos"]
    assert again.dnsmos_ovrl == pytest.approx(clean_scores.dnsmos_ovrl, abs=0.05)
    assert again.plcmos == pytest.approx(clean_scores.plcmos, abs=0.1)
    assert score_mos(*prompt) == clean_scores                             # same audio, same scores


def test_missing_speechmos_is_one_line_with_the_install_command() -> None:
    code = ("import sys; sys.modules['speechmos'] = None\n"
            "import numpy as np\n"
            "from pytest_cosyvoice.judging.scores import score_mos\n"
            "score_mos(np.zeros(16000), 16000)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "pytest_cosyvoice.judging.scores.QualityExtraMissing: sound scores need speechmos, which is not "
        f"installed: {QUALITY_INSTALL}")
    assert QUALITY_INSTALL == "pip install 'pytest-cosyvoice[quality]'"


# ---------------------------------------------------------------- MOS drift (the rule, on numbers)

def test_mos_drift_rule() -> None:
    base = [2.97, 3.01, 2.99, 3.05, 2.98]
    ok = mos_drift(base, [2.90])                  # limit 2.97 x 0.97 = 2.88
    assert ok.status == "ok" and not ok.failed and ok.limit == pytest.approx(2.8809)
    assert ok.line == "MOS 2.90 >= limit 2.88 (worst of 5 clean baseline runs 2.97 x 0.97)"
    drop = mos_drift(base, [2.03, 2.10, 2.95], metric="DNSMOS ovrl")    # judged on the median, 2.10
    assert drop.failed and drop.current == pytest.approx(2.10)
    assert drop.line == "DNSMOS ovrl 2.10 < limit 2.88 (worst of 5 clean baseline runs 2.97 x 0.97)"
    assert mos_drift(base, [2.93], slack=0.99).failed       # limit 2.94
    assert not mos_drift(base, [2.93]).failed


def test_uncalibrated_baseline_never_gates() -> None:
    few = mos_drift([2.97, 3.0, 2.99, 3.01], [1.0])
    assert few.status == "uncalibrated" and not few.failed and few.limit is None
    assert few.line == "MOS 1.00: uncalibrated (4 of 5 clean baseline runs), not gated"
    assert mos_drift([], [1.0]).status == "uncalibrated"
    assert mos_drift([2.97, 3.0], [1.0], minimum=2).failed


def test_mos_drift_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="slack 1.2"):
        mos_drift([3.0] * 5, [3.0], slack=1.2)
    with pytest.raises(ValueError, match="no current samples"):
        mos_drift([3.0] * 5, [])
    with pytest.raises(ValueError, match="non-finite"):
        mos_drift([3.0] * 5, [float("nan")])
