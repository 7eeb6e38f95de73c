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

The session level (the pooled verdict and the order effect) is `tracking.pooled`; both read the
pairs through `tracking.pair_logs`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from . import ranks
from .drift import DEFAULT_ALPHA, DEFAULT_TOLERANCE
from .pair_logs import Floats, Pair, by_order, checked_orders, log_ratios
from .paired_results import PairedResult, PairedVerdict, count

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
    "PairedResult",
    "PairedVerdict",
    "Rule",
    "judge_pairs",
    "looks",
    "min_attainable_p",
    "min_pairs",
    "pairs_wanted",
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


@dataclass(frozen=True)
class _Test:
    """What every result of one test's verdict carries, whichever stage gave it."""

    nodeid: str
    n_pairs: int
    rule: Rule


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


def _look(d: Floats, orders: Sequence[str], alpha: float, confidence: float) -> _Look:
    tail = (1.0 - confidence) / 2.0
    groups = by_order(d, orders)
    if groups is not None:
        bound, _ = ranks.crossover(groups[0], groups[1], alpha)
        ci, _ = ranks.crossover(groups[0], groups[1], tail)
    else:
        bound, ci = ranks.one_sample(d, alpha), ranks.one_sample(d, tail)
    return _Look(bound.estimate, bound.low, bound.high, ci.low, ci.high, len(d), groups is not None)


def _p(d: Floats, orders: Sequence[str], theta0: float, greater: bool) -> float:
    groups = by_order(d, orders)
    if groups is not None:
        return ranks.crossover_p(groups[0], groups[1], theta0, greater=greater)
    return ranks.one_sample_p(d, theta0, greater=greater)


def judge_pairs(nodeid: str, pairs: Sequence[Pair], orders: Sequence[str] | None = None, *,
                rule: Rule | None = None) -> PairedResult:
    """The paired verdict of one test on its (head, base) pairs in the order they were measured,
    `orders` their "AB"/"BA" (None: unknown, judged as paired differences). The module docstring
    gives the rule."""
    rule = rule or Rule()
    d = log_ratios(pairs, nodeid)
    o = checked_orders(orders, len(d), nodeid)
    band = (math.log1p(-rule.tolerance) if rule.tolerance < 1 else -math.inf, math.log1p(rule.tolerance))
    base = _Test(nodeid, len(d), rule)

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
            return _confirm(base, d[at:], o[at:], "regression", lk, at)
        if lk.high < 0.0 and lk.estimate < band[0]:
            return _confirm(base, d[at:], o[at:], "improvement", lk, at)
        if band[0] <= lk.ci_low and lk.ci_high <= band[1]:
            return _result(base, lk, PairedVerdict.SAME, 1.0, _p(d[:at], o[:at], 0.0, lk.estimate >= 0))
    last = screen[-1]
    lk = _look(d[:last], o[:last], rule.alpha_look, rule.confidence)
    return _result(base, lk, PairedVerdict.INCONCLUSIVE, 1.0, _p(d[:last], o[:last], 0.0, lk.estimate >= 0),
                   note=f"inconclusive: {count(last, 'pair')}, CI {_ci(lk)}")


def _confirm(base: _Test, fresh: Floats, orders: Sequence[str],
             direction: Literal["regression", "improvement"],
             screened: _Look, at: int) -> PairedResult:
    """Stage 2: the candidate's fresh pairs after look `at`."""
    rule = base.rule
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


def _result(base: _Test, lk: _Look, verdict: PairedVerdict, against: float, p: float, *,
            wanted: int = 0, flagged: Literal["", "regression", "improvement"] = "", confirm: int = 0,
            note: str = "") -> PairedResult:
    rule = base.rule
    order = "" if lk.crossover else "order effect not removed (pairs of one order)"
    return PairedResult(
        nodeid=base.nodeid, n_pairs=base.n_pairs, ratio=math.exp(lk.estimate),
        ci_low=math.exp(lk.ci_low), ci_high=math.exp(lk.ci_high), p_value=p, p_against=against, verdict=verdict,
        alpha=rule.alpha, tolerance=rule.tolerance, floor=rule.floor, confidence=rule.confidence,
        max_pairs=rule.max_pairs, n_looks=rule.n_looks, confirm_pairs=confirm, flagged=flagged, wanted=wanted,
        crossover=lk.crossover, note="; ".join(x for x in (note, order) if x))


def _ci(lk: _Look) -> str:
    return f"{math.exp(lk.ci_low):.2f}..{math.exp(lk.ci_high):.2f}"


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise ValueError(f"alpha {alpha!r} is not between 0 and 0.5")
