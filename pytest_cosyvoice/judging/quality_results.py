"""The quality drift gate's results (issue 18): what a `@pytest.mark.quality` test's calls produced
(`CallOutput`), and the checks that judged them (`QualityCheck`) against the stored golden outputs and the
baseline's clean-run scores, per test (`TestQuality`).

No pytest here: the plugin fills `CallOutput`s, `golden_checks.compare_call` and `scores.judge_scores`
judge them, the report and the golden store read `TestQuality`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, cast

import numpy as np

from cosyvoice_runtime.audio import pack_audio, unpack_audio

from .figures import figure_from_json, figure_to_json

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
