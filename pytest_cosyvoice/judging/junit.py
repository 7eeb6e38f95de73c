"""What JUnit XML carries for a test (`item.user_properties`): one value per figure, so a CI system
can chart it without the report: the median RTF round, the median first chunk, the worst gap."""
from __future__ import annotations

from ..stats import median
from .verdict import Verdict


def properties(verdict: Verdict) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    if verdict.rtf:
        out.append(("rtf", round(median(verdict.rtf), 4)))
    if verdict.first_chunk_ms:
        out.append(("first_chunk_ms", round(median(verdict.first_chunk_ms), 1)))
    if verdict.worst_gap_ms:
        out.append(("worst_gap_ms", round(max(verdict.worst_gap_ms), 1)))
    return out
