"""Figures that may be infinite (an SNR of identical audio is inf, of a silent golden -inf): as text
and as JSON, which has no infinity. Every writer and reader of such a figure uses these, so a sign is
never lost on the way. No pytest here."""
from __future__ import annotations

import math
from typing import Any


def figure_text(x: float | None, spec: str = ".1f", missing: str = "-") -> str:
    """`format(x, spec)`, "inf" or "-inf"; `missing` for None or NaN."""
    if x is None or math.isnan(x):
        return missing
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def figure_to_json(x: float | None) -> float | str | None:
    """A figure for JSON: the number, "inf"/"-inf" for an infinity, None for None or NaN (no figure)."""
    if x is None or math.isnan(x):
        return None
    return float(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def figure_from_json(x: Any, what: str = "figure") -> float | None:
    """What `figure_to_json` wrote, read back; ValueError naming `what` for anything else."""
    if x is None:
        return None
    if x == "inf":
        return math.inf
    if x == "-inf":
        return -math.inf
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what} {x!r}: expected a number, \"inf\", \"-inf\" or null")
    return float(x)
