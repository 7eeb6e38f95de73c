"""The quality drift gate's scores (issue 18): each call's no-reference MOS (`score_mos`: DNSMOS P.835 and
PLCMOS from the `speechmos` package, imported when first called: the `quality` extra), WER (--cosy-asr) and
speaker similarity (`CallScorers`), and the test-level means judged as drift from the baseline's clean runs
(`judge_scores`, `mos_drift`), never as absolute scores. No pytest here.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cosyvoice_runtime import InvalidInput
from pytest_cosyvoice.stats import median

from .audio_metrics import one_channel
from .intelligibility import POCKETSPHINX, Recogniser
from .quality_results import MOS_SCORES, SCORES, SIM_SCORES, CallOutput, QualityCheck, TestQuality, Why
from .similarity import SpeakerModel, cosine
from .specs import MOS_MINIMUM_BASELINE, MOS_SLACK, QualitySpec

QUALITY_INSTALL = "pip install 'pytest-cosyvoice[quality]'"
DNSMOS_RATE = 16000          # DNSMOS and PLCMOS are trained on 16 kHz audio and refuse any other rate
# The WER limit is at least this far above the worst clean run: point limits on tiny sets flake (NeMo).
WER_FLOOR = 0.05
# The embedding of a recording: (samples, sample rate) -> vector.
Embed = Callable[[np.ndarray, int], np.ndarray]


class QualityExtraMissing(RuntimeError):
    """The MOS scorer's package is not installed; the message is one line with the install command."""


@dataclass(frozen=True)
class MosScores:
    """DNSMOS P.835 (signal, background, overall; 1..5) and PLCMOS (1..5, concealment artifacts: what a
    bad chunk join sounds like) of one waveform."""
    dnsmos_sig: float
    dnsmos_bak: float
    dnsmos_ovrl: float
    plcmos: float


def _speechmos() -> tuple[Any, Any]:
    try:
        from speechmos import dnsmos, plcmos  # type: ignore[import-untyped]
    except ImportError as e:
        # speechmos declares no dependencies of its own: librosa or requests missing fails the same way.
        missing = e.name or "speechmos"
        raise QualityExtraMissing(f"sound scores need {missing}, which is not installed: {QUALITY_INSTALL}") \
            from None
    return dnsmos, plcmos


_PLC_ROUNDS = 15        # speechmos's PLCMOS averages 15 simulated raters
_plc_model: Any = None


def score_mos(audio: ArrayLike, sample_rate: int) -> MosScores:
    """DNSMOS and PLCMOS of one waveform, resampled to 16 kHz first (the runtime's resampler). Samples beyond +-1 are
    clipped (both models refuse them; the clipping check reports them). Deterministic: PLCMOS's simulated
    raters are drawn from a fixed-seed generator of our own, not from numpy's global one (speechmos's `run`
    draws from the global RNG, so the same audio would score differently and shift the caller's RNG)."""
    global _plc_model
    dnsmos, plcmos = _speechmos()
    wave = one_channel(audio, "the")
    if sample_rate <= 0:
        raise ValueError(f"sample rate {sample_rate} Hz: must be positive")
    if sample_rate != DNSMOS_RATE:
        from cosyvoice_runtime.audio import resample  # the runtime's: every score hears the same 16 kHz audio

        wave = resample(wave, sample_rate, DNSMOS_RATE)
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)
    d = dnsmos.run(wave, DNSMOS_RATE)
    if _plc_model is None:
        _plc_model = plcmos.PLCMOS()
    features = np.asarray(_plc_model.stft_transform(wave), dtype=np.float32)[np.newaxis, np.newaxis, ...]
    raters = np.random.default_rng(0).normal(size=(_PLC_ROUNDS, 1, 64)).astype(np.float32)
    plc = [float(np.ravel(_plc_model.session.run(None, {"degraded_audio": features, "rater_embed": r})[0])[0])
           for r in raters]
    return MosScores(dnsmos_sig=float(d["sig_mos"]), dnsmos_bak=float(d["bak_mos"]),
                     dnsmos_ovrl=float(d["ovrl_mos"]), plcmos=float(np.mean(plc)))


@dataclass(frozen=True)
class MosDrift:
    """One MOS figure judged against a baseline's clean runs. `status`: "ok", "drop" (below the limit) or
    "uncalibrated" (too few baseline runs: never gates)."""
    status: str
    current: float                  # the median of the current samples
    limit: float | None             # worst baseline sample x slack; None when uncalibrated
    line: str

    @property
    def failed(self) -> bool:
        return self.status == "drop"


def mos_drift(baseline_samples: Sequence[float], current_samples: Sequence[float], slack: float = MOS_SLACK, *,
              minimum: int = MOS_MINIMUM_BASELINE, metric: str = "MOS") -> MosDrift:
    """Whether a MOS (higher is better) dropped: the current samples' median against the worst of the
    baseline's clean samples times slack. Fewer than `minimum` baseline samples: "uncalibrated", no gate."""
    if not 0.0 < slack <= 1.0:
        raise ValueError(f"MOS slack {slack}: must be in (0, 1] (a fraction of the worst clean run)")
    if minimum < 1:
        raise ValueError(f"minimum baseline samples {minimum}: must be at least 1")
    base = [float(v) for v in baseline_samples]
    now = [float(v) for v in current_samples]
    if not now:
        raise ValueError(f"{metric}: no current samples to judge")
    if not all(math.isfinite(v) for v in base + now):
        raise ValueError(f"{metric}: a non-finite sample (baseline {base}, current {now})")
    current = median(now)
    if len(base) < minimum:
        return MosDrift("uncalibrated", current, None,
                        f"{metric} {current:.2f}: uncalibrated ({len(base)} of {minimum} clean baseline runs), "
                        f"not gated")
    worst = min(base)
    limit = worst * slack
    status = "drop" if current < limit else "ok"
    sign = "<" if status == "drop" else ">="
    return MosDrift(status, current, limit,
                    f"{metric} {current:.2f} {sign} limit {limit:.2f} (worst of {len(base)} clean baseline runs "
                    f"{worst:.2f} x {slack:g})")


def judge_scores(samples: dict[str, list[float]], current: dict[str, float],
                 limits: QualitySpec) -> list[QualityCheck]:
    """The test-level scores against the stored clean runs' samples: dnsmos and plcmos fail below the worst
    clean run x mos_slack, sim below the worst - sim_drop, wer above max(worst x wer_slack, worst + WER_FLOOR).
    Fewer than min_clean_runs samples: a "note" (uncalibrated), never a failure."""
    unknown = sorted(set(current) - set(SCORES))
    if unknown:
        raise ValueError(f"scores {', '.join(unknown)}: expected {', '.join(SCORES[:-1])} or {SCORES[-1]}")
    checks = []
    for name in SCORES:
        if name not in current:
            continue
        value = float(current[name])
        base = [float(v) for v in samples.get(name, [])]
        if len(base) < limits.min_clean_runs:
            checks.append(QualityCheck.note(name, "", Why.UNCALIBRATED,
                                            f"{name} {value:.3f}: uncalibrated ({len(base)} of "
                                            f"{limits.min_clean_runs} clean runs), not gated", value))
            continue
        worst_text = f"worst of {len(base)} clean runs"
        if name in MOS_SCORES:
            d = mos_drift(base, [value], limits.mos_slack, minimum=limits.min_clean_runs, metric=name)
            checks.append(QualityCheck(name, "", "fail" if d.failed else "pass", value, d.limit, d.line))
            continue
        if name in SIM_SCORES:    # campplus, and the --cosy-sim model: the same rule
            worst = min(base)
            limit = worst - limits.sim_drop
            ok = value >= limit
            text = (f"{name} {value:.3f} {'>=' if ok else '<'} limit {limit:.3f} ({worst_text} {worst:.3f} - "
                    f"{limits.sim_drop:g})")
        else:
            worst = max(base)
            limit = max(worst * limits.wer_slack, worst + WER_FLOOR)
            ok = value <= limit
            text = (f"wer {value:.3f} {'<=' if ok else '>'} limit {limit:.3f} ({worst_text} {worst:.3f} x "
                    f"{limits.wer_slack:g}, at least +{WER_FLOOR:g})")
        checks.append(QualityCheck(name, "", "pass" if ok else "fail", value, limit, text))
    return checks


def saves_to_gate(samples: dict[str, list[float]], current: dict[str, float], limits: QualitySpec) -> int:
    """How many more saved clean runs the scores in `current` need before each gates (`judge_scores`):
    0 when every one has min_clean_runs samples, or there is no score."""
    return max([0, *(limits.min_clean_runs - len(samples.get(name, [])) for name in current)])


def judge_test_scores(test: TestQuality, samples: dict[str, list[float]], limits: QualitySpec, *,
                      saving: bool) -> None:
    """The test's scores judged (`judge_scores`) and the saving sessions it still needs before each gates.
    A saving session stores one more clean run of each score, and sets the goldens: what differs from the
    old ones is reported as a note, not failed."""
    test.checks += judge_scores(samples, test.scores(), limits)
    test.saves_to_gate = max(0, saves_to_gate(samples, test.scores(), limits) - int(saving))
    if saving:
        test.checks = [QualityCheck.note(c.name, c.call, Why.SAVING, f"{c.text} (saving new goldens)", c.figure,
                                         c.limit) if c.status == "fail" else c for c in test.checks]


class CallScorers:
    """One per session: each call's MOS, WER (with `asr`: a local model directory or "pocketsphinx") and
    speaker similarity (the engine's campplus embedding, and with `sim` a local speaker model). The models
    are built on first use; a prompt's embedding is computed once per scorer and prompt."""

    def __init__(self, asr: str | None = None, sim: str | None = None) -> None:
        self.asr, self.sim = asr, sim
        self._lock = threading.Lock()
        self._recognisers: dict[str, Recogniser] = {}
        self._speaker: SpeakerModel | None = None
        self._prompt_embeddings: dict[tuple[str, str], np.ndarray | None] = {}
        self.missing_extra: str | None = None    # the install line, once the MOS scorer was found missing

    def score(self, out: CallOutput, prompt: Any, campplus: Embed | None) -> None:
        """Fills `out`'s scores from its audio; `prompt`: the prompt recording the call named (or None)."""
        audio = out.audio
        if audio.size == 0:
            return
        if self.missing_extra is None:
            try:
                mos = score_mos(audio, out.sample_rate)
                out.mos = {"dnsmos": mos.dnsmos_ovrl, "plcmos": mos.plcmos}
            except QualityExtraMissing as e:
                self.missing_extra = str(e)
        if self.asr is not None and out.text:
            from .intelligibility import utterance_error

            lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in out.text) else "en"
            out.transcript = self._recogniser(lang).transcribe(audio, out.sample_rate)
            out.wer = utterance_error(out.text, out.transcript, lang)
        if prompt is None:
            return
        if campplus is not None:
            out.sim = self._similarity("campplus", prompt, campplus, audio, out.sample_rate)
        if self.sim is not None:
            sim = self._similarity("sim_model", prompt, self._speaker_model().embed, audio, out.sample_rate)
            if sim is not None:
                out.mos["sim_model"] = sim

    def _similarity(self, scorer: str, prompt: Any, embed: Embed, audio: np.ndarray, sample_rate: int) -> float | None:
        """Cosine of the prompt recording's and the output's embeddings. The prompt's embedding is read
        and computed once per scorer and prompt (the suites give every call the same prompt)."""
        key = (scorer, str(prompt))
        with self._lock:
            known = key in self._prompt_embeddings
            reference = self._prompt_embeddings.get(key)
        if not known:
            recording = _prompt_audio(prompt)
            reference = None if recording is None else embed(*recording)
            with self._lock:
                self._prompt_embeddings[key] = reference
        if reference is None:
            return None
        try:
            return cosine(reference, embed(audio, sample_rate))
        except ValueError:          # a silent output: no direction to compare
            return None

    def _recogniser(self, lang: str) -> Recogniser:
        with self._lock:
            if lang not in self._recognisers:
                from .intelligibility import PocketSphinx, local_asr

                assert self.asr is not None
                self._recognisers[lang] = PocketSphinx() if self.asr == POCKETSPHINX else local_asr(self.asr, lang=lang)
            return self._recognisers[lang]

    def _speaker_model(self) -> SpeakerModel:
        with self._lock:
            if self._speaker is None:
                from .similarity import local_speaker_model

                assert self.sim is not None
                self._speaker = local_speaker_model(self.sim)
            return self._speaker


def _prompt_audio(prompt: Any) -> tuple[np.ndarray, int] | None:
    """The prompt recording a call named (a path, as the engines take it) as (samples, rate); None when
    it cannot be read (the engine has already said why, in the call)."""
    from cosyvoice_runtime.audio import read_wav

    try:
        samples, rate = read_wav(prompt)
    except InvalidInput:
        return None
    return np.asarray(samples, dtype=np.float32), int(rate)
