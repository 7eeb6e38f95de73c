"""The session report: terminal table, rtf.csv, the history.jsonl line, graphs, stream pictures, index.html.

    files = write_report("reports", ReportInput(figures=..., key=..., drift=..., baseline=...,
                                                streams=[StreamRecord(nodeid, trace, audio)]))

The data types and text helpers live in report.model, the graphs in report.plots, the page in
report.page, the history storage in tracking.history. pandas / matplotlib / pytest-benchmark are a
[report] extra, imported inside the functions that use them; `summary_table` needs none of them.
No pytest import here.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judging.figures import figure_to_json
from ..judging.measurements import TestFigures
from ..judging.quality_results import TestQuality
from ..stats import median_or_none
from ..tracking.ab import AbVerdicts
from ..tracking.drift import DriftResult, DriftVerdict
from ..tracking.history import ab_entry, append_history, history_entry, quality_entry, read_history
from ..tracking.runkey import RunKey
from ..tracking.stack import current_commit
from . import page, plots, stream_plot, trends
from .model import (
    INSTALL_HINT,
    GoldenAudio,
    QualityAudio,
    ReportFiles,
    ReportInput,
    StreamFiles,
    StreamRecord,
    pct,
    sanitise_nodeid,
    short_id,
)

if TYPE_CHECKING:
    import numpy as np

    from ..tracking.changepoints import ChangePoint

# -- small helpers ---------------------------------------------------------------------------

def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


# -- terminal table --------------------------------------------------------------------------

def summary_table(figures: Sequence[TestFigures], drift: Sequence[DriftResult] | None = None,
                  test_width: int = 56) -> str:
    """Plain-text table: test, runs, RTF (median), baseline (median), drift raw and calibrated,
    verdict, first-chunk ms (median), worst gap ms (worst over runs)."""
    by_id = {r.nodeid: r for r in (drift or [])}
    header = ["test", "runs", "RTF", "baseline", "raw", "calibrated", "verdict", "first-chunk ms",
              "worst gap ms"]
    rows = []
    for f in figures:
        r = by_id.get(f.nodeid)
        verdict = r.verdict if r else ("no baseline" if drift is None else "-")
        if f.outcome != "passed":
            verdict += f" ({f.outcome})"
        rows.append([short_id(f.nodeid, test_width), str(len(f.rtf)), _fmt(median_or_none(f.rtf), ".3f"),
                     _fmt(r.baseline_median if r else None, ".3f"), pct(r.drift if r else None),
                     pct(r.calibrated_drift if r else None), verdict, _fmt(median_or_none(f.first_chunk_ms), ".0f"),
                     _fmt(max(f.worst_gap_ms) if f.worst_gap_ms else None, ".0f")])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    left = {0, 6}   # text columns left-aligned, numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if drift is None:
        out.append("(no baseline stored for this runner and configuration: drift not judged)")
    else:
        regressed = sum(1 for r in drift if r.verdict == DriftVerdict.REGRESSION)
        unsure = sum(1 for r in drift if r.verdict == DriftVerdict.INCONCLUSIVE)
        out.append(f"{regressed} regression(s), {unsure} inconclusive in {len(drift)} test(s)")
    return "\n".join(out)


# -- rtf.csv ---------------------------------------------------------------------------------

def write_csv(path: Path, figures: Sequence[TestFigures], key: RunKey,
              drift: Sequence[DriftResult] | None = None) -> Path:
    """One row per test and measured run; a test with no runs still gets one row (run empty),
    so an errored test is visible in spreadsheets too."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"rtf.csv needs pandas: {INSTALL_HINT}") from exc
    by_id = {r.nodeid: r for r in (drift or [])}
    hw = {f"key_{k}": v for k, v in key.to_dict().items()}
    rows: list[dict[str, Any]] = []
    for f in figures:
        r = by_id.get(f.nodeid)
        runs = max(len(f.rtf), len(f.first_chunk_ms), len(f.worst_gap_ms))
        for run in range(runs) if runs else [None]:
            def at(values: list[float], run: int | None = run) -> float | None:
                return values[run] if run is not None and run < len(values) else None
            rows.append({
                "nodeid": f.nodeid, "outcome": f.outcome, "run": run, "rtf": at(f.rtf),
                "first_chunk_ms": at(f.first_chunk_ms), "worst_gap_ms": at(f.worst_gap_ms),
                "audio_s": f.audio_s, "cold": f.cold, "engine": f.engine,
                "failed_checks": ";".join(f.failed_checks),
                "baseline_median_rtf": r.baseline_median if r else None,
                "drift": r.drift if r else None, "calibrated_drift": r.calibrated_drift if r else None,
                "p_value": r.p_value if r else None,
                "verdict": r.verdict if r else "", **hw})
    frame = pd.DataFrame(rows)
    if not rows:
        frame = pd.DataFrame(columns=["nodeid", "run", "rtf", *hw])
    frame["run"] = frame["run"].astype("Int64")   # integers with <NA>, not floats
    frame.to_csv(path, index=False)
    return path


# -- ab.csv, ab_verdicts.csv ---------------------------------------------------------------------

AB_COLUMNS = ("nodeid", "round", "order", "head_rtf", "base_rtf", "head_first_chunk_ms", "base_first_chunk_ms",
              "outputs", "outputs_detail", "outputs_finding", "head_tokens", "base_tokens", "head_audio_s",
              "base_audio_s")
AB_VERDICT_COLUMNS = ("nodeid", "metric", "ratio", "ci_low", "ci_high", "p_value", "p_against", "pairs", "verdict",
                      "flagged", "confirm_pairs", "outputs_differ", "note")
POOLED_ROW = "(pooled)"


def _cell(value: object) -> object:
    return "" if value is None else value


def write_ab_csv(path: Path, figures: Sequence[TestFigures]) -> Path:
    """Every A/B pair as recorded, one row each (failed tests' too): the raw samples, so the
    verdicts can be judged again with another rule."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(AB_COLUMNS)
        for f in figures:
            for p in f.pairs:
                w.writerow([f.nodeid, p.round, p.order, p.head_rtf, p.base_rtf, _cell(p.head_first_chunk_ms),
                            _cell(p.base_first_chunk_ms), p.outputs.status, p.outputs.detail, p.outputs.finding,
                            _cell(p.head_tokens), _cell(p.base_tokens), _cell(p.head_audio_s), _cell(p.base_audio_s)])
    return path


def write_ab_verdicts(path: Path, ab: AbVerdicts) -> Path:
    """One row per test and metric, then a row with nodeid "(pooled)" per metric (its p is the
    stratified bootstrap's against 1 + floor; pairs is the session's total; its note the order effect)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(AB_VERDICT_COLUMNS)
        for metric, paired, pooled in ab.metrics():
            for r in paired:
                w.writerow([r.nodeid, metric, r.ratio, r.ci_low, r.ci_high, r.p_value, r.p_against, r.n_pairs,
                            r.verdict, r.flagged, r.confirm_pairs, r.outputs_differ, r.note])
            order = f"; {pooled.order.describe(pooled.confidence)}" if pooled.order else ""
            w.writerow([POOLED_ROW, metric, pooled.ratio, pooled.ci_low, pooled.ci_high, pooled.p_value,
                        pooled.p_against, pooled.n_pairs, pooled.verdict, "", "", "", f"{pooled.n_tests} tests{order}"])
    return path


# -- the whole report ------------------------------------------------------------------------

def write_report(out_dir: str | Path, data: ReportInput) -> ReportFiles:
    """Write every report file into out_dir (created); returns their paths."""
    out = Path(out_dir)
    (out / "streams").mkdir(parents=True, exist_ok=True)
    commit = data.commit if data.commit is not None else current_commit(data.repo_dir)

    csv_path = write_csv(out / "rtf.csv", data.figures, data.key, data.drift)
    history_path = Path(data.history_path) if data.history_path else out / "history.jsonl"
    ab = data.ab
    append_history(history_path, history_entry(
        data.figures, data.key, commit, stack=data.stack, health=data.health,
        ab=None if ab is None else ab_entry(ab.base, ab.base_versions, ab.paired, ab.pooled,
                                            ab.paired_first_chunk, ab.pooled_first_chunk),
        quality=quality_entry(data.quality) if data.quality else None))

    base_samples = data.baseline.samples("rtf") if data.baseline else None
    drift_png = plots.plot_drift(out / "rtf_drift.png", data.figures, data.drift,
                                        base_samples, data.key, data.tolerance, data.alpha)
    base_medians = {r.nodeid: r.baseline_median for r in (data.drift or [])
                    if r.baseline_median is not None}
    history = read_history(history_path, data.key)
    nodeids = [f.nodeid for f in data.figures]
    changes, changes_note = _history_changes(history, nodeids)
    trend_png = trends.plot_trend(out / "rtf_trend.png", history, nodeids, base_medians,
                                        data.key, data.tolerance, changes, data.stack_changes)

    files = ReportFiles(out_dir=out, csv=csv_path, history=history_path, drift_png=drift_png,
                        trend_png=trend_png, html=out / "index.html",
                        streams=_write_streams(out / "streams", data.streams),
                        changes=changes, changes_note=changes_note)
    if any(f.pairs for f in data.figures):
        files.ab_csv = write_ab_csv(out / "ab.csv", data.figures)
    if ab is not None and ab.metrics():
        files.ab_verdicts_csv = write_ab_verdicts(out / "ab_verdicts.csv", ab)
        files.ab_forest_png = plots.plot_forest(out / "ab_forest.png", ab, data.key, data.tolerance)
    if data.quality:
        files.quality_json = write_quality_json(out / "quality.json", data.quality)
        files.quality_audio = write_quality_audio(out / "audio", data.quality, data.golden_audio)
        if sum(1 for entry in history if isinstance(entry.get("quality"), dict)) >= 2:
            files.quality_trend_png = trends.plot_quality_trend(history, out / "quality_trend.png")
    page.write_index(files, data, commit)
    return files


def _history_changes(history: Sequence[dict[str, Any]], nodeids: Sequence[str]
                     ) -> tuple[dict[str, list[ChangePoint]] | None, str]:
    from ..tracking.changepoints import history_changes

    try:
        return history_changes(history, nodeids), ""
    except ImportError as exc:   # ruptures missing: the rest of the report is still worth having
        return None, str(exc)


# -- the quality gate: quality.json, audio/ ---------------------------------------------------------

QUALITY_SCHEMA = 1


def quality_json(qualities: Sequence[TestQuality]) -> dict[str, Any]:
    """{"schema": 1, "tests": {nodeid: {"status", "checks": [...], "scores": {...}, "calls": [...][, "seconds"]}}}:
    per test its status, every check (QualityCheck.to_json), its scores' means, its calls (label, kind,
    seed, chunks delivered, speech tokens); "seconds" (what the quality checks took) where timed."""
    tests: dict[str, Any] = {}
    for tq in qualities:
        test: dict[str, Any] = {"status": tq.status, "checks": [c.to_json() for c in tq.checks],
                                "scores": {k: figure_to_json(v) for k, v in tq.scores().items()},
                                "calls": [{"label": c.label, "kind": c.kind, "seed": c.seed, "chunks": c.chunks,
                                           "tokens": None if c.tokens is None else len(c.tokens)}
                                          for c in tq.calls]}
        seconds = getattr(tq, "seconds", None)
        if seconds is not None:
            test["seconds"] = float(seconds)
        tests[tq.nodeid] = test
    return {"schema": QUALITY_SCHEMA, "tests": tests}


def write_quality_json(path: Path, qualities: Sequence[TestQuality]) -> Path:
    # allow_nan=False: a stray infinity would make a file that strict JSON readers refuse.
    path.write_text(json.dumps(quality_json(qualities), indent=1, sort_keys=True, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path


def write_quality_audio(folder: Path, qualities: Sequence[TestQuality],
                        golden_audio: GoldenAudio) -> list[QualityAudio]:
    """Per quality test and call, `<stem>-current.wav` and (where a golden exists) `<stem>-golden.wav`;
    the golden's calls that this session did not make are listed too (current None)."""
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    out: list[QualityAudio] = []
    for tq in qualities:
        goldens = golden_audio.get(tq.nodeid, {})
        labels = [c.label for c in tq.calls]
        several = len(set(labels) | set(goldens)) > 1
        current = {c.label: (c.audio, c.sample_rate) for c in tq.calls}
        for label in list(dict.fromkeys(labels)) + [g for g in goldens if g not in current]:
            base = sanitise_nodeid(tq.nodeid) + (f"--{sanitise_nodeid(label, 40)}" if several else "")
            stem, i = base, 2
            # Lower-cased: two stems differing in case only are one file on macOS and Windows.
            while stem.lower() in used:
                stem, i = f"{base}-{i}", i + 1
            used.add(stem.lower())
            now = _wav_or_none(folder / f"{stem}-current.wav", current.get(label))
            golden = _wav_or_none(folder / f"{stem}-golden.wav", goldens.get(label))
            note = ("not called in this session" if label not in current
                    else "no golden for this call" if label not in goldens
                    else "no audio recorded" if now is None
                    else "the golden has no audio" if golden is None
                    else _rates_differ(current[label][1], goldens[label][1]))
            out.append(QualityAudio(tq.nodeid, label, now, golden, note))
    return out


def _rates_differ(current: int, golden: int) -> str:
    return "" if int(current) == int(golden) else f"golden at {int(golden)} Hz, current at {int(current)} Hz"


def _wav_or_none(path: Path, audio: tuple[np.ndarray, int] | None) -> Path | None:
    if audio is None:
        return None
    samples, rate = audio
    if samples is None or not len(samples) or rate <= 0:
        return None
    return write_wav(path, samples, rate)


def stream_file_stem(stream: StreamRecord, several: bool) -> str:
    stem = sanitise_nodeid(stream.nodeid)
    return f"{stem}--{sanitise_nodeid(stream.trace.label, 40)}" if several else stem


def _write_streams(folder: Path, streams: Sequence[StreamRecord]) -> list[StreamFiles]:
    per_test: dict[str, int] = {}
    for s in streams:
        per_test[s.nodeid] = per_test.get(s.nodeid, 0) + 1
    used: set[str] = set()
    written: list[StreamFiles] = []
    for s in streams:
        stem = base = stream_file_stem(s, per_test[s.nodeid] > 1)
        i = 2
        while stem in used:            # two streams with the same label in one test
            stem, i = f"{base}-{i}", i + 1
        used.add(stem)
        png = stream_plot.plot_stream(folder / f"{stem}.png", s.nodeid, s.trace, s.audio,
                                       s.prebuffer_s)
        wav = None
        if s.audio is not None and len(s.audio) and s.trace.sample_rate > 0:
            wav = write_wav(folder / f"{stem}.wav", s.audio, s.trace.sample_rate)
        written.append(StreamFiles(s, png, wav))
    return written


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    import numpy as np
    import soundfile as sf

    # libsndfile wraps out-of-range floats when converting to PCM_16; clip so a loud sample
    # stays a loud sample instead of becoming a click that was never in the stream.
    x = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    sf.write(str(path), x, int(sample_rate), subtype="PCM_16")
    return path
