"""The quality drift gate's data (issue 18): what a `@pytest.mark.quality` test's calls produced, and the
checks that judged them against the stored golden outputs and the baseline's clean-run scores.

No pytest here: the plugin fills `CallOutput`s, `compare_call` and `judge_scores` judge them, the report
and the golden store read `TestQuality`.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The checks, in the order the report lists them.
CHECKS = ("tokens", "token2wav", "audio", "streamed_vs_offline", "dnsmos", "plcmos", "wer", "sim")
STATUSES = ("pass", "fail", "note")


@dataclass(frozen=True)
class QualityCheck:
    """One judged figure. `status`: "pass", "fail" or "note" (not judged; `text` says why, e.g.
    "uncalibrated (2 of 5 clean runs)"). `call` is the call's label, or "" for a test-level score."""
    name: str
    call: str
    status: str
    figure: float | None
    limit: float | None
    text: str

    def __post_init__(self) -> None:
        if self.name not in CHECKS:
            raise ValueError(f"check {self.name!r}: expected one of {', '.join(CHECKS)}")
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {', '.join(STATUSES)}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "call": self.call, "status": self.status, "figure": _finite(self.figure),
                "limit": _finite(self.limit), "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityCheck:
        return cls(str(data["name"]), str(data["call"]), str(data["status"]), _number(data.get("figure")),
                   _number(data.get("limit")), str(data["text"]))


def _finite(x: float | None) -> float | str | None:
    # JSON has no infinity: an SNR of identical audio is "inf".
    if x is None or math.isnan(x):
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _number(x: Any) -> float | None:
    return None if x is None else float(x)


def pack_audio(audio: np.ndarray | None) -> str | None:
    """float32 samples as base64 text (the xdist wire is JSON-like: exact, and 4 bytes a sample)."""
    if audio is None:
        return None
    return base64.b64encode(np.ascontiguousarray(audio, dtype="<f4").tobytes()).decode("ascii")


def unpack_audio(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


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

    def to_wire(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "seed": self.seed, "sample_rate": self.sample_rate,
                "text": self.text, "tokens": self.tokens, "audio": pack_audio(self.audio),
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
                   transcript=d.get("transcript"), sim=d.get("sim"))


@dataclass
class TestQuality:
    """A quality test's calls and the checks that judged them."""

    __test__ = False  # data, not a test class
    nodeid: str
    calls: list[CallOutput] = field(default_factory=list)
    checks: list[QualityCheck] = field(default_factory=list)
    seconds: float | None = None    # what judging the test cost (renders, scores, comparisons)

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        return "fail" if "fail" in statuses else "pass" if "pass" in statuses else "note"

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
                "checks": [c.to_json() for c in self.checks], "seconds": self.seconds}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> TestQuality:
        return cls(d["nodeid"], [CallOutput.from_wire(c) for c in d["calls"]],
                   [QualityCheck.from_json(c) for c in d["checks"]], d.get("seconds"))
