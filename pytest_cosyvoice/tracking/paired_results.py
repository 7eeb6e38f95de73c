"""What a paired A/B verdict says: the verdicts (`PairedVerdict`), one test's result (`PairedResult`),
the session's pooled one (`PooledResult`) and its order effect (`OrderEffect`), in the words the
terminal and the report show.
`tracking.paired` judges the pairs and builds them. No pytest import."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Literal


class PairedVerdict(str, Enum):
    """A paired verdict (tracking.paired's docstring gives the rule). Like `DriftVerdict`, a member equals,
    hashes and formats as its value, what the report, the terminal and users' scripts show."""

    REGRESSION = "regression"           # confirmed on fresh pairs: fails the session
    IMPROVEMENT = "improvement"
    CANDIDATE = "candidate"             # flagged by the screen, not confirmed: reported, never failing
    SAME = "same"
    UNKNOWN = "unknown"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class PairedResult:
    """One test's paired verdict. `ratio`, `ci_low`, `ci_high` and `p_value` are of the pairs the
    verdict rests on: the screen's at its deciding look, or a candidate's fresh pairs."""

    nodeid: str
    n_pairs: int                # all the test's pairs (screen and confirmation)
    ratio: float                # head / base, Hodges-Lehmann; 1.08 means head 8 % slower (for RTF)
    ci_low: float
    ci_high: float
    p_value: float              # one-sided rank test against `p_against`, in the verdict's direction
    verdict: PairedVerdict
    alpha: float
    tolerance: float
    confidence: float
    max_pairs: int
    n_looks: int
    floor: float = 0.04
    p_against: float = 1.0      # 1.0 for the screen; 1 + floor (or 1 / (1 + floor)) for a confirmation
    flagged: Literal["", "regression", "improvement"] = ""      # what the screen flagged
    confirm_pairs: int = 0      # fresh pairs judged in the confirmation
    wanted: int = 0             # more pairs the next look needs; 0 once decided
    crossover: bool = True      # the order effect was removed (pairs of both orders)
    outputs_differ: int = 0     # pairs whose head and base outputs differ
    per_token: bool = False     # judged per speech token (outputs differ in length)
    note: str = ""

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.n_looks

    @property
    def wants_more(self) -> bool:
        return self.wanted > 0

    def describe(self) -> str:
        """'1.21x (95 % CI 1.12..1.30), p = 0.001 vs 1.04, 30 pairs: regression (...)'; an inconclusive
        test's line is its note, 'inconclusive: 20 pairs, CI 0.97..1.08'."""
        outputs = (f"outputs differ in {self.outputs_differ} of {count(self.n_pairs, 'pair')}"
                   + (" (judged per speech token)" if self.per_token else "")) if self.outputs_differ else ""
        if self.verdict is PairedVerdict.INCONCLUSIVE:
            return "; ".join(x for x in (self.note, outputs) if x)
        p = "" if self.p_value != self.p_value else f", p = {self.p_value:.3g} vs {self.p_against:.2f}"
        line = (f"{self.ratio:.2f}x ({_pct(self.confidence)} CI {self.ci_low:.2f}..{self.ci_high:.2f}){p}, "
                f"{count(self.n_pairs, 'pair')}: {self.verdict}")
        extra = "; ".join(x for x in (self.note, outputs) if x)
        return f"{line} ({extra})" if extra else line


@dataclass(frozen=True)
class OrderEffect:
    """The first call of a pair against the second, over a session's pairs: 1.02 means the first
    ran 2 % slower (the second 2 % faster); removed from each test's estimate before its test."""

    ratio: float
    ci_low: float
    ci_high: float
    n_pairs: int

    def describe(self, confidence: float = 0.95) -> str:
        """'order effect: the second call of a pair ran 2.1 % faster (95 % CI 1.2..3.0 %, 780 pairs);
        removed per test'."""
        def gain(r: float) -> float:
            return (1.0 - 1.0 / r) * 100.0 if r > 0 else -math.inf
        faster = gain(self.ratio)
        lo, hi = sorted((gain(self.ci_low), gain(self.ci_high)))
        word = "faster" if faster >= 0 else "slower"
        if faster < 0:
            faster, lo, hi = -faster, -hi, -lo
        return (f"order effect: the second call of a pair ran {faster:.1f} % {word} ({_pct(confidence)} CI "
                f"{lo:.1f}..{hi:.1f} %, {count(self.n_pairs, 'pair')}); removed per test")


@dataclass(frozen=True)
class PooledResult:
    """The session's pooled ratio over all tests."""

    ratio: float                # geometric mean of the per-test estimates
    ci_low: float
    ci_high: float
    p_value: float              # the stratified bootstrap's one-sided p against `p_against`
    verdict: PairedVerdict
    n_tests: int
    n_pairs: int
    metric: str
    confidence: float
    floor: float = 0.04
    p_against: float = 1.04
    order: OrderEffect | None = None

    def describe(self) -> str:
        """The headline: 'head/base RTF 1.08x (95 % CI 1.05-1.11) over 24 tests, 320 pairs: regression'."""
        return (f"head/base {self.metric} {self.ratio:.2f}x ({_pct(self.confidence)} CI "
                f"{self.ci_low:.2f}-{self.ci_high:.2f}) over {count(self.n_tests, 'test')}, "
                f"{count(self.n_pairs, 'pair')}: {self.verdict}")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pct(confidence: float) -> str:
    return f"{100.0 * confidence:g} %"
