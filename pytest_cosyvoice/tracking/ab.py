"""The A/B rule of a session (issue #17): its parameters in one place (`AbRule`), the pairs each
passed test recorded (`ab_pairs`), and the verdicts per test and pooled (`judge_ab`, `AbVerdicts`) that
the rounds' looks, the terminal, the report files, JUnit and Markdown use. The statistics are
tracking.paired's. No pytest import here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..judging.measurements import TestFigures
from .drift import DEFAULT_TOLERANCE
from .paired import DEFAULT_MAX_PAIRS, Pair, PairedResult, PooledResult, judge_pairs, pool

AB_METRICS = ("RTF", "first chunk")


@dataclass(frozen=True)
class AbRule:
    """The A/B rule's parameters, in one place: the rounds' looks (rounds.py) and the end's verdicts
    ask `judge` with the same ones."""

    tolerance: float = DEFAULT_TOLERANCE
    max_pairs: int = DEFAULT_MAX_PAIRS       # the cap of each test's pairs (--cosy-ab-max-pairs)

    def judge(self, nodeid: str, pairs: Sequence[Pair]) -> PairedResult:
        return judge_pairs(nodeid, list(pairs), tolerance=self.tolerance, max_pairs=self.max_pairs)

    def pool(self, by_test: dict[str, list[Pair]], results: list[PairedResult], metric: str) -> PooledResult:
        return pool(by_test, results, tolerance=self.tolerance, max_pairs=self.max_pairs, metric=metric)


@dataclass
class AbVerdicts:
    """A session's A/B verdicts (tracking.paired), per test and pooled, of RTF and of first-chunk
    latency: what the terminal, the report files, the history line, JUnit and Markdown say of them."""

    base: str = ""                                  # the base side's description
    base_versions: dict[str, str] = field(default_factory=dict)
    paired: list[PairedResult] | None = None        # RTF; None: no test recorded RTF pairs
    pooled: PooledResult | None = None
    paired_first_chunk: list[PairedResult] | None = None    # first-chunk latency (ms)
    pooled_first_chunk: PooledResult | None = None

    def metrics(self) -> list[tuple[str, list[PairedResult], PooledResult]]:
        """(metric, per-test results, pooled) for each metric that has verdicts, RTF first."""
        out = []
        for metric, paired, pooled in (("RTF", self.paired, self.pooled),
                                       ("first chunk", self.paired_first_chunk, self.pooled_first_chunk)):
            if paired is not None and pooled is not None:
                out.append((metric, paired, pooled))
        return out

    def pooled_line(self, pooled: PooledResult) -> str:
        """'A/B against <base>: head/base RTF 1.08x (95 % CI 1.05-1.11) over 24 tests, 320 pairs: regression'."""
        return f"A/B against {self.base or 'the base side'}: {pooled.describe()}"


def ab_pairs(figures: Sequence[TestFigures], metric: str = "RTF") -> dict[str, list[Pair]]:
    """Per passed test, its (head, base) pairs of `metric` ("RTF" or "first chunk", in ms); a test
    without such pairs is left out. Only passed tests, as for the RTF rounds (rounds.py): a test
    that failed gets no more rounds, so its pairs could never reach a verdict."""
    if metric not in AB_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(AB_METRICS)}")
    out: dict[str, list[Pair]] = {}
    for f in figures:
        if f.outcome != "passed":
            continue
        raw: list[tuple[float | None, float | None]] = (
            [(p.head_rtf, p.base_rtf) for p in f.pairs] if metric == "RTF"
            else [(p.head_first_chunk_ms, p.base_first_chunk_ms) for p in f.pairs])
        # A side that produced no figure (no chunk, an error) says nothing about the ratio.
        pairs = [(float(h), float(b)) for h, b in raw if h is not None and b is not None and h > 0 and b > 0]
        if pairs:
            out[f.nodeid] = pairs
    return out


def judge_ab(figures: Sequence[TestFigures], rule: AbRule, metric: str = "RTF"
             ) -> tuple[list[PairedResult] | None, PooledResult | None]:
    """The A/B verdicts of `metric`: per test and pooled, by `rule`; (None, None) when no passed test
    recorded pairs of it."""
    by_test = ab_pairs(figures, metric)
    if not by_test:
        return None, None
    results = [rule.judge(nodeid, pairs) for nodeid, pairs in by_test.items()]
    return results, rule.pool(by_test, results, metric)
