"""Seeded trials of the change-point finder (pytest_cosyvoice.tracking.changepoints.find_changes).

    .venv/bin/python benchmarks/changepoint_rates.py [--trials 300] [--seed 0] [--noise 0.05]

A history is n session medians, log-normal around 0.25 with sigma `--noise` (0.05: ~5 %
session-to-session spread). "flat": no shift; the share of trials with ANY change point is the
false-alarm rate. "step": every session from `at` on is multiplied by (1 + shift); found = a
change point within +-1 session of `at` (other change points in the same trial are counted as
extra). `--outliers`: that share of sessions is slowed by a half-normal hiccup of scale
4 * noise (a busy neighbour). `at` is the middle, or n - 3 (the shift seen by the last 3
sessions only).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_cosyvoice.tracking.changepoints import find_changes


def series(rng: np.random.Generator, n: int, noise: float, shift: float, at: int,
           outliers: float = 0.0) -> np.ndarray:
    x = 0.25 * np.exp(rng.normal(0.0, noise, n))
    slow = rng.random(n) < outliers     # a session sharing the machine with a busy process
    x *= 1.0 + slow * np.abs(rng.normal(0.0, 4 * noise, n))
    x[at:] *= 1.0 + shift
    return x


def rates(n: int, shift: float, at: int, trials: int, seed: int, noise: float,
          penalty: float | None = None, outliers: float = 0.0) -> tuple[float, float]:
    """(share of trials with a change within +-1 of `at`, or with any change when shift == 0;
    share of trials with a change elsewhere)."""
    rng = np.random.default_rng(seed)
    hit = extra = 0
    for _ in range(trials):
        found = find_changes(series(rng, n, noise, shift, at, outliers).tolist(),
                             penalty=penalty)
        if shift == 0:
            hit += bool(found)
            continue
        near = [i for i in found if abs(i - at) <= 1]
        hit += bool(near)
        extra += len(found) > len(near)
    return hit / trials, extra / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--outliers", type=float, default=0.0,
                    help="share of sessions slowed by a half-normal hiccup of scale 4 * noise")
    ap.add_argument("--sizes", default="8,12,20,40")
    ap.add_argument("--shifts", default="0,0.10,0.20,-0.20,0.40")
    ap.add_argument("--penalty", type=float, default=None, help="fixed penalty (default: rule)")
    args = ap.parse_args()
    print(f"trials={args.trials} seed={args.seed} noise={args.noise} outliers={args.outliers} "
          "min_size=2 "
          f"penalty={'default' if args.penalty is None else args.penalty}")
    print("| sessions | shift | shift at | found (flat: any change) | extra change elsewhere |")
    print("|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        for shift in (float(s) for s in args.shifts.split(",")):
            for at in ([n // 2] if shift == 0 else sorted({n // 2, n - 3})):
                hit, extra = rates(n, shift, at, args.trials, args.seed, args.noise, args.penalty,
                                   args.outliers)
                where = "-" if shift == 0 else str(at)
                extra_s = "-" if shift == 0 else f"{extra:.1%}"
                print(f"| {n} | {shift:+.0%} | {where} | {hit:.1%} | {extra_s} |", flush=True)


if __name__ == "__main__":
    main()
