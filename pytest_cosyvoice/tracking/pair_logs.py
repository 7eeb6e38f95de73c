"""A test's (head, base) pairs as the paired statistics read them: log ratios with their orders.

`tracking.paired` (one test's verdict) and `tracking.pooled` (the session's) both start here, so
what a valid pair is, what an order is and what the order-corrected estimate is are said once.
No pytest import.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Pair = tuple[float, float]
Floats = npt.NDArray[np.float64]
ORDERS = ("AB", "BA", "")   # head first, base first, unknown


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


def log_ratios(pairs: Sequence[Pair], nodeid: str = "") -> Floats:
    """log(head / base) per pair (`ratios`' checks)."""
    return np.log(np.asarray(ratios(pairs, nodeid), dtype=np.float64))


def checked_orders(orders: Sequence[str] | None, n: int, nodeid: str) -> list[str]:
    """The pairs' orders ("AB", "BA"; None: unknown for all), one per pair, or a ValueError naming
    the test and the value."""
    if orders is None:
        return [""] * n
    if len(orders) != n:
        raise ValueError(f"test {nodeid!r}: {len(orders)} orders for {n} pairs")
    bad = [o for o in orders if o not in ORDERS]
    if bad:
        raise ValueError(f"test {nodeid!r}: order {bad[0]!r} is not 'AB' (head first) or 'BA' (base first)")
    return list(orders)


def by_order(d: Floats, orders: Sequence[str]) -> tuple[Floats, Floats] | None:
    """The AB and the BA log ratios, or None unless every pair has one of the two and both occur
    (only then can the crossover remove the order effect)."""
    ab = d[[o == "AB" for o in orders]]
    ba = d[[o == "BA" for o in orders]]
    return (ab, ba) if len(ab) and len(ba) and len(ab) + len(ba) == len(d) else None


def estimate(d: Floats, orders: Sequence[str]) -> float:
    """The Hodges-Lehmann estimate of log(head / base): the crossover's (half the AB-minus-BA shift
    of d_AB and -d_BA, so the order effect cancels) when both orders occur, else the median of the
    Walsh averages."""
    groups = by_order(d, orders)
    if groups is None:
        return float(walsh_medians(d[None, :])[0])
    return float(crossover_shifts(groups[0][None, :], groups[1][None, :])[0])


def walsh_medians(d: Floats) -> Floats:
    """Per row of `d` (rows: resamples of one test's pairs), the median of its Walsh averages: the
    one-order Hodges-Lehmann estimate (`estimate` is row 0 of a one-row batch)."""
    i, j = np.triu_indices(d.shape[1])
    out: Floats = np.median((d[:, i] + d[:, j]) / 2.0, axis=1)
    return out


def crossover_shifts(ab: Floats, ba: Floats) -> Floats:
    """Per row, half the Hodges-Lehmann shift between the AB log ratios and minus the BA ones: the
    crossover estimate, in which the order effect cancels."""
    diffs = ab[:, :, None] + ba[:, None, :]
    out: Floats = 0.5 * np.median(diffs.reshape(len(ab), -1), axis=1)
    return out
