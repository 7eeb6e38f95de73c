"""What the plugin measures, as plain data: the contract between the recording (fixtures and
markers) and the storage/report modules. No pytest import here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class StreamTrace:
    """One recorded stream as the report draws it: chunk sizes, arrivals, joins that clicked, outcome."""

    label: str                      # e.g. "stream 0" within the test
    sample_rate: int
    chunk_samples: list[int]        # length of each chunk in samples
    arrivals_s: list[float]         # perf_counter seconds from the call to each chunk's arrival
    outcome: str = "ok"             # "ok", or the error class name (StreamError, StreamStalled, ...)
    error: str = ""
    click_joins: list[int] = field(default_factory=list)   # chunk indices whose join clicked


# Said of a stream pair whose outputs differ when the two sides were seeded through the global RNG
# (an engine without seed=): a stream draws from it in two threads, so it cannot repeat.
NOT_REPRODUCIBLE = "not reproducible: a seeded stream shares the global RNG across two threads"
# Said of a pair whose outputs differ when one side took the seed per request (seed=) and the other
# seeded the global RNG: they drew from different generators.
SEEDED_APART = "not comparable: one side took seed=, the other drew from the global RNG"


@dataclass(frozen=True)
class PairOutputs:
    """Whether a pair's two sides produced the same outputs: `status`, and `detail` (what differs, with
    why when that is expected, or why they were not compared). `finding`: a difference where they should
    not differ (not a stream seeded through the global RNG, `NOT_REPRODUCIBLE`, nor sides seeded apart,
    `SEEDED_APART`)."""

    status: Literal["identical", "differs", "not compared"] = "not compared"
    detail: str = ""
    finding: bool = False

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> PairOutputs:
        if isinstance(data, dict):
            return cls(**data)
        # Stored before the typed fields: one text, "identical", "differs: <what>" or "not compared: <why>".
        status, _, detail = data.partition(": ")
        if status == "differs":
            return cls("differs", detail, NOT_REPRODUCIBLE not in detail and SEEDED_APART not in detail)
        return cls("identical") if status == "identical" else cls("not compared", detail)


@dataclass
class PairSample:
    """One A/B round of a test: head and base on the same inputs and seed, back to back (issue #17)."""

    round: int                              # 1: the main pass, k: the k-th RTF round (as the notes say)
    order: str                              # "AB": head ran first; "BA": base first
    head_rtf: float
    base_rtf: float
    head_first_chunk_ms: float | None = None
    base_first_chunk_ms: float | None = None
    outputs: PairOutputs = PairOutputs()
    # The round's speech tokens and audio seconds per side (None: not counted), so that a pair whose
    # outputs differ is judged per speech token (tracking.ab).
    head_tokens: int | None = None
    base_tokens: int | None = None
    head_audio_s: float | None = None
    base_audio_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairSample:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields | {"outputs": PairOutputs.from_json(data.get("outputs", ""))})


@dataclass
class TestFigures:
    """Every figure one test produced; travels from xdist workers to the controller as JSON."""

    __test__ = False  # data, not a test class: a user's suite that imports it gets no collection warning

    nodeid: str
    outcome: str = "passed"         # the test's call-phase outcome
    rtf: list[float] = field(default_factory=list)           # one sample per measured synthesis round
    first_chunk_ms: list[float] = field(default_factory=list)
    worst_gap_ms: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    cold: bool = False              # the first synthesis after the model loaded
    engine: str = "fixed"
    failed_checks: list[str] = field(default_factory=list)
    round_notes: list[str] = field(default_factory=list)   # failures in later RTF rounds (rounds.py)
    pairs: list[PairSample] = field(default_factory=list)  # A/B mode: one per round

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.pairs:
            del out["pairs"]    # a session without A/B keeps its old JSON
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestFigures:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["pairs"] = [PairSample.from_json(p) for p in data.get("pairs") or []]
        return cls(**fields)
