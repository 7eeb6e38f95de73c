"""The paired A/B verdict's statistics (pytest_cosyvoice.tracking.paired): the two-stage rule on crafted
pairs, its rates over seeded simulated tests (log-normal noise plus an order effect, fed as the A/B
rounds feed it), and the pooled verdict. The real-rerun tables are in docs/reports.md."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pytest_cosyvoice.tracking import ranks
from pytest_cosyvoice.tracking.pair_logs import Pair, ratios
from pytest_cosyvoice.tracking.paired import (
    DEFAULT_CONFIRM_PAIRS,
    DEFAULT_FLOOR,
    PairedResult,
    PairedVerdict,
    Rule,
    judge_pairs,
    looks,
    min_attainable_p,
    min_pairs,
    pairs_wanted,
    wants_more_pairs,
)
from pytest_cosyvoice.tracking.pooled import pool

RTF = 0.30


def blocks(rng: np.random.Generator, n: int) -> list[str]:
    """Balanced AB/BA blocks, as recording.pairing.draw_order gives them."""
    out: list[str] = []
    while len(out) < n:
        out += ["AB", "BA"] if rng.random() < 0.5 else ["BA", "AB"]
    return out[:n]


def draw(rng: np.random.Generator, orders: list[str], shift: float, noise: float = 0.066,
         period: float = 0.02) -> list[Pair]:
    """Pairs (head, base) around RTF 0.30, the head `shift` times slower, each side log-normal with
    `noise` (0.066 a side: the ratio's 0.093 measured on the kept pairs); the first call of a pair
    `period` slower (log)."""
    out = []
    for o in orders:
        head = RTF * shift * math.exp(rng.normal(0.0, noise) + (period if o == "AB" else 0.0))
        base = RTF * math.exp(rng.normal(0.0, noise) + (period if o == "BA" else 0.0))
        out.append((head, base))
    return out


def sequential(seed: int, shift: float, rule: Rule | None = None, **kw: float) -> PairedResult:
    """What the A/B rounds do: add the pairs the test wants until it has a verdict."""
    rule = rule or Rule()
    rng = np.random.default_rng(seed)
    orders = blocks(rng, rule.max_pairs + rule.confirm_pairs)
    pairs = draw(rng, orders, shift, **kw)
    n = rule.screen_looks[0]
    result = judge_pairs("t", pairs[:n], orders[:n], rule=rule)
    while wants := pairs_wanted(result):
        n += wants
        result = judge_pairs("t", pairs[:n], orders[:n], rule=rule)
    return result


def with_ratios(rs: list[float]) -> tuple[list[Pair], list[str]]:
    return [(RTF * r, RTF) for r in rs], ["AB", "BA"] * (len(rs) // 2) + ["AB"] * (len(rs) % 2)


def test_verdicts_are_typed_and_written_as_their_names() -> None:
    assert [v.value for v in PairedVerdict] == ["regression", "improvement", "candidate", "same", "unknown",
                                                "inconclusive"]
    r = sequential(1, 1.5)
    assert r.verdict is PairedVerdict.REGRESSION and r.verdict == "regression" and r.flagged == "regression"


def test_a_clear_slowdown_is_a_candidate_at_the_first_look_then_confirmed_on_fresh_pairs() -> None:
    pairs, orders = with_ratios([1.18, 1.22, 1.25, 1.19, 1.21, 1.30, 1.17, 1.24, 1.20, 1.23])
    first = judge_pairs("t", pairs, orders)
    assert first.verdict is PairedVerdict.UNKNOWN and first.flagged == "regression"
    confirm_looks = Rule().confirm_looks
    assert first.wanted == confirm_looks[0] == 30
    assert "candidate regression at 10 pairs" in first.note and "confirming on fresh pairs, 0 of 30" in first.note
    more, more_orders = with_ratios([1.2 + 0.01 * (i % 5) for i in range(30)])
    done = judge_pairs("t", pairs + more, orders + more_orders)
    assert done.verdict is PairedVerdict.REGRESSION and done.wanted == 0 and done.confirm_pairs == 30
    # The figures are the fresh pairs': the test against the floor, its bound above it.
    assert done.p_against == pytest.approx(1 + DEFAULT_FLOOR) and done.p_value <= 0.005
    assert done.ci_low > 1 + DEFAULT_FLOOR and "confirmed on 30 fresh pairs" in done.note


def test_fresh_pairs_that_do_not_clear_the_floor_leave_a_candidate_that_never_fails() -> None:
    pairs, orders = with_ratios([1.18, 1.22, 1.25, 1.19, 1.21, 1.30, 1.17, 1.24, 1.20, 1.23])
    fresh, fresh_orders = with_ratios([1.0 + 0.004 * ((i * 7) % 11 - 5) for i in range(30)])
    r = judge_pairs("t", pairs + fresh, orders + fresh_orders)
    assert r.verdict is PairedVerdict.CANDIDATE and r.flagged == "regression" and r.wanted == 0
    assert "not confirmed: 30 fresh pairs put it below 1.04x" in r.note


def test_a_slowdown_inside_the_floor_is_not_a_candidate() -> None:
    # Significant (every ratio above 1) but its estimate is below 1 + floor: not flagged.
    pairs, orders = with_ratios([1.02, 1.03, 1.025, 1.035, 1.03, 1.02, 1.03, 1.025, 1.035, 1.03] * 2)
    r = judge_pairs("t", pairs, orders)
    assert r.flagged == "" and r.verdict is PairedVerdict.SAME


def test_a_speedup_is_confirmed_as_an_improvement() -> None:
    assert sequential(5, 0.8).verdict is PairedVerdict.IMPROVEMENT


def test_rates_at_the_measured_noise() -> None:
    # 0.093 a pair on the log ratio and a 2 % order effect (docs/reports.md); 300 tests a level here,
    # benchmarks/paired_rates.py runs 10^4. A/A: no confirmed regression; +20 %: all of them.
    aa = [sequential(1000 + s, 1.0) for s in range(300)]
    assert sum(r.verdict is PairedVerdict.REGRESSION for r in aa) == 0
    assert sum(r.flagged == "regression" for r in aa) <= 6          # the screen: 1 % a direction
    assert all(r.verdict in (PairedVerdict.SAME, PairedVerdict.INCONCLUSIVE, PairedVerdict.CANDIDATE) for r in aa
               if r.verdict is not PairedVerdict.IMPROVEMENT)
    inside = [sequential(2000 + s, 1.03) for s in range(300)]
    assert sum(r.verdict is PairedVerdict.REGRESSION for r in inside) <= 3
    big = [sequential(3000 + s, 1.2) for s in range(100)]
    assert all(r.verdict is PairedVerdict.REGRESSION for r in big)
    ten = [sequential(4000 + s, 1.1) for s in range(200)]
    assert sum(r.verdict is PairedVerdict.REGRESSION for r in ten) >= 170


def test_the_order_effect_is_removed_before_the_test() -> None:
    # A 10 % order effect and no code effect: the estimate stays near 1 and its interval narrow.
    rng = np.random.default_rng(9)
    orders = blocks(rng, 20)
    pairs = draw(rng, orders, 1.0, noise=0.01, period=0.10)
    with_order = judge_pairs("t", pairs, orders)
    without = judge_pairs("t", pairs)                 # orders unknown: paired differences only
    assert with_order.crossover and not without.crossover
    assert abs(math.log(with_order.ratio)) < 0.01
    assert (with_order.ci_high - with_order.ci_low) < (without.ci_high - without.ci_low) / 2
    assert "order effect not removed" in without.note
    pooled = pool({"t": pairs}, orders_by_test={"t": orders})
    assert pooled.order is not None and pooled.order.ratio == pytest.approx(math.exp(0.10), abs=0.03)
    assert re.fullmatch(r"order effect: the second call of a pair ran \d+\.\d % faster \(95 % CI "
                        r"\d+\.\d\.\.\d+\.\d %, 20 pairs\); removed per test", pooled.order.describe())


def test_estimate_interval_and_test_are_one_statement() -> None:
    rng = np.random.default_rng(4)
    for s in range(50):
        orders = blocks(rng, 20)
        pairs = draw(rng, orders, 1.06)
        d = np.log(ratios(pairs))
        ab = d[[o == "AB" for o in orders]]
        ba = d[[o == "BA" for o in orders]]
        treatment, _ = ranks.crossover(ab, ba, 0.025)
        r = judge_pairs("t", pairs[:10], orders[:10]) if s % 2 else judge_pairs("t", pairs, orders)
        if r.n_pairs == 20 and not r.flagged:
            assert r.ratio == pytest.approx(math.exp(treatment.estimate))
            assert (r.ci_low, r.ci_high) == pytest.approx((math.exp(treatment.low), math.exp(treatment.high)))
            assert (r.ci_low > 1.0) == (ranks.crossover_p(ab, ba, 0.0, greater=True) <= 0.025)


def test_the_pooled_line() -> None:
    rng = np.random.default_rng(100)
    orders = blocks(rng, 20)
    session = {f"test_{i}": draw(rng, orders, 1.2) for i in range(3)}
    pooled = pool(session, orders_by_test={k: orders for k in session})
    estimates = [judge_pairs(k, v, orders).ratio for k, v in session.items()]
    assert pooled.ci_low < pooled.ratio < pooled.ci_high and pooled.ci_low > 1 + DEFAULT_FLOOR
    assert pooled.verdict is PairedVerdict.REGRESSION and pooled.p_value <= 0.01
    assert pooled.p_against == pytest.approx(1 + DEFAULT_FLOOR)
    assert (pooled.n_tests, pooled.n_pairs) == (3, 60)
    assert min(estimates) * 0.9 < pooled.ratio < max(estimates) * 1.1
    assert re.fullmatch(r"head/base RTF 1\.\d\dx \(95 % CI 1\.\d\d-1\.\d\d\) over 3 tests, 60 pairs: regression",
                        pooled.describe())


def test_the_pooled_bound_must_clear_the_floor() -> None:
    # +3 % over 24 tests: significant against 1 but inside the floor: not a pooled regression.
    rng = np.random.default_rng(300)
    orders = blocks(rng, 20)
    session = {f"t{i}": draw(rng, orders, 1.03) for i in range(24)}
    pooled = pool(session, orders_by_test={k: orders for k in session})
    assert pooled.ci_low > 1.0 and pooled.verdict is not PairedVerdict.REGRESSION
    aa = {f"t{i}": draw(rng, orders, 1.0) for i in range(24)}
    assert pool(aa, orders_by_test={k: orders for k in aa}).verdict is PairedVerdict.SAME


def test_pooled_unknown_while_a_test_wants_pairs_then_inconclusive() -> None:
    rng = np.random.default_rng(7)
    orders = blocks(rng, 20)
    short = {"a": draw(rng, orders[:4], 1.04, noise=0.2), "b": draw(rng, orders[:4], 1.04, noise=0.2)}
    assert pool(short, orders_by_test={k: orders[:4] for k in short}).verdict is PairedVerdict.UNKNOWN
    capped = {"a": draw(rng, orders, 1.03, noise=0.2), "b": draw(rng, orders, 0.99, noise=0.2)}
    results = [judge_pairs(k, v, orders) for k, v in capped.items()]
    assert all(not wants_more_pairs(r) for r in results)
    assert pool(capped, results, orders_by_test={k: orders for k in capped}).verdict is PairedVerdict.INCONCLUSIVE


def test_looks_and_attainable_p() -> None:
    assert looks() == (10, 20)
    assert Rule().screen_looks == (10, 20)
    assert Rule().confirm_looks == (30, 60) == looks(max_pairs=DEFAULT_CONFIRM_PAIRS)
    assert min_pairs(0.05) == 5 and min_pairs(0.01) == 7
    assert min_attainable_p(8) == 2 ** -8 and min_attainable_p(0) == 1.0
    r = judge_pairs("t", [(0.3, 0.3)] * 4)
    assert r.verdict is PairedVerdict.UNKNOWN and r.wanted == 6 and "the first look is at 10" in r.note


def test_every_pair_equal_is_same() -> None:
    r = judge_pairs("t", [(0.3, 0.3)] * 10, ["AB", "BA"] * 5)
    assert r.verdict is PairedVerdict.SAME and r.ratio == 1.0


@pytest.mark.parametrize(("pairs", "message"), [
    ([], r"test 'tests/x.py::t' has no pairs"),
    ([(0.3, 0.3), (0.0, 0.3)], r"pair 2 has head 0\.0; paired values must be positive finite"),
    ([(0.3, -0.1)], r"pair 1 has base -0\.1;"),
    ([(0.3, 0.3), (0.3, 0.3), (math.nan, 0.3)], r"pair 3 has head nan;"),
    ([(0.3, math.inf)], r"pair 1 has base inf;"),
    ([(0.3, 0.3, 0.3)], r"pair 1 is \(0\.3, 0\.3, 0\.3\), not \(head, base\)"),
])
def test_bad_pairs_are_refused_naming_the_value(pairs: list[Pair], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_pairs("tests/x.py::t", pairs)
    with pytest.raises(ValueError, match=message):
        pool({"tests/x.py::t": pairs})


def test_bad_orders_are_refused() -> None:
    with pytest.raises(ValueError, match=r"order 'BB' is not 'AB'"):
        judge_pairs("t", [(0.3, 0.3)] * 2, ["AB", "BB"])
    with pytest.raises(ValueError, match=r"1 orders for 2 pairs"):
        judge_pairs("t", [(0.3, 0.3)] * 2, ["AB"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 0.0}, r"alpha 0\.0 is not between 0 and 0\.5"),
    ({"alpha": 0.7}, r"alpha 0\.7"),
    ({"tolerance": -0.05}, r"tolerance -0\.05 is not a fraction"),
    ({"floor": 0.0}, r"floor 0\.0 is not a fraction"),
    ({"confidence": 95}, r"confidence 95 is not between 0 and 1"),
    ({"resamples": 10}, r"resamples 10 is too few"),
    ({"n_looks": 0}, r"n_looks 0 is not a positive number"),
    ({"max_pairs": 6}, r"max_pairs 6 is below 7, .* p <= 0\.01 \(alpha 0\.02 over 2 looks\)"),
    ({"confirm_pairs": 6}, r"max_pairs 6 is below 8"),
])
def test_bad_rules_are_refused_naming_the_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(**kwargs)  # type: ignore[arg-type]


def test_no_tests_to_pool() -> None:
    with pytest.raises(ValueError, match="no tests to pool"):
        pool({})


def test_the_estimate_cancels_the_order_effect_and_the_bootstrap_uses_the_same_estimator() -> None:
    from pytest_cosyvoice.tracking.pair_logs import crossover_shifts, estimate, walsh_medians

    rng = np.random.default_rng(5)
    d = rng.normal(0.05, 0.09, 16)
    orders = ["AB", "BA", "BA", "AB"] * 4
    period = np.array([0.08 if o == "AB" else -0.08 for o in orders])
    assert estimate(d + period, orders) == pytest.approx(estimate(d, orders), abs=1e-12)
    # Pairs of one order: the period is not removed, it moves the estimate by itself.
    assert estimate(d + 0.08, [""] * 16) == pytest.approx(estimate(d, [""] * 16) + 0.08, abs=1e-12)
    ab, ba = d[[o == "AB" for o in orders]], d[[o == "BA" for o in orders]]
    batch = np.stack([ab, ab[::-1]]), np.stack([ba, ba])
    assert crossover_shifts(*batch).tolist() == [estimate(d, orders)] * 2   # row order does not matter
    assert walsh_medians(np.stack([d, d]))[1] == estimate(d, [""] * 16)
