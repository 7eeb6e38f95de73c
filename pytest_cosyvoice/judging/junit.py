"""What JUnit XML carries for a test (`item.user_properties`): one value per figure, so a CI system
can chart it without the report: the median RTF round, the median first chunk, the worst gap; for a
quality test its status, its failed checks and each check's figure against its limit."""
from __future__ import annotations

from ..stats import median
from .figures import figure_text
from .quality_results import TestQuality
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


def _figure(x: float | None) -> str:
    return figure_text(x, ".4g")


def quality_properties(tq: TestQuality) -> list[tuple[str, str]]:
    """`cosy_quality` = the test's status, `cosy_quality_failed` = its failed checks' names, comma-joined
    ("" when none), then `cosy_quality_<check>` = "figure (limit)" per check in the order judged ("-" for
    a missing figure or limit; a test of several calls has one such property per call, in call order)."""
    failed = ",".join(dict.fromkeys(c.name for c in tq.failed))
    return [("cosy_quality", tq.status), ("cosy_quality_failed", failed),
            *((f"cosy_quality_{c.name}", f"{_figure(c.figure)} ({_figure(c.limit)})") for c in tq.checks)]
