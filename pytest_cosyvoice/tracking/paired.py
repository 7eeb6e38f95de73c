"""Paired A/B speed verdicts: the statistics, for head and base run back to back in one session.

Each pair is one moment of the machine measured on both sides (head first, "AB", or base first,
"BA"), so the ratio `head / base` cancels what the machine did in that moment; what is left is the
code's effect, the order's effect (the second call of a pair tends to run faster) and the pair's own
noise. The A/B mode (`recording.pairing`) produces the pairs in balanced AB/BA blocks; this module
only judges them. No pytest import; numpy is a core dependency of the plugin.

Per test, on its pairs of a positive metric (RTF, or first-chunk ms), d = log(head / base):

    estimate   Hodges-Lehmann, with the order (period) effect removed: the two-period crossover of
               tracking.ranks (`crossover`: d_AB = delta + p, d_BA = delta - p); pairs of one order
               only are judged as paired differences (`one_sample`), and the note says so
    bounds     the same ranks inverted (Mann-Whitney, or signed-rank): one-sided at the look's alpha,
               so "the bound clears x" and "the rank test of x rejects" are one statement

A verdict comes in two stages, so that the session's exit status has a stated rate:

1. **Screen** (looks at 10 and 20 pairs by default, `screen_alpha / n_looks` = 0.01 each): a test
   whose bound excludes 1 AND whose estimate is beyond the tolerance (above 1 + tolerance, or below
   1 - tolerance) is a *candidate*; a test whose 95 % interval lies within the tolerance is "same".
2. **Confirm**: a candidate gets fresh pairs (looks at 30 and 60 by default, `confirm_pairs`), judged
   on those alone: "regression" when their one-sided (1 - alpha / n_looks) bound lies above
   1 + floor, "improvement" when below 1 / (1 + floor). A candidate the fresh pairs cannot confirm
   (their bound on the other side of the floor, or the cap reached) stays "candidate": reported,
   never failing.

So a per-test "regression" guarantees a slowdown beyond the floor at 99 % one-sided confidence, on
pairs measured after the test was flagged; a test that is no slower than the base is a candidate
at most `screen_alpha` of the time (the screen's Bonferroni looks, one direction: half of it), and
confirmed at most `alpha` of those: at most 1e-4 a test at the defaults, under 0.5 % over a session
of 48 verdicts (24 tests, RTF and first chunk).
`floor` defaults to 0.04 (the smallest slowdown a failing test guarantees), `tolerance` 0.05
(the band of "same"); benchmarks/paired_rates.py draws the rates and docs/reports.md holds them.

Session level (`pool`): the pooled ratio is the geometric mean of the tests' estimates (each test
weighs the same, however many pairs it needed); its interval comes from a stratified bootstrap
(the tests fixed, each test's AB and BA pairs resampled within their order, `DEFAULT_RESAMPLES`
10^4 resamples). "regression" when the one-sided (1 - alpha) bound lies above 1 + floor and the
ratio beyond the tolerance, likewise "improvement" below 1 / (1 + floor), "same" when the 95 %
interval lies within the tolerance; otherwise "unknown" while a test still wants pairs,
"inconclusive" once none does. `order_effect` says how much faster the second call of a pair ran
over the session's pairs.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from . import ranks
from .drift import DEFAULT_ALPHA, DEFAULT_TOLERANCE
from .paired_results import OrderEffect, PairedResult, PairedVerdict, PooledResult, count

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_CONFIRM_PAIRS",
    "DEFAULT_FLOOR",
    "DEFAULT_LOOKS",
    "DEFAULT_MAX_PAIRS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SCREEN_ALPHA",
    "DEFAULT_SEED",
    "DEFAULT_TOLERANCE",
    "OrderEffect",
    "Pair",
    "PairedResult",
    "PairedVerdict",
    "PooledResult",
    "Rule",
    "judge_pairs",
    "looks",
    "min_attainable_p",
    "min_pairs",
    "order_effect",
    "pairs_wanted",
    "pool",
    "pooled_ratio",
    "ratios",
    "wants_more_pairs",
]

# 20 pairs: Pinpoint needs about 15 repeats a side to see a shift of 1.5 IQR; paired designs need
# fewer, so 20 leaves room for the tests near the tolerance without doubling a session's time.
DEFAULT_MAX_PAIRS = 20
# 2 looks (10 and 20 pairs at p <= 0.005 each): a clear change stops at the first.
DEFAULT_LOOKS = 2
# 60 fresh pairs for a candidate (looks at 30 and 60): at the measured noise (log-ratio sd 0.093 a
# pair) a true +10 % is confirmed against the 1.04 floor in about 94 of 100 tests; 40 gave 81.
DEFAULT_CONFIRM_PAIRS = 60
# The smallest slowdown a failing verdict guarantees (at 99 % one-sided confidence): below the 5 %
# tolerance so that +10 % is confirmed on 40 pairs, above +3 % so that a slowdown inside the
# tolerance does not fail a session (docs/reports.md, "The release verdict").
DEFAULT_FLOOR = 0.04
# The screen's level (two looks at 0.01 each): it only picks the tests that get fresh pairs, so it
# can be lenient; the guarantee rests on the confirmation at `alpha`. Stricter, it would lose tests a
# true +10 % slows (about 8 in 100 at 0.005 a look).
DEFAULT_SCREEN_ALPHA = 0.02
DEFAULT_CONFIDENCE = 0.95
# 10^4 resamples: the session's 1 % bound rests on 100 resampled values.
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 20260117

Pair = tuple[float, float]
_Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Rule:
    """The verdict rule's parameters (the module docstring says what each does)."""

    alpha: float = DEFAULT_ALPHA
    tolerance: float = DEFAULT_TOLERANCE
    floor: float = DEFAULT_FLOOR
    max_pairs: int = DEFAULT_MAX_PAIRS
    n_looks: int = DEFAULT_LOOKS
    confirm_pairs: int = DEFAULT_CONFIRM_PAIRS
    screen_alpha: float = DEFAULT_SCREEN_ALPHA
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        looks(self.screen_alpha, self.max_pairs, self.n_looks)     # the levels, the looks and the caps
        looks(self.alpha, self.confirm_pairs, self.n_looks)
        if not (0.0 <= self.tolerance < 1.0):
            raise ValueError(f"tolerance {self.tolerance!r} is not a fraction between 0 and 1 (0.05 means 5 %)")
        if not (0.0 < self.floor < 1.0):
            raise ValueError(f"floor {self.floor!r} is not a fraction between 0 and 1 (0.04 means 4 %)")
        if not (0.0 < self.confidence < 1.0):
            raise ValueError(f"confidence {self.confidence!r} is not between 0 and 1 (0.95 means a 95 % CI)")
        if self.resamples < 100:
            raise ValueError(f"resamples {self.resamples!r} is too few for a bootstrap percentile (at least 100)")

    @property
    def alpha_look(self) -> float:
        return self.alpha / self.n_looks

    @property
    def screen_alpha_look(self) -> float:
        return self.screen_alpha / self.n_looks

    @property
    def screen_looks(self) -> tuple[int, ...]:
        return looks(self.screen_alpha, self.max_pairs, self.n_looks)

    @property
    def confirm_looks(self) -> tuple[int, ...]:
        return looks(self.alpha, self.confirm_pairs, self.n_looks)


def min_attainable_p(n_pairs: int) -> float:
    """Smallest one-sided exact signed-rank p that n pairs can produce (all n ratios on one side): 1 / 2^n."""
    return 1.0 if n_pairs <= 0 else 0.5 ** n_pairs


def min_pairs(alpha: float = DEFAULT_ALPHA) -> int:
    """The least number of pairs at which the one-sided signed-rank test can reach p <= alpha:
    5 at 0.05 (1/32), 7 at 0.01 (1/128)."""
    _check_alpha(alpha)
    return max(1, math.ceil(math.log2(1.0 / alpha) - 1e-12))


def looks(alpha: float = DEFAULT_ALPHA, max_pairs: int = DEFAULT_MAX_PAIRS,
          n_looks: int = DEFAULT_LOOKS) -> tuple[int, ...]:
    """The pair counts at which a stage is judged: `max_pairs` split evenly into `n_looks`, none before
    `min_pairs(alpha / n_looks)` (10, 20 by default). ValueError when the cap is below the first
    look, naming both."""
    _check_alpha(alpha)
    if n_looks < 1:
        raise ValueError(f"n_looks {n_looks!r} is not a positive number of looks")
    first = min_pairs(alpha / n_looks)
    if max_pairs < first:
        raise ValueError(f"max_pairs {max_pairs!r} is below {first}, the fewest pairs at which a one-sided "
                         f"signed-rank test can reach p <= {alpha / n_looks:.3g} (alpha {alpha:g} over "
                         f"{count(n_looks, 'look')})")
    return tuple(sorted({max(first, math.ceil(max_pairs * i / n_looks)) for i in range(1, n_looks + 1)}))


def pairs_wanted(result: PairedResult) -> int:
    """How many more pairs the test wants before it is judged again: 0 once it has a verdict."""
    return result.wanted


def wants_more_pairs(result: PairedResult) -> bool:
    """Whether the test's verdict is still "unknown", i.e. more pairs can decide it."""
    return result.wanted > 0


def ratios(pairs: Sequence[Pair], nodeid: str = "") -> list[float]:
    """head / base per pair; ValueError naming the test, the pair and the value for a pair that is
    not two positive finite numbers, or for no pairs at all."""
    where = f"test {nodeid!r}" if nodeid else "the test"
    if len(pairs) == 0:
        raise ValueError(f"{where} has no pairs: a paired verdict needs at least one (head, base) pair")
    out: list[float] = []
    for i, pair in enumerate(pairs, 1):
        if len(pair) != 2:
            raise ValueError(f"{where}: pair {i} is {pair!r}, not (head, base)")
        for side, raw in zip(("head", "base"), pair, strict=True):
            value = float(raw)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{where}: pair {i} has {side} {raw!r}; paired values must be positive "
                                 f"finite numbers (RTF, or first-chunk ms)")
        out.append(float(pair[0]) / float(pair[1]))
    return out


@dataclass(frozen=True)
class _Look:
    """One look's statement about delta = log(head / base) on some pairs."""

    estimate: float
    low: float              # one-sided bound at the look's alpha
    high: float
    ci_low: float           # the `confidence` interval of the same ranks
    ci_high: float
    n: int
    crossover: bool         # the order effect was removed (both orders present)


def _orders(orders: Sequence[str] | None, n: int, nodeid: str) -> list[str]:
    if orders is None:
        return [""] * n
    if len(orders) != n:
        raise ValueError(f"test {nodeid!r}: {len(orders)} orders for {n} pairs")
    bad = [o for o in orders if o not in ("AB", "BA", "")]
    if bad:
        raise ValueError(f"test {nodeid!r}: order {bad[0]!r} is not 'AB' (head first) or 'BA' (base first)")
    return list(orders)


def _split(d: _Floats, orders: Sequence[str]) -> tuple[_Floats, _Floats] | None:
    ab = d[[o == "AB" for o in orders]]
    ba = d[[o == "BA" for o in orders]]
    return (ab, ba) if len(ab) and len(ba) and len(ab) + len(ba) == len(d) else None


def _look(d: _Floats, orders: Sequence[str], alpha: float, confidence: float) -> _Look:
    tail = (1.0 - confidence) / 2.0
    groups = _split(d, orders)
    if groups is not None:
        bound, _ = ranks.crossover(groups[0], groups[1], alpha)
        ci, _ = ranks.crossover(groups[0], groups[1], tail)
    else:
        bound, ci = ranks.one_sample(d, alpha), ranks.one_sample(d, tail)
    return _Look(bound.estimate, bound.low, bound.high, ci.low, ci.high, len(d), groups is not None)


def _p(d: _Floats, orders: Sequence[str], theta0: float, greater: bool) -> float:
    groups = _split(d, orders)
    if groups is not None:
        return ranks.crossover_p(groups[0], groups[1], theta0, greater=greater)
    return ranks.one_sample_p(d, theta0, greater=greater)


def judge_pairs(nodeid: str, pairs: Sequence[Pair], orders: Sequence[str] | None = None, *,
                rule: Rule | None = None) -> PairedResult:
    """The paired verdict of one test on its (head, base) pairs in the order they were measured,
    `orders` their "AB"/"BA" (None: unknown, judged as paired differences). The module docstring
    gives the rule."""
    rule = rule or Rule()
    d = np.log(np.asarray(ratios(pairs, nodeid), dtype=np.float64))
    o = _orders(orders, len(d), nodeid)
    band = (math.log1p(-rule.tolerance) if rule.tolerance < 1 else -math.inf, math.log1p(rule.tolerance))
    base = {"nodeid": nodeid, "n_pairs": len(d), "rule": rule}

    screen = rule.screen_looks
    if len(d) < screen[0]:
        whole = _look(d, o, rule.alpha_look, rule.confidence)
        return _result(base, whole, PairedVerdict.UNKNOWN, 1.0, _p(d, o, 0.0, whole.estimate >= 0),
                       wanted=screen[0] - len(d), note=f"{count(len(d), 'pair')}: the first look is at {screen[0]}")
    for at in screen:
        if len(d) < at:
            whole = _look(d[:at], o[:at], rule.alpha_look, rule.confidence)
            return _result(base, whole, PairedVerdict.UNKNOWN, 1.0, _p(d, o, 0.0, whole.estimate >= 0),
                           wanted=at - len(d))
        lk = _look(d[:at], o[:at], rule.screen_alpha_look, rule.confidence)
        if lk.low > 0.0 and lk.estimate > band[1]:
            return _confirm(base, rule, d[at:], o[at:], "regression", lk, at)
        if lk.high < 0.0 and lk.estimate < band[0]:
            return _confirm(base, rule, d[at:], o[at:], "improvement", lk, at)
        if band[0] <= lk.ci_low and lk.ci_high <= band[1]:
            return _result(base, lk, PairedVerdict.SAME, 1.0, _p(d[:at], o[:at], 0.0, lk.estimate >= 0))
    last = screen[-1]
    lk = _look(d[:last], o[:last], rule.alpha_look, rule.confidence)
    return _result(base, lk, PairedVerdict.INCONCLUSIVE, 1.0, _p(d[:last], o[:last], 0.0, lk.estimate >= 0),
                   note=f"inconclusive: {count(last, 'pair')}, CI {_ci(lk)}")


def _confirm(base: dict[str, object], rule: Rule, fresh: _Floats, orders: Sequence[str],
             direction: Literal["regression", "improvement"],
             screened: _Look, at: int) -> PairedResult:
    """Stage 2: the candidate's fresh pairs after look `at`."""
    slower = direction == "regression"
    floor_log = math.log1p(rule.floor) if slower else -math.log1p(rule.floor)
    against = math.exp(floor_log)
    flagged = (f"candidate {direction} at {count(at, 'pair')} "
               f"({math.exp(screened.estimate):.2f}x, CI {_ci(screened)})")
    lk = screened
    for n in rule.confirm_looks:
        if len(fresh) < n:
            return _result(base, lk, PairedVerdict.UNKNOWN, against, math.nan, wanted=n - len(fresh), flagged=direction,
                           confirm=len(fresh), note=f"{flagged}; confirming on fresh pairs, {len(fresh)} of {n}")
        lk = _look(fresh[:n], orders[:n], rule.alpha_look, rule.confidence)
        p = _p(fresh[:n], orders[:n], floor_log, slower)
        if (lk.low > floor_log) if slower else (lk.high < floor_log):
            verdict = PairedVerdict.REGRESSION if slower else PairedVerdict.IMPROVEMENT
            return _result(base, lk, verdict, against, p, flagged=direction, confirm=n,
                           note=f"{flagged}; confirmed on {count(n, 'fresh pair')}")
        if (lk.high < floor_log) if slower else (lk.low > floor_log):
            return _result(base, lk, PairedVerdict.CANDIDATE, against, p, flagged=direction, confirm=n,
                           note=f"{flagged}; not confirmed: {count(n, 'fresh pair')} put it "
                                f"{'below' if slower else 'above'} {against:.2f}x")
    return _result(base, lk, PairedVerdict.CANDIDATE, against, p, flagged=direction, confirm=rule.confirm_looks[-1],
                   note=f"{flagged}; not confirmed in {count(rule.confirm_looks[-1], 'fresh pair')} "
                        f"(CI {_ci(lk)} against {against:.2f}x)")


def _result(base: Mapping[str, object], lk: _Look, verdict: PairedVerdict, against: float, p: float, *,
            wanted: int = 0, flagged: Literal["", "regression", "improvement"] = "", confirm: int = 0,
            note: str = "") -> PairedResult:
    rule = base["rule"]
    assert isinstance(rule, Rule)
    order = "" if lk.crossover else "order effect not removed (pairs of one order)"
    return PairedResult(
        nodeid=str(base["nodeid"]), n_pairs=int(str(base["n_pairs"])), ratio=math.exp(lk.estimate),
        ci_low=math.exp(lk.ci_low), ci_high=math.exp(lk.ci_high), p_value=p, p_against=against, verdict=verdict,
        alpha=rule.alpha, tolerance=rule.tolerance, floor=rule.floor, confidence=rule.confidence,
        max_pairs=rule.max_pairs, n_looks=rule.n_looks, confirm_pairs=confirm, flagged=flagged, wanted=wanted,
        crossover=lk.crossover, note="; ".join(x for x in (note, order) if x))


def _ci(lk: _Look) -> str:
    return f"{math.exp(lk.ci_low):.2f}..{math.exp(lk.ci_high):.2f}"


def _estimate(d: _Floats, orders: Sequence[str]) -> float:
    groups = _split(d, orders)
    if groups is None:
        return float(np.median(_walsh(d)))
    return 0.5 * float(np.median(np.subtract.outer(groups[0], -groups[1])))


def _walsh(d: _Floats) -> _Floats:
    i, j = np.triu_indices(len(d))
    out: _Floats = (d[i] + d[j]) / 2.0
    return out


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
    per_test = []
    for nodeid, p in pairs_by_test.items():
        d = np.log(np.asarray(ratios(p, nodeid), dtype=np.float64))
        per_test.append((d, _orders(orders_by_test.get(nodeid), len(d), nodeid)))
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
    per_test = []
    for nodeid, p in pairs_by_test.items():
        d = np.log(np.asarray(ratios(p, nodeid), dtype=np.float64))
        per_test.append((d, _orders(orders_by_test.get(nodeid), len(d), nodeid)))
    return _pooled_ratio(per_test)


def _pooled_ratio(per_test: Sequence[tuple[_Floats, Sequence[str]]]) -> float:
    return math.exp(float(np.mean([_estimate(d, o) for d, o in per_test])))


def order_effect(per_test: Sequence[tuple[_Floats, Sequence[str]]], confidence: float = DEFAULT_CONFIDENCE
                 ) -> OrderEffect | None:
    """How much slower the first call of a pair ran than the second, over the session's pairs: each
    test's log ratios centred on its own estimate, then the crossover's period half-shift between
    the AB and BA pairs; None without both orders."""
    ab: list[float] = []
    ba: list[float] = []
    for d, o in per_test:
        groups = _split(d, o)
        if groups is None:
            continue
        centre = _estimate(d, o)
        ab.extend((groups[0] - centre).tolist())
        ba.extend((groups[1] - centre).tolist())
    if not ab or not ba:
        return None
    shift = ranks.two_sample(ab, ba, (1.0 - confidence) / 2.0).scaled(0.5)
    return OrderEffect(math.exp(shift.estimate), math.exp(shift.low), math.exp(shift.high), len(ab) + len(ba))


def _rng(seed: int, nodeid: str) -> np.random.Generator:
    # Mixing the nodeid in keeps each test's interval independent of the session's test order.
    return np.random.default_rng([seed, zlib.crc32(nodeid.encode("utf-8"))])


def _resampled_estimates(d: _Floats, orders: Sequence[str], resamples: int, rng: np.random.Generator) -> _Floats:
    groups = _split(d, orders)
    out = np.empty(resamples, dtype=np.float64)
    step = 2000
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        if groups is None:
            picks = d[rng.integers(0, len(d), size=(b, len(d)))]
            i, j = np.triu_indices(len(d))
            out[start:start + b] = np.median((picks[:, i] + picks[:, j]) / 2.0, axis=1)
        else:
            ab, ba = groups
            x = ab[rng.integers(0, len(ab), size=(b, len(ab)))]
            y = -ba[rng.integers(0, len(ba), size=(b, len(ba)))]
            out[start:start + b] = 0.5 * np.median((x[:, :, None] - y[:, None, :]).reshape(b, -1), axis=1)
    return out


def _stratified_bootstrap(per_test: Sequence[tuple[_Floats, Sequence[str]]], resamples: int,
                          rng: np.random.Generator) -> _Floats:
    # The tests are fixed (they are the suite, not a sample of it); each test's pairs are resampled
    # within their order, so the pooled interval counts each test's own noise once.
    total = np.zeros(resamples, dtype=np.float64)
    for d, o in per_test:
        total += _resampled_estimates(d, o, resamples, rng)
    out: _Floats = total / len(per_test)
    return out


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise ValueError(f"alpha {alpha!r} is not between 0 and 0.5")
