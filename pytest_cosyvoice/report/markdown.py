"""A short Markdown summary of the session's verdicts, for the page of a CI job (GitHub's
$GITHUB_STEP_SUMMARY, or --cosy-markdown PATH): the speed verdicts (A/B: the pooled line of each
metric and a per-test table; otherwise the cross-session drift table) and the machine line.
No pytest import here.

    append_markdown(path, markdown_summary(found))      # "" when written, else why not
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..stats import median_or_none
from .model import machine_line, pct

if TYPE_CHECKING:
    from ..tracking.verdicts import Verdicts

TITLE = "## pytest-cosyvoice"


def _cell(text: object) -> str:
    # A "|" inside a cell would end it; a newline would end the table.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def markdown_summary(found: Verdicts) -> str:
    """The session's speed verdicts and its machine, as Markdown (ends with a blank line, so the
    next step's summary starts a paragraph of its own)."""
    out = [TITLE, ""]
    ab = found.ab
    if ab is not None:
        out += _ab(found)
    out += _cross_session(found, heading="### Cross-session view (against the stored baseline)"
                          if ab is not None else "### Speed against the stored baseline")
    out += _quality(found)
    out += ["", f"_{_cell(machine_line(found.health, found.machine))}_", ""]
    return "\n".join(out) + "\n"


def _ab(found: Verdicts) -> list[str]:
    ab = found.ab
    assert ab is not None
    metrics = ab.metrics()
    if not metrics:
        return [f"**A/B against {_cell(ab.base or 'the base side')}**: no passed test recorded pairs.", ""]
    out = [f"**{_cell(ab.pooled_line(pooled))}**" + ("  " if i < len(metrics) - 1 else "")
           for i, (_, _, pooled) in enumerate(metrics)]
    rows = [[f"`{r.nodeid}`", metric, f"{r.ratio:.3f}x", f"{r.ci_low:.3f}..{r.ci_high:.3f}",
             f"{r.p_value:.2g}", str(r.n_pairs), f"**{r.verdict}**" if r.verdict == "regression" else str(r.verdict)]
            for metric, paired, _ in metrics for r in paired]
    out += ["", *_table(["test", "metric", "head/base", "CI", "p", "pairs", "verdict"], rows), ""]
    if found.fails_on_drift:
        out += ["A regression under `--cosy-fail-on-drift`: **the session fails**.", ""]
    return out


def _cross_session(found: Verdicts, heading: str) -> list[str]:
    out = [heading, ""]
    if found.baseline_error:
        return [*out, f"The stored baseline cannot be used: {_cell(found.baseline_error)}"]
    if found.drift is None:
        return [*out, f"No baseline for runner `{_cell(found.key.runner)}`: drift not judged."]
    if found.baseline is not None:
        out += [f"Baseline of {found.baseline.updated_at}; stack "
                + (", ".join(found.stack_changes) if found.stack_changes else "unchanged") + ".", ""]
    by_id = {r.nodeid: r for r in found.drift}
    rows = []
    for f in found.figures:
        r = by_id.get(f.nodeid)
        rtf = median_or_none(f.rtf)
        verdict = str(r.verdict) if r else "-"
        rows.append([f"`{f.nodeid}`", str(len(f.rtf)), "-" if rtf is None else f"{rtf:.3f}",
                     "-" if r is None or r.baseline_median is None else f"{r.baseline_median:.3f}",
                     pct(r.drift if r else None), f"**{verdict}**" if verdict == "regression" else verdict])
    return out + _table(["test", "runs", "RTF", "baseline", "drift", "verdict"], rows)


def _quality(found: Verdicts) -> list[str]:
    """The quality gate: the terminal's count line, then each failed test and what its failed checks say."""
    from .terminal import quality_line  # the terminal's words: one wording of the count line

    line = quality_line(found.quality, found.options.save_baseline)
    if line is None:
        return []
    out = ["", "### Quality", "", line]
    rows = [[f"`{tq.nodeid}`", ", ".join(dict.fromkeys(c.name for c in tq.failed)),
             "; ".join(f"{c.call}: {c.text}" if c.call else c.text for c in tq.failed)]
            for tq in found.quality if tq.status == "fail"]
    if rows:
        out += ["", *_table(["failed test", "checks", "what they say"], rows)]
    return out


def append_markdown(path: Path, text: str) -> str:
    """Appends `text` to `path` (its folder created): the step summary file is shared by every step
    of a job, so what is there stays. "" when written, else why not (an OSError's text)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return ""
