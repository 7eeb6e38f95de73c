"""Paired A/B speed verdicts: the statistics, for head and base run back to back in one session.

Each pair is one moment of the machine measured on both sides (head first or base first), so the
ratio `head / base` cancels what the machine did in that moment; what is left is the code's effect
plus the pair's own noise. The A/B mode (`recording.pairing`) produces the pairs; this module only
judges them. No pytest import; scipy and numpy are core dependencies of the plugin.

Per test, on its pairs (head, base) of a positive metric (RTF, or first-chunk ms):

    ratio        = head / base, per pair
    median ratio = median of the ratios                                  (what is judged)
    p            = one-sided Wilcoxon signed-rank test on log(ratio), scipy.stats.wilcoxon:
                   alternative "greater" (head slower) for a median ratio >= 1, "less" otherwise;
                   exact for up to 50 non-zero log ratios without ties, scipy's method "auto"
                   otherwise; pairs with a ratio of exactly 1 say nothing about the direction and
                   are dropped from the test (scipy's zero_method "wilcox")
    CI           = percentile bootstrap of the median ratio over the pairs (`DEFAULT_RESAMPLES`
                   resamples, numpy Generator seeded from `seed` and the test's nodeid, so a rerun on
                   the same pairs gives the same interval whatever else the session holds)

A test is judged at a few **looks**, not after every pair: adding pairs until the test turns
significant is optional stopping, and judging after each of pairs 7..20 at p <= 0.01 called 2.8 % of
400 simulated A/A tests (10 % log-normal noise a side) regressions and 2.8 % improvements. So the
cap `max_pairs` is split into `n_looks` looks (`looks()`: 10 and 20 pairs by default) and each look
tests at `alpha / n_looks` (Bonferroni over the looks; the same tests: 0.5 % and 0.5 %; the table
and its command are in docs/reports.md, benchmarks/paired_rates.py draws them).
`pairs_wanted` says how many pairs the next look needs. `n_looks=1` judges once, at `max_pairs`.

Verdicts (`PairedVerdict`), in this order:

* fewer pairs than the first look: "unknown" (more pairs wanted). The first look is at least
  `min_pairs(alpha / n_looks)`: below it the signed-rank test cannot reach the look's alpha (its
  smallest one-sided p is 1 / 2^n: 4 pairs 0.0625, 5 pairs 0.031, 7 pairs 0.0078, 8 pairs 0.0039),
  and a "same" resting on a bootstrap of three values would claim too much.
* "regression": p <= alpha / n_looks AND median ratio > 1 + tolerance: significance and magnitude,
  the rule of Perfherder and of dotnet/performance's comparer, as in the cross-session drift rule.
* "improvement": p <= alpha / n_looks AND median ratio < 1 - tolerance.
* "same": the whole CI lies within [1 - tolerance, 1 + tolerance].
* otherwise "unknown": more pairs wanted, up to `max_pairs`; a test that reached `max_pairs` is
  "inconclusive", noted as "inconclusive: N pairs, CI a..b".

Session level (`pool`): one pooled ratio over all tests, the geometric mean of the per-test median
ratios (each test weighs the same, however many pairs it needed), with a CI from a hierarchical
bootstrap: resample the tests, then the pairs within each resampled test, and take the geometric
mean of the resampled medians. Significance there is the bootstrap's: the one-sided p is the share
of resampled pooled ratios at or beyond 1 on the far side (at or below 1 for a pooled ratio above
1), and "significant" means p <= alpha, i.e. the one-sided (1 - alpha) bootstrap bound excludes 1.
The pooled ratio is judged once, at the end of the session, so at alpha itself. The verdict follows
the per-test rule: "regression" when significant and the pooled ratio is above
1 + tolerance, "improvement" likewise below 1 - tolerance, "same" when the CI lies within the
tolerance; otherwise "unknown" while any test still wants pairs, "inconclusive" once none does.

Defaults: alpha and tolerance are the drift rule's (`DEFAULT_ALPHA` 0.01, `DEFAULT_TOLERANCE` 0.05),
95 % CIs, `DEFAULT_MAX_PAIRS` 20 pairs a test in `DEFAULT_LOOKS` 2 looks, `DEFAULT_RESAMPLES` 2000
bootstrap resamples.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ..stats import median
from .drift import DEFAULT_ALPHA, DEFAULT_TOLERANCE
from .paired_results import PairedResult, PairedVerdict, PooledResult, count

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_LOOKS",
    "DEFAULT_MAX_PAIRS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_TOLERANCE",
    "Pair",
    "PairedResult",
    "PairedVerdict",
    "PooledResult",
    "judge_pairs",
    "looks",
    "min_attainable_p",
    "min_pairs",
    "pairs_wanted",
    "pool",
    "ratios",
    "wants_more_pairs",
]

# 20 pairs: Pinpoint needs about 15 repeats a side to see a shift of 1.5 IQR; paired designs need
# fewer, so 20 leaves room for the tests near the tolerance without doubling a session's time.
DEFAULT_MAX_PAIRS = 20
# 2 looks (10 and 20 pairs at p <= 0.005 each): a clear change stops at the first, one near the
# tolerance gets 20. Simulated at 10 % noise a side (benchmarks/paired_rates.py), 400 tests each:
# +20 % found 99 % of the time in 12.8 pairs on average; +10 % 54 % with 2 looks, 47 % with 3
# (9, 14, 20), 70 % with one look at 20 (which spends 20 pairs on every test). Each look more costs
# power near the tolerance.
DEFAULT_LOOKS = 2
DEFAULT_CONFIDENCE = 0.95
# 2000 resamples: the 2.5 % and 97.5 % percentiles rest on 50 resampled values each, and the
# session's 1 % bound on 20; more moves the second decimal of a ratio only on a handful of pairs.
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20260117
# Where scipy's `method="auto"` stops using the exact signed-rank distribution.
_EXACT_MAX_N = 50

Pair = tuple[float, float]
_Floats = npt.NDArray[np.float64]


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
    """The pair counts at which a test is judged: `max_pairs` split evenly into `n_looks`, none before
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
    """How many more pairs the test wants before it is judged again: 0 once it has a verdict (or
    reached its cap), otherwise as many as its next look needs."""
    if not result.wants_more:
        return 0
    schedule = looks(result.alpha, result.max_pairs, result.n_looks)
    return next((n for n in schedule if n > result.n_pairs), result.max_pairs) - result.n_pairs


def wants_more_pairs(result: PairedResult) -> bool:
    """Whether the test's verdict is still "unknown" below its cap, i.e. another pair can decide it."""
    return pairs_wanted(result) > 0


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


def judge_pairs(nodeid: str, pairs: Sequence[Pair], *, alpha: float = DEFAULT_ALPHA,
                tolerance: float = DEFAULT_TOLERANCE, max_pairs: int = DEFAULT_MAX_PAIRS,
                n_looks: int = DEFAULT_LOOKS, confidence: float = DEFAULT_CONFIDENCE,
                resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> PairedResult:
    """The paired verdict of one test on its (head, base) pairs (the module docstring gives the rule).

    Judged with each look's alpha (`alpha / n_looks`) whatever the number of pairs: a caller that
    judges between looks adds looks of its own, which the split does not cover.
    """
    _check_rule(alpha, tolerance, max_pairs, n_looks, confidence, resamples)
    first_look = looks(alpha, max_pairs, n_looks)[0]
    alpha_look = alpha / n_looks
    r = np.asarray(ratios(pairs, nodeid), dtype=np.float64)
    n = len(r)
    mid = median(r.tolist())
    p_value = _signed_rank_p(np.log(r), greater=mid >= 1.0)
    boot = _bootstrap_medians(r, resamples, _rng(seed, nodeid))
    ci_low, ci_high = _interval(boot, confidence)

    note = ""
    if n < first_look:
        verdict = PairedVerdict.UNKNOWN
        note = f"{n} pairs: the first look is at {first_look}"
    else:
        verdict = _rule(mid, p_value, ci_low, ci_high, alpha_look, tolerance) or PairedVerdict.UNKNOWN
    if verdict is PairedVerdict.UNKNOWN and n >= max_pairs:
        verdict = PairedVerdict.INCONCLUSIVE
        note = f"inconclusive: {n} pairs, CI {ci_low:.2f}..{ci_high:.2f}"
    return PairedResult(nodeid=nodeid, n_pairs=n, median_ratio=mid, ci_low=ci_low, ci_high=ci_high,
                        p_value=p_value, verdict=verdict, alpha=alpha, tolerance=tolerance,
                        confidence=confidence, max_pairs=max_pairs, n_looks=n_looks, note=note)


def pool(pairs_by_test: Mapping[str, Sequence[Pair]], results: Sequence[PairedResult] | None = None, *,
         alpha: float = DEFAULT_ALPHA, tolerance: float = DEFAULT_TOLERANCE,
         max_pairs: int = DEFAULT_MAX_PAIRS, n_looks: int = DEFAULT_LOOKS,
         confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
         metric: str = "RTF") -> PooledResult:
    """The session's pooled ratio over all tests (the module docstring gives the rule).

    `results`: the tests' `judge_pairs` results when the caller has them (they decide whether any
    test still wants pairs, i.e. "unknown" against "inconclusive"); judged here with the same rule
    otherwise.
    """
    _check_rule(alpha, tolerance, max_pairs, n_looks, confidence, resamples)
    if not pairs_by_test:
        raise ValueError("no tests to pool: the pooled ratio needs at least one test with pairs")
    per_test = [np.asarray(ratios(p, nodeid), dtype=np.float64) for nodeid, p in pairs_by_test.items()]
    if results is None:
        results = [judge_pairs(nodeid, p, alpha=alpha, tolerance=tolerance, max_pairs=max_pairs,
                               n_looks=n_looks, confidence=confidence, resamples=resamples, seed=seed)
                   for nodeid, p in pairs_by_test.items()]
    log_medians = np.log([median(r.tolist()) for r in per_test])
    ratio = float(np.exp(log_medians.mean()))

    boot = _hierarchical_bootstrap(per_test, resamples, _rng(seed, "\0pooled"))
    ci_low, ci_high = _interval(boot, confidence)
    # The share of resampled pooled ratios on the other side of 1: a one-sided bootstrap p.
    p_value = float(np.mean(boot <= 1.0) if ratio >= 1.0 else np.mean(boot >= 1.0))

    verdict = _rule(ratio, p_value, ci_low, ci_high, alpha, tolerance)
    if verdict is None:
        wanting = any(wants_more_pairs(r) for r in results)
        verdict = PairedVerdict.UNKNOWN if wanting else PairedVerdict.INCONCLUSIVE
    return PooledResult(ratio=ratio, ci_low=ci_low, ci_high=ci_high, p_value=p_value, verdict=verdict,
                        n_tests=len(per_test), n_pairs=sum(len(r) for r in per_test), metric=metric,
                        confidence=confidence)


def _rule(ratio: float, p_value: float, ci_low: float, ci_high: float, alpha: float,
          tolerance: float) -> PairedVerdict | None:
    """The verdict rule, for a test and for the pool alike: significance and magnitude for a
    regression or improvement, the CI within the tolerance for "same"; None when it cannot say."""
    if p_value <= alpha and ratio > 1.0 + tolerance:
        return PairedVerdict.REGRESSION
    if p_value <= alpha and ratio < 1.0 - tolerance:
        return PairedVerdict.IMPROVEMENT
    if 1.0 - tolerance <= ci_low and ci_high <= 1.0 + tolerance:
        return PairedVerdict.SAME
    return None


def _signed_rank_p(log_ratios: _Floats, greater: bool) -> float:
    from scipy.stats import wilcoxon

    # Zeros dropped here rather than left to scipy: its handling of them under method="exact" has
    # changed between the versions the plugin supports (older ones warn and switch to the approximation).
    d = log_ratios[log_ratios != 0.0]
    if len(d) == 0:
        return 1.0      # every pair exactly equal: no evidence either way
    tied = len(np.unique(np.abs(d))) < len(d)
    # "auto" for ties and large counts: the name of the approximate method changed between the scipy
    # versions the plugin supports ("approx" in 1.10, "asymptotic" since), "auto" is in all of them.
    method = "exact" if len(d) <= _EXACT_MAX_N and not tied else "auto"
    result = wilcoxon(d, alternative="greater" if greater else "less", method=method)
    return float(result.pvalue)


def _rng(seed: int, nodeid: str) -> np.random.Generator:
    # Mixing the nodeid in keeps each test's interval independent of the session's test order.
    return np.random.default_rng([seed, zlib.crc32(nodeid.encode("utf-8"))])


def _bootstrap_medians(r: _Floats, resamples: int, rng: np.random.Generator) -> _Floats:
    idx = rng.integers(0, len(r), size=(resamples, len(r)))
    out: _Floats = np.median(r[idx], axis=1)
    return out


def _hierarchical_bootstrap(per_test: Sequence[_Floats], resamples: int, rng: np.random.Generator) -> _Floats:
    k = len(per_test)
    picks = rng.integers(0, k, size=(resamples, k))
    log_medians = np.empty((resamples, k), dtype=np.float64)
    for j, r in enumerate(per_test):
        chosen = picks == j
        count = int(chosen.sum())
        if count:
            # A fresh resample of test j's pairs for every time the test itself was drawn.
            log_medians[chosen] = np.log(_bootstrap_medians(r, count, rng))
    out: _Floats = np.exp(log_medians.mean(axis=1))
    return out


def _interval(boot: _Floats, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return float(low), float(high)


def _check_alpha(alpha: float) -> None:
    if not (0.0 < alpha < 0.5):
        raise ValueError(f"alpha {alpha!r} is not between 0 and 0.5")


def _check_rule(alpha: float, tolerance: float, max_pairs: int, n_looks: int, confidence: float,
                resamples: int) -> None:
    looks(alpha, max_pairs, n_looks)        # alpha, the looks and the cap
    if not (0.0 <= tolerance < 1.0):
        raise ValueError(f"tolerance {tolerance!r} is not a fraction between 0 and 1 (0.05 means 5 %)")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence {confidence!r} is not between 0 and 1 (0.95 means a 95 % CI)")
    if resamples < 100:
        raise ValueError(f"resamples {resamples!r} is too few for a bootstrap percentile (at least 100)")
