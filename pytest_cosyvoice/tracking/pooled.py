"""The session's pooled A/B verdict over its tests' pairs (`pool`), and the order effect it reports.

The pooled ratio is the geometric mean of the tests' Hodges-Lehmann estimates (`pair_logs.estimate`:
each test weighs the same, however many pairs it needed); its interval comes from a stratified
bootstrap (the tests fixed, each test's AB and BA pairs resampled within their order,
`paired.DEFAULT_RESAMPLES` = 10^4 resamples). "regression" when the one-sided (1 - alpha) bound lies
above 1 + floor and the ratio beyond the tolerance, likewise "improvement" below 1 / (1 + floor),
"same" when the 95 % interval lies within the tolerance; otherwise "unknown" while a test still wants
pairs, "inconclusive" once none does. `order_effect` says how much faster the second call of a pair
ran over the session's pairs. No pytest import.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from . import ranks
from .pair_logs import Floats, Pair, by_order, checked_orders, crossover_shifts, estimate, log_ratios, walsh_medians
from .paired import DEFAULT_CONFIDENCE, Rule, judge_pairs
from .paired_results import OrderEffect, PairedResult, PairedVerdict, PooledResult


def pool(pairs_by_test: Mapping[str, Sequence[Pair]], results: Sequence[PairedResult] | None = None, *,
         orders_by_test: Mapping[str, Sequence[str]] | None = None, rule: Rule | None = None,
         metric: str = "RTF") -> PooledResult:
    """The session's pooled ratio over all tests (the module docstring gives the rule).

    `results`: the tests' `judge_pairs` results when the caller has them (they decide whether any
    test still wants pairs, i.e. "unknown" against "inconclusive"); judged here otherwise.
    """
    rule = rule or Rule()
    if not pairs_by_test:
        raise ValueError("no tests to pool: the pooled ratio needs at least one test with pairs")
    orders_by_test = orders_by_test or {}
    per_test = _per_test(pairs_by_test, orders_by_test)
    if results is None:
        results = [judge_pairs(nodeid, p, orders_by_test.get(nodeid), rule=rule) for nodeid, p in pairs_by_test.items()]
    centre = math.log(_pooled_ratio(per_test))
    boot = _stratified_bootstrap(per_test, rule.resamples, _rng(rule.seed, "\0pooled"))
    tail = 100.0 * (1.0 - rule.confidence) / 2.0
    ci_low, ci_high = (float(x) for x in np.percentile(boot, [tail, 100.0 - tail]))
    low, high = (float(x) for x in np.percentile(boot, [100.0 * rule.alpha, 100.0 * (1.0 - rule.alpha)]))
    up = math.log1p(rule.floor)
    slower = centre >= 0.0
    p_value = float(np.mean(boot <= up) if slower else np.mean(boot >= -up))
    if low > up and centre > math.log1p(rule.tolerance):
        verdict = PairedVerdict.REGRESSION
    elif high < -up and centre < math.log1p(-rule.tolerance):
        verdict = PairedVerdict.IMPROVEMENT
    elif math.log1p(-rule.tolerance) <= ci_low and ci_high <= math.log1p(rule.tolerance):
        verdict = PairedVerdict.SAME
    else:
        verdict = PairedVerdict.UNKNOWN if any(r.wanted for r in results) else PairedVerdict.INCONCLUSIVE
    return PooledResult(ratio=math.exp(centre), ci_low=math.exp(ci_low), ci_high=math.exp(ci_high), p_value=p_value,
                        p_against=math.exp(up if slower else -up), verdict=verdict, n_tests=len(per_test),
                        n_pairs=sum(len(d) for d, _ in per_test), metric=metric, confidence=rule.confidence,
                        floor=rule.floor, order=order_effect(per_test, rule.confidence))


def pooled_ratio(pairs_by_test: Mapping[str, Sequence[Pair]],
                 orders_by_test: Mapping[str, Sequence[str]] | None = None) -> float:
    """The pooled ratio alone (`pool`'s, without its bootstrap): the geometric mean of the tests'
    Hodges-Lehmann estimates, each over all its pairs. A pooled regression needs it beyond the
    tolerance, so a script can rule one out without resampling."""
    orders_by_test = orders_by_test or {}
    per_test = _per_test(pairs_by_test, orders_by_test)
    return _pooled_ratio(per_test)


def _per_test(pairs_by_test: Mapping[str, Sequence[Pair]],
              orders_by_test: Mapping[str, Sequence[str]]) -> list[tuple[Floats, list[str]]]:
    return [(d := log_ratios(p, nodeid), checked_orders(orders_by_test.get(nodeid), len(d), nodeid))
            for nodeid, p in pairs_by_test.items()]


def _pooled_ratio(per_test: Sequence[tuple[Floats, Sequence[str]]]) -> float:
    return math.exp(float(np.mean([estimate(d, o) for d, o in per_test])))


def order_effect(per_test: Sequence[tuple[Floats, Sequence[str]]], confidence: float = DEFAULT_CONFIDENCE
                 ) -> OrderEffect | None:
    """How much slower the first call of a pair ran than the second, over the session's pairs: each
    test's log ratios centred on its own estimate, then the crossover's period half-shift between
    the AB and BA pairs; None without both orders."""
    ab: list[float] = []
    ba: list[float] = []
    for d, o in per_test:
        groups = by_order(d, o)
        if groups is None:
            continue
        centre = estimate(d, o)
        ab.extend((groups[0] - centre).tolist())
        ba.extend((groups[1] - centre).tolist())
    if not ab or not ba:
        return None
    shift = ranks.two_sample(ab, ba, (1.0 - confidence) / 2.0).scaled(0.5)
    return OrderEffect(math.exp(shift.estimate), math.exp(shift.low), math.exp(shift.high), len(ab) + len(ba))


def _rng(seed: int, name: str) -> np.random.Generator:
    # The rule's seed and a fixed name: the same pairs give the same interval in every session.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _resampled_estimates(d: Floats, orders: Sequence[str], resamples: int, rng: np.random.Generator) -> Floats:
    groups = by_order(d, orders)
    out = np.empty(resamples, dtype=np.float64)
    step = 2000
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        if groups is None:
            out[start:start + b] = walsh_medians(d[rng.integers(0, len(d), size=(b, len(d)))])
        else:
            ab, ba = groups
            out[start:start + b] = crossover_shifts(ab[rng.integers(0, len(ab), size=(b, len(ab)))],
                                                    ba[rng.integers(0, len(ba), size=(b, len(ba)))])
    return out


def _stratified_bootstrap(per_test: Sequence[tuple[Floats, Sequence[str]]], resamples: int,
                          rng: np.random.Generator) -> Floats:
    # The tests are fixed (they are the suite, not a sample of it); each test's pairs are resampled
    # within their order, so the pooled interval counts each test's own noise once.
    total = np.zeros(resamples, dtype=np.float64)
    for d, o in per_test:
        total += _resampled_estimates(d, o, resamples, rng)
    out: Floats = total / len(per_test)
    return out
