"""Seeded trials of the paired A/B rule (pytest_cosyvoice.tracking.paired): verdict shares per schedule.

    .venv/bin/python benchmarks/paired_rates.py [--trials 400] [--seed 90000] [--noise 0.10] [--schedules 2]

Each trial is one test: pairs (head, base), each side log-normal with sigma `--noise` around RTF 0.30,
head multiplied by the shift. Pairs are added the way the A/B rounds will add them: at the rule's looks
(`pairs_wanted`), or, for the "every pair" row, after each pair from 7 on at p <= alpha (optional
stopping: what the looks are there to avoid). These numbers describe the rule on made-up noise, not
what the gate achieves on a machine; docs/reports.md quotes them as such.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_cosyvoice.tracking.paired import (
    DEFAULT_MAX_PAIRS,
    PairedResult,
    PairedVerdict,
    judge_pairs,
    looks,
    min_pairs,
    pairs_wanted,
)

DECIDED = (PairedVerdict.REGRESSION, PairedVerdict.IMPROVEMENT, PairedVerdict.SAME)
# --schedules picks rows by these keys: "every" (every pair from 7 at alpha), or a number of looks.
SCHEDULES = {"every": "every pair from 7", "1": "1 look (20)", "2": "2 looks (10, 20)", "3": "3 looks (9, 14, 20)"}


def draw(rng: np.random.Generator, n: int, shift: float, noise: float) -> list[tuple[float, float]]:
    base = 0.30 * np.exp(rng.normal(0.0, noise, n))
    head = 0.30 * shift * np.exp(rng.normal(0.0, noise, n))
    return list(zip(head.tolist(), base.tolist(), strict=True))


def at_looks(rng: np.random.Generator, shift: float, noise: float, n_looks: int) -> PairedResult:
    wanted = looks(n_looks=n_looks)[0]
    pairs: list[tuple[float, float]] = []
    while wanted:
        pairs += draw(rng, wanted, shift, noise)
        result = judge_pairs("t", pairs, n_looks=n_looks)
        wanted = pairs_wanted(result)
    return result


def every_pair(rng: np.random.Generator, shift: float, noise: float) -> PairedResult:
    pairs = draw(rng, DEFAULT_MAX_PAIRS, shift, noise)
    for n in range(min_pairs(), DEFAULT_MAX_PAIRS + 1):
        # One look at alpha with a cap of n: judged as if this were the last look, each time.
        result = judge_pairs("t", pairs[:n], n_looks=1, max_pairs=n)
        if result.verdict in DECIDED:
            break
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=90000)
    ap.add_argument("--noise", type=float, default=0.10, help="sigma of log, each side")
    ap.add_argument("--shifts", default="1.0,1.1,1.2,0.85")
    ap.add_argument("--schedules", default=",".join(SCHEDULES),
                    help=f"comma-separated, of {', '.join(SCHEDULES)} (every pair; 1, 2 or 3 looks)")
    args = ap.parse_args()
    unknown = [s for s in args.schedules.split(",") if s not in SCHEDULES]
    if unknown:
        ap.error(f"--schedules {args.schedules!r}: unknown {unknown}; expected some of {', '.join(SCHEDULES)}")
    print(f"{'schedule':<22} {'head/base':>9} {'regression':>10} {'improvement':>11} {'same':>6} "
          f"{'inconclusive':>12} {'mean pairs':>10}")
    for name in (SCHEDULES[s] for s in args.schedules.split(",")):
        for shift in (float(s) for s in args.shifts.split(",")):
            counts: Counter[str] = Counter()
            used = []
            for i in range(args.trials):
                rng = np.random.default_rng(args.seed + i)
                if name.startswith("every"):
                    r = every_pair(rng, shift, args.noise)
                else:
                    r = at_looks(rng, shift, args.noise, int(name[0]))
                counts[r.verdict.value] += 1
                used.append(r.n_pairs)
            share = {k: f"{100.0 * v / args.trials:.2f} %" for k, v in counts.items()}  # exact counts at 10^4 trials
            print(f"{name:<22} {shift:>9.2f} {share.get('regression', '0 %'):>10} "
                  f"{share.get('improvement', '0 %'):>11} {share.get('same', '0 %'):>6} "
                  f"{share.get('inconclusive', '0 %'):>12} {np.mean(used):>10.1f}")


if __name__ == "__main__":
    main()
