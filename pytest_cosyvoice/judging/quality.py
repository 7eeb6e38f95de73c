"""The quality drift gate's data (issue 18): what a `@pytest.mark.quality` test's calls produced, and the
checks that judged them against the stored golden outputs and the baseline's clean-run scores.

No pytest here: the plugin fills `CallOutput`s, `compare_call` and `judge_scores` judge them, the report
and the golden store read `TestQuality`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol, cast

import numpy as np

from cosyvoice_runtime.audio import pack_audio, unpack_audio

from .figures import figure_from_json, figure_text, figure_to_json
from .sound import (
    SoundMismatch,
    compare_audio,
    divergence_text,
    first_divergence,
    mos_drift,
    streamed_vs_offline,
)
from .specs import QualitySpec

# The test-level scores (the mean over a test's calls, judged against the stored clean runs): DNSMOS P.835
# overall, PLCMOS, WER with --cosy-asr, speaker similarity with campplus and with the --cosy-sim model.
MOS_SCORES = ("dnsmos", "plcmos")
SIM_SCORES = ("sim", "sim_model")
SCORES = (*MOS_SCORES, "wer", *SIM_SCORES)
# The checks, in the order the report lists them.
CHECKS = ("tokens", "token2wav", "audio", "streamed_vs_offline", *SCORES)
Status = Literal["pass", "fail", "note"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "note")


class Why(Enum):
    """Why a check is a "note" (not judged): the counts of the terminal line, the step summary and the
    history read this field, never the check's text."""
    NO_GOLDEN = "no golden"            # nothing saved for this call yet
    UNCALIBRATED = "uncalibrated"      # fewer stored clean runs than min_clean_runs
    NOT_JUDGED = "not judged"          # what the check needs is missing (no render(), no tokens, tokens="off")
    SAVING = "saving"                  # a saving session: a difference from the old goldens is reported only


# The WER limit is at least this far above the worst clean run: point limits on tiny sets flake (NeMo).
WER_FLOOR = 0.05


@dataclass(frozen=True)
class QualityCheck:
    """One judged figure. `status`: "pass", "fail" or "note" (not judged: `why` says which kind, `text`
    says it in words, e.g. "dnsmos 3.100: uncalibrated (2 of 5 clean runs), not gated"). `why` is set on
    every note and on nothing else. `call` is the call's label, or "" for a test-level score."""
    name: str
    call: str
    status: Status
    figure: float | None
    limit: float | None
    text: str
    why: Why | None = None

    def __post_init__(self) -> None:
        if self.name not in CHECKS:
            raise ValueError(f"check {self.name!r}: expected one of {', '.join(CHECKS)}")
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {', '.join(STATUSES)}")
        if (self.status == "note") != isinstance(self.why, Why):
            raise ValueError(f"check {self.name!r} with status {self.status!r} and why={self.why!r}: a note "
                             f"names why (one of {', '.join(w.name for w in Why)}), a pass or fail does not")

    @classmethod
    def note(cls, name: str, call: str, why: Why, text: str, figure: float | None = None,
             limit: float | None = None) -> QualityCheck:
        return cls(name, call, "note", figure, limit, text, why)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "call": self.call, "status": self.status,
                "figure": figure_to_json(self.figure), "limit": figure_to_json(self.limit), "text": self.text,
                "why": None if self.why is None else self.why.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityCheck:
        status = str(data["status"])
        why = data.get("why")
        return cls(str(data["name"]), str(data["call"]), cast(Status, status), figure_from_json(data.get("figure")),
                   figure_from_json(data.get("limit"), "limit"), str(data["text"]), None if why is None else Why(why))


@dataclass
class CallOutput:
    """One `cosy_tts` call of a quality test as this session produced it. `rendered` and
    `rendered_streamed` are this stack's offline and streamed token -> wav of the reference tokens (the
    golden call's where there is one, else the call's own); `token_ranks` the current LLM's rank of each
    golden token (teacher forcing, where the engine offers `score_tokens`), `top_k` its sampling top_k."""
    label: str
    kind: str
    seed: int | None
    sample_rate: int
    text: str | None
    tokens: list[int] | None
    audio: np.ndarray
    rendered: np.ndarray | None = None
    rendered_streamed: np.ndarray | None = None
    token_ranks: tuple[int, ...] | None = None
    top_k: int | None = None
    mos: dict[str, float] = field(default_factory=dict)     # "dnsmos" (P.835 overall), "plcmos"
    wer: float | None = None
    transcript: str | None = None
    sim: float | None = None
    chunks: int = 0                 # chunks the call delivered (a join defect can only show with 2 or more)
    reference_snr: float | None = None   # `rendered` against this stack's float64 CPU reference render
    # The tokens `rendered`/`rendered_streamed` render, where not the call's own (the golden's): a save
    # keeps `rendered` only as the render of its own tokens.
    rendered_tokens: list[int] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "seed": self.seed, "sample_rate": self.sample_rate,
                "text": self.text, "tokens": self.tokens, "audio": pack_audio(self.audio),
                "rendered_tokens": self.rendered_tokens, "chunks": self.chunks,
                "reference_snr": figure_to_json(self.reference_snr),
                "rendered": pack_audio(self.rendered), "rendered_streamed": pack_audio(self.rendered_streamed),
                "token_ranks": None if self.token_ranks is None else list(self.token_ranks), "top_k": self.top_k,
                "mos": dict(self.mos), "wer": self.wer, "transcript": self.transcript, "sim": self.sim}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CallOutput:
        audio = unpack_audio(d["audio"])
        assert audio is not None
        ranks = d.get("token_ranks")
        return cls(label=d["label"], kind=d["kind"], seed=d["seed"], sample_rate=int(d["sample_rate"]), text=d["text"],
                   tokens=d["tokens"], audio=audio, rendered=unpack_audio(d.get("rendered")),
                   rendered_streamed=unpack_audio(d.get("rendered_streamed")),
                   token_ranks=None if ranks is None else tuple(int(r) for r in ranks), top_k=d.get("top_k"),
                   mos={k: float(v) for k, v in (d.get("mos") or {}).items()}, wer=d.get("wer"),
                   transcript=d.get("transcript"), sim=d.get("sim"),
                   rendered_tokens=d.get("rendered_tokens"), chunks=int(d.get("chunks") or 0),
                   reference_snr=figure_from_json(d.get("reference_snr"), "reference_snr"))


@dataclass
class TestQuality:
    """A quality test's calls and the checks that judged them."""

    __test__ = False  # data, not a test class
    nodeid: str
    calls: list[CallOutput] = field(default_factory=list)
    checks: list[QualityCheck] = field(default_factory=list)
    seconds: float | None = None    # what judging the test cost (renders, scores, comparisons)
    saves_to_gate: int = 0          # saving sessions still needed before every score of the test gates

    @property
    def status(self) -> Status:
        statuses = {c.status for c in self.checks}
        return "fail" if "fail" in statuses else "pass" if "pass" in statuses else "note"

    def noted(self, why: Why) -> bool:
        """Whether any of the test's checks is a note for this reason."""
        return any(c.why is why for c in self.checks)

    @property
    def failed(self) -> list[QualityCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def scores(self) -> dict[str, float]:
        """Per-test mean of each score its calls have: dnsmos, plcmos, wer, sim."""
        values: dict[str, list[float]] = {}
        for c in self.calls:
            for name, v in c.mos.items():
                values.setdefault(name, []).append(v)
            if c.wer is not None:
                values.setdefault("wer", []).append(c.wer)
            if c.sim is not None:
                values.setdefault("sim", []).append(c.sim)
        return {k: float(np.mean(v)) for k, v in values.items() if v}

    def to_wire(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "calls": [c.to_wire() for c in self.calls],
                "checks": [c.to_json() for c in self.checks], "seconds": self.seconds,
                "saves_to_gate": self.saves_to_gate}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> TestQuality:
        return cls(d["nodeid"], [CallOutput.from_wire(c) for c in d["calls"]],
                   [QualityCheck.from_json(c) for c in d["checks"]], d.get("seconds"), int(d.get("saves_to_gate", 0)))


class GoldenLike(Protocol):
    """What `compare_call` reads of a stored golden call (tracking.goldens.GoldenCall)."""
    label: str
    kind: str
    seed: int | None
    sample_rate: int
    tokens: list[int] | None
    audio: np.ndarray | None
    rendered: np.ndarray | None
    text: str | None
    reference_snr: float | None


# PyTorch's accuracy check for a new build: its error against a float64 reference at most 2x (fp32) /
# 3x (fp16, bf16) the old build's own error.
REFERENCE_ERROR_RATIO = {"fp32": 2.0, "fp16": 3.0, "bf16": 3.0}


def _reference_check(golden: GoldenLike, current: CallOutput, dtype: str, stack_change: str) -> QualityCheck:
    """token2wav after a stack change: this stack's render of the golden tokens against its float64 CPU
    reference, its error (in amplitude) at most REFERENCE_ERROR_RATIO x the golden stack's own error."""
    assert golden.reference_snr is not None and current.reference_snr is not None
    limit = REFERENCE_ERROR_RATIO[dtype]
    g, c = golden.reference_snr, current.reference_snr
    if math.isinf(g) and math.isinf(c):
        ratio = 1.0
    else:
        ratio = math.inf if math.isinf(g) else 10.0 ** ((g - c) / 20.0)
    status: Status = "pass" if ratio <= limit else "fail"
    return QualityCheck("token2wav", current.label, status, ratio, limit,
                        f"stack changed ({stack_change}): token->wav error against the float64 reference "
                        f"x{ratio:.2f} the golden stack's (limit x{limit:g}; {figure_text(c)} vs "
                        f"{figure_text(g)} dB SNR)")


def _tokens_check(golden: GoldenLike, current: CallOutput, limits: QualitySpec) -> QualityCheck:
    label = current.label
    if limits.tokens == "off":
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED, "tokens not judged (tokens=\"off\")")
    if golden.tokens is None or current.tokens is None:
        side = "golden" if golden.tokens is None else "current call"
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED, f"tokens not judged: the {side} has no speech tokens")
    at = first_divergence(golden.tokens, current.tokens)
    verdict = divergence_text(at, len(golden.tokens), len(current.tokens))
    if at is None:
        return QualityCheck("tokens", label, "pass", None, None, verdict)
    figure = float(at)
    if limits.tokens == "identical":
        return QualityCheck("tokens", label, "fail", figure, None, verdict)
    # top_k (vLLM's check_logprobs_close): at the first mismatch, the golden token must still be one the
    # current LLM could sample; past it the sequences are conditioned on different prefixes.
    if current.token_ranks is None or current.top_k is None:
        why = "no token scoring" if current.token_ranks is None else "no readable sampling top_k"
        return QualityCheck.note("tokens", label, Why.NOT_JUDGED,
                                 f"{verdict}: not judged (tokens=\"top_k\", but the engine offers {why})", figure)
    if at >= len(current.token_ranks):
        # The current call is longer: the golden ended here (its end-of-speech was not sampled again).
        return QualityCheck("tokens", label, "fail", figure, float(current.top_k),
                            f"{verdict}: the golden ends there, the current LLM went on (sampling changed)")
    rank = current.token_ranks[at]
    k = current.top_k
    if rank < k:
        return QualityCheck("tokens", label, "pass", figure, float(k),
                            f"{verdict}; the golden token there is rank {rank} under the current LLM, inside "
                            f"its top-{k} (numeric drift)")
    return QualityCheck("tokens", label, "fail", figure, float(k),
                        f"{verdict}; the golden token there is rank {rank} under the current LLM, outside its "
                        f"top-{k} (sampling changed)")


def _snr_check(name: str, what: str, golden: np.ndarray | None, current: np.ndarray | None, golden_rate: int,
               current_rate: int, limit: float, label: str, missing: str) -> QualityCheck:
    if current is None:
        return QualityCheck.note(name, label, Why.NOT_JUDGED, missing, limit=limit)
    if golden is None:
        return QualityCheck.note(name, label, Why.NOT_JUDGED, f"{what} not judged: the golden call has none stored",
                                 limit=limit)
    try:
        d = compare_audio(golden, current, golden_rate, current_rate)
    except SoundMismatch as exc:
        return QualityCheck(name, label, "fail", None, limit, f"{what} not comparable with the golden: {exc}")
    status: Status = "pass" if d.snr_db >= limit else "fail"
    return QualityCheck(name, label, status, d.snr_db, limit,
                        f"{what} {figure_text(d.snr_db)} dB SNR vs golden (limit {limit:g} dB); log-mel "
                        f"{d.spectral.mean_db:.2f} dB mean, {d.spectral.worst_db:.2f} dB worst at "
                        f"{d.spectral.worst_at_s:.2f} s; max abs {d.max_abs:.3g}")


def compare_call(golden: GoldenLike | None, current: CallOutput, limits: QualitySpec,
                 dtype: str, stack_change: str = "") -> list[QualityCheck]:
    """The golden checks of one call: tokens, token2wav (this stack's offline render of the golden tokens vs
    the golden's), audio (the call's output vs the golden's, only while the tokens are identical) and
    streamed_vs_offline (this stack's streamed vs offline render of the same tokens; no golden needed).
    With `stack_change` (the versions that differ from the golden's stack, worded) and both reference SNRs
    known, token2wav is judged by the error against a float64 reference instead (`_reference_check`).
    Nothing here raises on a mismatch of rates or lengths: that is a failed check naming both values."""
    limit = limits.snr_limit(dtype)
    label = current.label
    checks: list[QualityCheck] = []
    if golden is None:
        for name in ("tokens", "token2wav", "audio"):
            checks.append(QualityCheck.note(name, label, Why.NO_GOLDEN, "no golden for this call"))
    else:
        tokens = _tokens_check(golden, current, limits)
        checks.append(tokens)
        if stack_change and golden.reference_snr is not None and current.reference_snr is not None:
            # Another stack is not bit-identical by design: judged by its error, not by SNR vs golden.
            checks.append(_reference_check(golden, current, dtype, stack_change))
        else:
            checks.append(_snr_check("token2wav", "token->wav", golden.rendered, current.rendered,
                                     golden.sample_rate, current.sample_rate, limit, label,
                                     "token->wav not judged: the engine offers no render()"))
        same_tokens = golden.tokens is not None and current.tokens is not None \
            and list(golden.tokens) == list(current.tokens)
        if golden.tokens is not None and current.tokens is not None and not same_tokens:
            checks.append(QualityCheck.note("audio", label, Why.NOT_JUDGED,
                                            "audio not compared sample by sample: the tokens differ "
                                            "(token->wav judges the renderer on the golden tokens)", limit=limit))
        else:
            checks.append(_snr_check("audio", "audio", golden.audio, current.audio, golden.sample_rate,
                                     current.sample_rate, limit, label, "audio not judged: no current audio"))
    checks.append(_streamed_check(current, limits))
    return checks


def _streamed_check(current: CallOutput, limits: QualitySpec) -> QualityCheck:
    label, limit = current.label, limits.streamed_mel_db
    if current.rendered is None or current.rendered_streamed is None:
        return QualityCheck.note("streamed_vs_offline", label, Why.NOT_JUDGED,
                                 "streamed vs offline not judged: the engine offers no render()", limit=limit)
    try:
        d = streamed_vs_offline(current.rendered_streamed, current.rendered, current.sample_rate)
    except SoundMismatch as exc:
        return QualityCheck("streamed_vs_offline", label, "fail", None, limit,
                            f"streamed vs offline not comparable: {exc}")
    status: Status = "pass" if d.worst_db <= limit else "fail"
    length = f"; streamed {d.length_difference:+d} samples" if d.length_difference else ""
    return QualityCheck("streamed_vs_offline", label, status, d.worst_db, limit,
                        f"streamed vs offline log-mel {d.worst_db:.2f} dB at the worst frame ({d.worst_at_s:.2f} s; "
                        f"limit {limit:g} dB), {d.mean_db:.2f} dB mean{length}")


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
