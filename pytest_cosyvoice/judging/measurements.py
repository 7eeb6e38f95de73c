"""What the plugin measures, as plain data: the contract between the recorder (fixtures and
markers) and the storage/report modules. No pytest import here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StreamTrace:
    """One recorded stream: enough to redraw it and re-run every check."""

    label: str                      # e.g. "stream 0" within the test
    sample_rate: int
    chunk_samples: list[int]        # length of each chunk in samples
    arrivals_s: list[float]         # perf_counter seconds from the call to each chunk's arrival
    tokens: int = 0                 # tokens the producer generated (sum of chunk tokens)
    outcome: str = "ok"             # "ok", or the error class name (StreamError, StreamStalled, ...)
    error: str = ""
    worst_gap_ms: float = 0.0       # worst playback stall with the test's prebuffer
    worst_gap_chunk: int | None = None
    click_joins: list[int] = field(default_factory=list)   # chunk indices whose join clicked
    wav_path: str = ""              # set by the report writer

    @property
    def first_chunk_ms(self) -> float | None:
        return self.arrivals_s[0] * 1000.0 if self.arrivals_s else None

    @property
    def audio_s(self) -> float:
        return sum(self.chunk_samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass
class TestFigures:
    """Every figure one test produced; travels from xdist workers to the controller as JSON."""

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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestFigures:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
