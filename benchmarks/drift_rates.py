"""Seeded trials of the drift rule (pytest_cosyvoice.tracking.drift): false-alarm and detection rates.

    .venv/bin/python benchmarks/drift_rates.py [--trials 500] [--seed 0]

Samples model GPU RTF rounds: log-normal around a median with `--spread` (sigma of log, ~CV),
plus `--outliers` share of rounds slowed by a half-normal hiccup (allocator, clocks, another
process). A "slowdown" multiplies every current sample by (1 + effect). Both sides are drawn
fresh per trial, as two sessions on the same machine would be.
tests/test_drift.py asserts the n=10, effect 0 / 0.15 cells of this table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_cosyvoice.tracking.drift import judge


def draw(rng: np.random.Generator, n: int, median: float, spread: float,
         outliers: float) -> np.ndarray:
    x = median * np.exp(rng.normal(0.0, spread, n))
    hiccup = rng.random(n) < outliers
    return x * (1.0 + hiccup * np.abs(rng.normal(0.0, 3 * spread, n)))


def rates(effect: float, n: int, trials: int, seed: int, spread: float = 0.06,
          outliers: float = 0.1, tolerance: float = 0.10, alpha: float = 0.05) -> dict[str, float]:
    """Share of trials judged "regression" / "improvement" for a true slowdown of `effect`."""
    rng = np.random.default_rng(seed)
    counts = {"regression": 0, "improvement": 0}
    for _ in range(trials):
        base = draw(rng, n, 0.25, spread, outliers)
        cur = draw(rng, n, 0.25 * (1.0 + effect), spread, outliers)
        verdict = judge("t", cur.tolist(), base.tolist(), tolerance, alpha).verdict
        if verdict in counts:
            counts[verdict] += 1
    return {k: v / trials for k, v in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread", type=float, default=0.06)
    ap.add_argument("--outliers", type=float, default=0.1)
    args = ap.parse_args()
    print(f"trials={args.trials} seed={args.seed} spread={args.spread} outliers={args.outliers} "
          "tolerance=0.10 alpha=0.05")
    print("| samples per side | true slowdown | flagged regression | flagged improvement |")
    print("|---|---|---|---|")
    for n in (5, 10, 20):
        for effect in (0.0, 0.05, 0.10, 0.15, 0.20, 0.30):
            r = rates(effect, n, args.trials, args.seed, args.spread, args.outliers)
            print(f"| {n} | {effect:+.0%} | {r['regression']:.1%} | {r['improvement']:.1%} |")


if __name__ == "__main__":
    main()
