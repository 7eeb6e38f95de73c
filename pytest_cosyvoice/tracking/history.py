"""history.jsonl: one line per session (its key, stack, machine health and per test the medians),
appended by the report and read back for the trend graph and the change points. The storage only:
the report draws it, tracking.changepoints reads shifts from it. No pytest import here.

    append_history(path, history_entry(figures, key, commit, stack=stack, health=health,
                                       quality=quality_entry(qualities)))
    sessions = read_history(path, key)          # this key's sessions, oldest first
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..judging.measurements import TestFigures
from ..judging.quality_results import SCORES, TestQuality, Why
from ..stats import median_or_none
from .health import Health
from .paired_results import PairedResult, PooledResult
from .runkey import RunKey

HISTORY_SCHEMA = 2


def ab_entry(base: str, base_versions: dict[str, str], paired: Sequence[PairedResult] | None,
             pooled: PooledResult | None, paired_first_chunk: Sequence[PairedResult] | None = None,
             pooled_first_chunk: PooledResult | None = None) -> dict[str, Any]:
    """A session's A/B verdicts for its history line: the base side (description and stack), the
    pooled RTF verdict and each test's (None / {} when no test recorded RTF pairs), and the same
    for first-chunk latency under "first_chunk"."""
    return {"base": base, "base_versions": dict(base_versions), **_ab_metric(paired, pooled),
            "first_chunk": _ab_metric(paired_first_chunk, pooled_first_chunk)}


def _ab_metric(paired: Sequence[PairedResult] | None, pooled: PooledResult | None) -> dict[str, Any]:
    return {
        "pooled": None if pooled is None else {
            "ratio": pooled.ratio, "ci_low": pooled.ci_low, "ci_high": pooled.ci_high,
            "p_value": pooled.p_value, "p_against": pooled.p_against, "verdict": str(pooled.verdict),
            "tests": pooled.n_tests, "pairs": pooled.n_pairs,
            "order_effect": None if pooled.order is None else pooled.order.ratio},
        "tests": {r.nodeid: {"ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
                             "p_value": r.p_value, "p_against": r.p_against, "pairs": r.n_pairs,
                             "verdict": str(r.verdict), "flagged": r.flagged,
                             "outputs_differ": r.outputs_differ}
                  for r in paired or []},
    }




@dataclass(frozen=True)
class QualityCounts:
    """How a session's quality tests came out, as the terminal line, the step summary and the history
    line count them: failed = status "fail"; uncalibrated = a test with a score noted `Why.UNCALIBRATED`
    (too few clean runs: not judged); without golden = a test with a check noted `Why.NO_GOLDEN`;
    saves_to_gate = the most saving sessions a test still needs before all its scores gate."""

    tests: int
    failed: int
    uncalibrated: int
    without_golden: int
    saves_to_gate: int = 0


def quality_counts(qualities: Sequence[TestQuality]) -> QualityCounts:
    return QualityCounts(len(qualities), sum(tq.status == "fail" for tq in qualities),
                         sum(tq.noted(Why.UNCALIBRATED) for tq in qualities),
                         sum(tq.noted(Why.NO_GOLDEN) for tq in qualities),
                         max([0, *(tq.saves_to_gate for tq in qualities)]))


def quality_entry(qualities: Sequence[TestQuality]) -> dict[str, Any]:
    """A session's quality gate for its history line: the counts (`quality_counts`), the mean over the
    tests that have it of each score (None where no test has it), and the seconds the quality checks
    took over the session (None when no test says)."""
    counts = quality_counts(qualities)
    entry: dict[str, Any] = {"tests": counts.tests, "failed": counts.failed, "uncalibrated": counts.uncalibrated,
                             "without_golden": counts.without_golden}
    per_test = [tq.scores() for tq in qualities]
    for name in SCORES:
        values = [s[name] for s in per_test if name in s and math.isfinite(s[name])]
        entry[name] = sum(values) / len(values) if values else None
    # `seconds` is set by the session where it timed the checks; older producers have none.
    seconds = [float(s) for s in (getattr(tq, "seconds", None) for tq in qualities) if s is not None]
    entry["seconds"] = sum(seconds) if seconds else None
    return entry


def history_entry(figures: Sequence[TestFigures], key: RunKey, commit: str | None,
                  when: datetime | None = None, stack: dict[str, str] | None = None,
                  health: Health | None = None, ab: dict[str, Any] | None = None,
                  quality: dict[str, Any] | None = None) -> dict[str, Any]:
    """One session: its key (runner + configuration), stack and machine health as attributes; an
    A/B session's line also has "ab" (`ab_entry`: the base side and the paired verdicts), a session
    with quality tests "quality" (`quality_entry`)."""
    when = when or datetime.now(timezone.utc)
    entry = {
        "schema": HISTORY_SCHEMA,
        "time_utc": when.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or None, "runner": key.runner, "key": key.to_dict(), "stack": dict(stack or {}),
        "health": None if health is None else {"calibration_s": health.calibration_s,
                                               "reference_s": health.reference_s,
                                               "others_cpu": health.others_cpu, "steal": health.steal},
        "tests": {f.nodeid: {"rtf": median_or_none(f.rtf), "first_chunk_ms": median_or_none(f.first_chunk_ms),
                             "worst_gap_ms": median_or_none(f.worst_gap_ms), "runs": len(f.rtf),
                             "outcome": f.outcome} for f in figures},
    }
    if ab is not None:
        entry["ab"] = ab
    if quality is not None:
        entry["quality"] = quality
    return entry


def append_history(path: Path, entry: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent sessions interleave whole lines.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def _history_lines(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON or None for a line that is not JSON) of every non-empty line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out: list[tuple[int, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError:
            out.append((n, None))
    return out


def read_history(path: Path, key: RunKey | None = None) -> list[dict[str, Any]]:
    """Sessions in file order; only those of `key` when given. A torn or foreign line (a killed
    session, a hand edit) is skipped here and named by `history_problems`."""
    try:
        lines = _history_lines(path)
    except OSError:
        return []   # history_problems names it
    out = []
    for _, entry in lines:
        if not isinstance(entry, dict) or not isinstance(entry.get("tests"), dict):
            continue
        if key is not None and entry.get("key") != key.to_dict():
            continue
        out.append(entry)
    return out


def history_problems(path: Path) -> list[str]:
    """What `read_history` skips, named by file and line, so a broken history is not a silent one."""
    try:
        lines = _history_lines(path)
    except OSError as e:
        return [f"{path}: cannot read the history ({type(e).__name__}: {e.strerror or e})"]
    bad = [n for n, entry in lines if not isinstance(entry, dict) or not isinstance(entry.get("tests"), dict)]
    if not bad:
        return []
    shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return [f"{path}: line(s) {shown} are not session records (JSON objects with \"tests\"); skipped"]
