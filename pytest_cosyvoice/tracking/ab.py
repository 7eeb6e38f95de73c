"""The A/B rule of a session (issue #17, #24): its parameters in one place (`AbRule`), the pairs each
passed test recorded (`ab_pairs`: the values, their orders, whether the sides' outputs differed), and
the verdicts per test and pooled (`judge_ab`, `AbVerdicts`) that the rounds' looks, the terminal, the
report files, JUnit and Markdown use. The statistics are tracking.paired's. No pytest import here.

Pairs whose outputs differ did different work: their RTF pair is judged per speech token (wall time
per token on each side) where both sides counted their tokens, so a longer or shorter output alone
never reads as a speed change; a first chunk is judged as measured (its size is the engine's hop, not
the output's length). Every per-test verdict counts them ("outputs differ in k of n pairs").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..judging.measurements import PairSample, TestFigures
from .drift import DEFAULT_TOLERANCE
from .pair_logs import Pair
from .paired import DEFAULT_CONFIRM_PAIRS, DEFAULT_FLOOR, DEFAULT_MAX_PAIRS, Rule, judge_pairs
from .paired_results import PairedResult, PooledResult
from .pooled import pool

AB_METRICS = ("RTF", "first chunk")


@dataclass(frozen=True)
class AbRule:
    """The A/B rule's parameters, in one place: the rounds' looks (rounds.py) and the end's verdicts
    ask `judge` with the same ones."""

    tolerance: float = DEFAULT_TOLERANCE
    max_pairs: int = DEFAULT_MAX_PAIRS       # the screen's cap of each test's pairs (--cosy-ab-max-pairs)
    floor: float = DEFAULT_FLOOR             # what a failing verdict guarantees (--cosy-ab-floor)
    confirm_pairs: int = DEFAULT_CONFIRM_PAIRS   # a candidate's fresh pairs (--cosy-ab-confirm-pairs)

    @property
    def rule(self) -> Rule:
        return Rule(tolerance=self.tolerance, floor=self.floor, max_pairs=self.max_pairs,
                    confirm_pairs=self.confirm_pairs)

    def judge(self, nodeid: str, pairs: MetricPairs) -> PairedResult:
        result = judge_pairs(nodeid, pairs.values, pairs.orders, rule=self.rule)
        return dataclasses.replace(result, outputs_differ=pairs.outputs_differ, per_token=pairs.per_token)

    def pool(self, by_test: dict[str, MetricPairs], results: list[PairedResult], metric: str) -> PooledResult:
        return pool({k: v.values for k, v in by_test.items()}, results,
                    orders_by_test={k: v.orders for k, v in by_test.items()}, rule=self.rule, metric=metric)


@dataclass
class MetricPairs:
    """One test's pairs of one metric, in the order they were measured."""

    values: list[Pair] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    outputs_differ: int = 0
    per_token: bool = False         # some pair was judged per speech token


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


def _per_token(p: PairSample, side: str) -> float | None:
    """A side's wall time per speech token (RTF x audio seconds / tokens), None where not counted."""
    rtf, audio, tokens = (getattr(p, f"{side}_{x}") for x in ("rtf", "audio_s", "tokens"))
    if audio is None or not tokens:
        return None
    return float(rtf) * float(audio) / float(tokens)


def pair_value(p: PairSample, metric: str) -> tuple[float | None, float | None, bool]:
    """(head, base, per_token) of one pair: RTF per speech token where the outputs differ and both
    sides counted their tokens, else as measured."""
    if metric == "first chunk":
        return p.head_first_chunk_ms, p.base_first_chunk_ms, False
    if p.outputs.status == "differs":
        head, base = _per_token(p, "head"), _per_token(p, "base")
        if head is not None and base is not None:
            return head, base, True
    return p.head_rtf, p.base_rtf, False


def pairs_of(f: TestFigures, metric: str) -> MetricPairs:
    """One test's usable pairs of `metric`: a side that produced no figure (no chunk, an error) says
    nothing about the ratio."""
    out = MetricPairs()
    for p in f.pairs:
        h, b, per_token = pair_value(p, metric)
        if h is None or b is None or h <= 0 or b <= 0:
            continue
        out.values.append((float(h), float(b)))
        out.orders.append(p.order)
        out.outputs_differ += p.outputs.status == "differs"
        out.per_token |= per_token
    return out


def ab_pairs(figures: Sequence[TestFigures], metric: str = "RTF") -> dict[str, MetricPairs]:
    """Per passed test, its pairs of `metric` ("RTF" or "first chunk", in ms); a test without such
    pairs is left out. Only passed tests, as for the RTF rounds (rounds.py): a test that failed gets
    no more rounds, so its pairs could never reach a verdict."""
    if metric not in AB_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(AB_METRICS)}")
    out: dict[str, MetricPairs] = {}
    for f in figures:
        if f.outcome != "passed":
            continue
        pairs = pairs_of(f, metric)
        if pairs.values:
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
