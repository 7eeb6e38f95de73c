"""Seeded trials of the A/B release verdict (pytest_cosyvoice.tracking.paired) at the noise measured here.

    .venv/bin/python benchmarks/paired_rates.py tests    [--trials 10000] [--shifts 1.0,1.03,1.05,1.1,1.2]
    .venv/bin/python benchmarks/paired_rates.py sessions [--sessions 10000] [--tests 24] [--shift 1.0]
    common: [--noise 0.066] [--period 0.02] [--seed 90000] [--confirm-pairs 60] [--json FILE]

`tests`: one test a trial. Pairs (head, base) around RTF 0.30, each side log-normal with sigma
`--noise` (0.066 a side: the log-ratio sd of 0.093 a pair measured on this project's kept A/A pairs),
the head multiplied by the shift, the first call of a pair `--period` slower (log; 0.02: the second
call ran about 2 % faster on the quiet VM), orders in balanced AB/BA blocks as recording.pairing draws
them, pairs added as the A/B rounds add them (at the looks `pairs_wanted` names). Prints the share of
each verdict, the share the screen flagged and the mean pairs, with Clopper-Pearson 95 % intervals.

`sessions`: one session a trial, `--tests` tests all slowed by `--shift`, each with an RTF and a
first-chunk verdict drawn independently (a conservative stand-in: in the suites the two metrics share
their calls), then the two pooled verdicts (`pool`, with `--pool-resamples` bootstrap resamples, run
only where the pooled ratio lies beyond the tolerance: below it no resample can make a regression).
A session fails, as under --cosy-fail-on-drift, on any confirmed per-test regression or a pooled one.
These numbers describe the rule on made-up noise
at the measured level, beside the real reruns in docs/reports.md, never instead of them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_cosyvoice.tracking.pair_logs import Pair
from pytest_cosyvoice.tracking.paired import (
    DEFAULT_CONFIRM_PAIRS,
    PairedResult,
    PairedVerdict,
    Rule,
    judge_pairs,
    pairs_wanted,
)
from pytest_cosyvoice.tracking.pooled import pool, pooled_ratio

RTF = 0.30


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def share(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{100.0 * k / n:.2f} % ({100 * lo:.2f}-{100 * hi:.2f} %)"


def blocks(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        out += ["AB", "BA"] if rng.random() < 0.5 else ["BA", "AB"]
    return out[:n]


def one_test(rng: np.random.Generator, shift: float, noise: float, period: float, rule: Rule
             ) -> tuple[PairedResult, list[Pair], list[str]]:
    """A test fed as the rounds feed it: the pairs it wants until it wants none."""
    total = rule.max_pairs + rule.confirm_pairs
    orders = blocks(rng, total)
    head = RTF * shift * np.exp(rng.normal(0.0, noise, total) + np.where(np.array(orders) == "AB", period, 0.0))
    base = RTF * np.exp(rng.normal(0.0, noise, total) + np.where(np.array(orders) == "BA", period, 0.0))
    pairs = list(zip(head.tolist(), base.tolist(), strict=True))
    n = rule.screen_looks[0]
    result = judge_pairs("t", pairs[:n], orders[:n], rule=rule)
    while wants := pairs_wanted(result):
        n += wants
        result = judge_pairs("t", pairs[:n], orders[:n], rule=rule)
    return result, pairs[:n], orders[:n]


def tests_main(args: argparse.Namespace, rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"{args.trials} tests a shift; noise {args.noise} a side, order effect {args.period}; "
          f"confirm pairs {rule.confirm_pairs}, floor {rule.floor}\n")
    print("| head/base | tests | regression (confirmed) | candidate flagged by the screen | improvement | same | "
          "inconclusive | mean pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for shift in (float(s) for s in args.shifts.split(",")):
        rng = np.random.default_rng([args.seed, int(round(shift * 1000))])
        counts: Counter[str] = Counter()
        flagged = 0
        used = []
        for _ in range(args.trials):
            r, pairs, _ = one_test(rng, shift, args.noise, args.period, rule)
            counts[r.verdict.value] += 1
            flagged += r.flagged == "regression"
            used.append(len(pairs))
        n = args.trials
        print(f"| {shift:.2f} | {n} | {share(counts['regression'], n)} | {share(flagged, n)} | "
              f"{share(counts['improvement'], n)} | {share(counts['same'], n)} | {share(counts['inconclusive'], n)} | "
              f"{np.mean(used):.1f} |", flush=True)
        out[f"{shift:g}"] = {"tests": n, "verdicts": dict(counts), "flagged_regression": flagged,
                             "mean_pairs": float(np.mean(used))}
    return out


def sessions_main(args: argparse.Namespace, rule: Rule) -> dict[str, Any]:
    pool_rule = Rule(confirm_pairs=rule.confirm_pairs, floor=rule.floor, resamples=args.pool_resamples)
    rng = np.random.default_rng([args.seed, 7, int(round(args.shift * 1000))])
    failing = per_test = pooled = 0
    verdicts = 0
    t = time.monotonic()
    for s in range(args.sessions):
        fails = False
        for metric in ("RTF", "first chunk"):
            by_test: dict[str, list[Pair]] = {}
            orders: dict[str, list[str]] = {}
            results = []
            for i in range(args.tests):
                r, pairs, o = one_test(rng, args.shift, args.noise, args.period, rule)
                by_test[f"t{i}"], orders[f"t{i}"] = pairs, o
                results.append(r)
            hit = sum(r.verdict is PairedVerdict.REGRESSION for r in results)
            verdicts += len(results)
            per_test += hit
            # A pooled regression needs the pooled ratio beyond the tolerance: below it no bootstrap can
            # make one, so the resampling runs only where it can decide (the same verdict, much faster).
            pooled_hit = pooled_ratio(by_test, orders) > 1.0 + pool_rule.tolerance and pool(
                by_test, results, orders_by_test=orders, rule=pool_rule, metric=metric
            ).verdict is PairedVerdict.REGRESSION
            pooled += pooled_hit
            fails |= bool(hit) or pooled_hit
        failing += fails
        if (s + 1) % max(1, args.sessions // 10) == 0:
            print(f"  {s + 1} sessions, {failing} failing, {time.monotonic() - t:.0f} s", flush=True)
    n = args.sessions
    print(f"\n{n} sessions of {args.tests} tests (RTF and first chunk each), head/base {args.shift:g}, noise "
          f"{args.noise} a side, order effect {args.period}, pooled bootstrap {args.pool_resamples} resamples:")
    print(f"  failing sessions: {share(failing, n)}")
    print(f"  per-test regressions: {share(per_test, verdicts)} of {verdicts} verdicts")
    print(f"  pooled regressions: {share(pooled, 2 * n)} of {2 * n} pooled verdicts")
    return {"sessions": n, "tests": args.tests, "shift": args.shift, "failing": failing,
            "per_test_regressions": per_test, "verdicts": verdicts, "pooled_regressions": pooled,
            "pool_resamples": args.pool_resamples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("tests", "sessions"))
    ap.add_argument("--trials", type=int, default=10_000, help="tests a shift (tests)")
    ap.add_argument("--shifts", default="1.0,1.03,1.05,1.1,1.2", help="head/base ratios (tests)")
    ap.add_argument("--sessions", type=int, default=10_000, help="sessions (sessions)")
    ap.add_argument("--tests", type=int, default=24, help="tests a session (sessions)")
    ap.add_argument("--shift", type=float, default=1.0, help="head/base ratio of every test (sessions)")
    ap.add_argument("--pool-resamples", type=int, default=1000, help="bootstrap resamples of the pooled verdict")
    ap.add_argument("--noise", type=float, default=0.066, help="sigma of log, each side")
    ap.add_argument("--period", type=float, default=0.02, help="how much slower the first call of a pair (log)")
    ap.add_argument("--confirm-pairs", type=int, default=DEFAULT_CONFIRM_PAIRS)
    ap.add_argument("--seed", type=int, default=90000)
    ap.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = ap.parse_args(argv)
    if not (args.noise >= 0 and math.isfinite(args.noise)):
        ap.error(f"--noise {args.noise!r}: expected a non-negative sigma, e.g. 0.066")
    rule = Rule(confirm_pairs=args.confirm_pairs)
    result = tests_main(args, rule) if args.what == "tests" else sessions_main(args, rule)
    result.update(noise=args.noise, period=args.period, seed=args.seed, confirm_pairs=rule.confirm_pairs,
                  floor=rule.floor)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
