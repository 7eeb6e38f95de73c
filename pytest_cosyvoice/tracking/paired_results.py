"""What a paired A/B verdict says: the verdicts (`PairedVerdict`), one test's result (`PairedResult`)
and the session's pooled one (`PooledResult`), in the words the terminal and the report show.
`tracking.paired` judges the pairs and builds them. No pytest import."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PairedVerdict(str, Enum):
    """A paired verdict (tracking.paired's docstring gives the rule). Like `DriftVerdict`, a member equals,
    hashes and formats as its value, what the report, the terminal and users' scripts show."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    SAME = "same"
    UNKNOWN = "unknown"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class PairedResult:
    """One test's paired verdict."""

    nodeid: str
    n_pairs: int
    median_ratio: float         # head / base; 1.08 means head 8 % slower (for RTF)
    ci_low: float
    ci_high: float
    p_value: float              # one-sided signed-rank p in the direction of the median ratio
    verdict: PairedVerdict
    alpha: float
    tolerance: float
    confidence: float
    max_pairs: int
    n_looks: int
    note: str = ""

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.n_looks

    @property
    def wants_more(self) -> bool:
        return self.verdict is PairedVerdict.UNKNOWN

    def describe(self) -> str:
        """'1.21x (95 % CI 1.12..1.30), p = 0.001, 10 pairs: regression'; an inconclusive test's
        line is its note, 'inconclusive: 20 pairs, CI 0.97..1.08'."""
        if self.verdict is PairedVerdict.INCONCLUSIVE:
            return self.note
        line = (f"{self.median_ratio:.2f}x ({_pct(self.confidence)} CI {self.ci_low:.2f}..{self.ci_high:.2f}), "
                f"p = {self.p_value:.3g}, {count(self.n_pairs, 'pair')}: {self.verdict}")
        return f"{line} ({self.note})" if self.note else line


@dataclass(frozen=True)
class PooledResult:
    """The session's pooled ratio over all tests."""

    ratio: float                # geometric mean of the per-test median ratios
    ci_low: float
    ci_high: float
    p_value: float              # the hierarchical bootstrap's one-sided p; 0.0 means below 1 / resamples
    verdict: PairedVerdict
    n_tests: int
    n_pairs: int
    metric: str
    confidence: float

    def describe(self) -> str:
        """The headline: 'head/base RTF 1.08x (95 % CI 1.05-1.11) over 24 tests, 320 pairs: regression'."""
        return (f"head/base {self.metric} {self.ratio:.2f}x ({_pct(self.confidence)} CI "
                f"{self.ci_low:.2f}-{self.ci_high:.2f}) over {count(self.n_tests, 'test')}, "
                f"{count(self.n_pairs, 'pair')}: {self.verdict}")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pct(confidence: float) -> str:
    return f"{100.0 * confidence:g} %"
