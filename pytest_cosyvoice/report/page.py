"""index.html: one page, images and audio beside it in the report folder, referenced relatively
(so the folder can be zipped as a CI artifact and opened anywhere). No pytest import here."""
from __future__ import annotations

import html
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from ..judging.figures import figure_text
from ..judging.measurements import PairOutputs
from ..judging.quality_results import TestQuality
from ..tracking.drift import DriftVerdict
from ..tracking.history import quality_counts
from ..tracking.stack import short_commit
from .model import (
    PAIRED_COLOURS,
    STATUS_ORDER,
    VERDICT_COLOURS,
    QualityAudio,
    ReportFiles,
    ReportInput,
    StreamFiles,
    machine_facts,
    ordered_checks,
    pct,
    sample_stats,
    short_id,
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.id { text-align: left; font-family: monospace; }
td.verdict { font-weight: bold; text-align: left; } td.changed { text-align: left; }
.banner { padding: 0.6em 1em; margin: 1em 0; border-left: 5px solid; background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; }
.stream { margin: 1.5em 0; } .key { color: #555; font-size: 0.9em; }
.quality { margin: 1.5em 0; } td.text { text-align: left; }
"""


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def _e(text: object) -> str:
    return html.escape(str(text))


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(data: ReportInput) -> str:
    by_id = {r.nodeid: r for r in (data.drift or [])}
    head = ("<tr><th>test</th><th>outcome</th><th>runs</th><th>RTF median</th><th>RTF IQR</th>"
            "<th>baseline median</th><th>drift (raw)</th><th>drift (calibrated)</th><th>p</th><th>verdict</th>"
            "<th>first chunk ms (median)</th><th>worst gap ms (worst run)</th>"
            "<th>failed checks</th></tr>")
    rows = []
    for f in data.figures:
        r = by_id.get(f.nodeid)
        st = sample_stats(f.rtf) if f.rtf else None
        fc = sample_stats(f.first_chunk_ms).median if f.first_chunk_ms else None
        verdict = r.verdict if r else "no baseline"
        colour = VERDICT_COLOURS[r.verdict if r else DriftVerdict.NEW]
        note = f' title="{_e(r.note)}"' if r and r.note else ""
        rows.append(
            f"<tr><td class=id title=\"{_e(f.nodeid)}\">{_e(short_id(f.nodeid, 70))}</td>"
            f"<td>{_e(f.outcome)}</td><td>{len(f.rtf)}</td>"
            f"<td>{_num(st.median if st else None, '.3f')}</td>"
            f"<td>{_num(st.iqr if st else None, '.3f')}</td>"
            f"<td>{_num(r.baseline_median if r else None, '.3f')}</td>"
            f"<td>{pct(r.drift if r else None)}</td><td>{pct(r.calibrated_drift if r else None)}</td>"
            f"<td>{_num(r.p_value if r else None, '.2g')}</td>"
            f"<td class=verdict style=\"color:{colour}\"{note}>{_e(verdict)}</td>"
            f"<td>{_num(fc, '.0f')}</td>"
            f"<td>{_num(max(f.worst_gap_ms) if f.worst_gap_ms else None, '.0f')}</td>"
            f"<td>{_e(', '.join(f.failed_checks + f.round_notes))}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _outputs(pairs_outputs: list[PairOutputs]) -> str:
    """'identical in 10 of 10 pairs', or the first difference and how many pairs differ."""
    if not pairs_outputs:
        return "-"
    same = sum(1 for o in pairs_outputs if o.status == "identical")
    differs = [o for o in pairs_outputs if o.status == "differs"]
    if differs:
        return f"{differs[0]} ({len(differs)} of {len(pairs_outputs)} pairs differ)"
    if same == len(pairs_outputs):
        return f"identical in {same} of {len(pairs_outputs)} pairs"
    other = next(o for o in pairs_outputs if o.status != "identical")
    return f"{other} ({len(pairs_outputs) - same} of {len(pairs_outputs)} pairs)"


def _ab_section(files: ReportFiles, data: ReportInput) -> list[str]:
    """A/B mode: per test and metric the head/base ratio, CI, p, pairs and verdict, a pooled row per
    metric, what the two sides produced, and the forest plot."""
    ab = data.ab
    if ab is None:
        return []
    out = [f"<h2>A/B against {_e(ab.base or 'the base side')}</h2>"]
    metrics = ab.metrics()
    if not metrics:
        return [*out, "<p>No passed test recorded A/B pairs (pairs come from tests marked "
                "<code>@pytest.mark.rtf</code> that call <code>cosy_tts</code>).</p>"]
    out.append("<p class=key>ratio = head / base per pair, run back to back on the same inputs and seed, in "
               "balanced AB/BA blocks; per test the Hodges-Lehmann ratio with the order effect removed, its "
               "rank interval and the rank test's one-sided p against the value shown. A test significantly "
               "slower (or faster) than the base is a candidate; fresh pairs then confirm it: regression when "
               "their one-sided 99 % bound lies beyond the floor, candidate (never failing) when not; same when "
               f"the CI lies within &plusmn;{data.tolerance:.0%}. The pooled row: geometric mean over the "
               "tests, stratified bootstrap CI.</p>")
    outputs = {f.nodeid: [p.outputs for p in f.pairs] for f in data.figures}
    head = ("<tr><th>test</th><th>metric</th><th>head/base</th><th>CI</th><th>p</th><th>pairs</th>"
            "<th>verdict</th><th>outputs</th></tr>")
    rows = []
    for metric, paired, pooled in metrics:
        for r in paired:
            colour = PAIRED_COLOURS[r.verdict]
            note = f' title="{_e(r.note)}"' if r.note else ""
            rows.append(
                f"<tr><td class=id title=\"{_e(r.nodeid)}\">{_e(short_id(r.nodeid, 70))}</td><td>{_e(metric)}</td>"
                f"<td>{r.ratio:.3f}x</td><td>{r.ci_low:.3f}..{r.ci_high:.3f}</td><td>{_p(r.p_value, r.p_against)}</td>"
                f"<td>{r.n_pairs}</td><td class=verdict style=\"color:{colour}\"{note}>{_e(r.verdict)}</td>"
                f"<td class=changed>{_e(_outputs(outputs.get(r.nodeid, [])) if metric == 'RTF' else '')}</td></tr>")
        colour = PAIRED_COLOURS[pooled.verdict]
        rows.append(
            f"<tr><td class=id><b>pooled ({pooled.n_tests} tests)</b></td><td>{_e(metric)}</td>"
            f"<td><b>{pooled.ratio:.3f}x</b></td><td>{pooled.ci_low:.3f}..{pooled.ci_high:.3f}</td>"
            f"<td>{_p(pooled.p_value, pooled.p_against)}</td><td>{pooled.n_pairs}</td>"
            f"<td class=verdict style=\"color:{colour}\">{_e(pooled.verdict)}</td><td></td></tr>")
    out.append(f"<table>{head}{''.join(rows)}</table>")
    order = metrics[0][2].order
    if order is not None:
        out.append(f"<p class=key>{_e(order.describe(metrics[0][2].confidence))}</p>")
    if ab.base_versions:
        body = "".join(f"<tr><td class=id>base: {_e(k)}</td><td class=id>{_e(v)}</td></tr>"
                       for k, v in sorted(ab.base_versions.items()))
        out.append(f"<p></p><table>{body}</table>")
    links = [f'<a href="{_e(_rel(p, files.out_dir))}">{_e(p.name)}</a>'
             for p in (files.ab_csv, files.ab_verdicts_csv) if p is not None]
    if links:
        out.append(f"<p>{' &middot; '.join(links)}</p>")
    if files.ab_forest_png is not None:
        out.append(f'<img src="{_e(_rel(files.ab_forest_png, files.out_dir))}" alt="A/B forest plot">')
    return out


QUALITY_COLOURS = {"fail": VERDICT_COLOURS[DriftVerdict.REGRESSION], "pass": VERDICT_COLOURS[DriftVerdict.OK],
                   "note": VERDICT_COLOURS[DriftVerdict.NEW]}


def _figure(x: float | None) -> str:
    return figure_text(x, ".4g").replace("inf", "&infin;")


def _player(path: Path | None, out_dir: Path, missing: str) -> str:
    if path is None:
        return f"<em>{_e(missing)}</em>"
    return (f'<audio controls preload="none" src="{_e(_rel(path, out_dir))}"></audio><br>'
            f'<a href="{_e(_rel(path, out_dir))}">{_e(path.name)}</a>')


def _quality_test(tq: TestQuality, calls: list[QualityAudio], out_dir: Path) -> str:
    colour = QUALITY_COLOURS.get(tq.status, "#222")
    seconds = getattr(tq, "seconds", None)
    took = "" if seconds is None else f" &middot; quality checks took {float(seconds):.2f} s"
    head = ("<tr><th>check</th><th>call</th><th>status</th><th>figure</th><th>limit</th>"
            "<th>what it says</th></tr>")
    rows = "".join(
        f"<tr><td class=id>{_e(c.name)}</td><td class=id>{_e(c.call)}</td>"
        f"<td class=verdict style=\"color:{QUALITY_COLOURS.get(c.status, '#222')}\">{_e(c.status)}</td>"
        f"<td>{_figure(c.figure)}</td><td>{_figure(c.limit)}</td><td class=text>{_e(c.text)}</td></tr>"
        for c in ordered_checks(tq.checks))
    checks = f"<table>{head}{rows}</table>" if rows else "<p>No checks were judged.</p>"
    players = "".join(
        f"<tr><td class=id>{_e(a.call)}</td><td>{_player(a.golden, out_dir, 'no golden')}</td>"
        f"<td>{_player(a.current, out_dir, 'no audio')}</td><td class=text>{_e(a.note)}</td></tr>"
        for a in calls)
    audio = (f"<p></p><table><tr><th>call</th><th>golden</th><th>current</th><th>note</th></tr>{players}</table>"
             if players else "")
    return (f'<div class=quality><h3 title="{_e(tq.nodeid)}">{_e(tq.nodeid)} '
            f'<span style="color:{colour}">{_e(tq.status)}</span></h3>'
            f"<p class=key>{len(tq.calls)} call(s), {len(tq.checks)} check(s){took}</p>{checks}{audio}</div>")


def _quality_section(files: ReportFiles, data: ReportInput) -> list[str]:
    """The quality gate: the session's counts, the trend graph over sessions, then per test (failed
    tests first) its checks and each call's golden and current audio side by side."""
    if not data.quality:
        return []
    n = quality_counts(data.quality)
    out = ["<h2>Quality</h2>",
           f"<p>{n.tests} quality test(s): {n.failed} failed, {n.uncalibrated} uncalibrated (scores not judged "
           f"until the baseline has enough clean runs), {n.without_golden} without golden.</p>"]
    if files.quality_json is not None:
        out.append(f'<p><a href="{_e(_rel(files.quality_json, files.out_dir))}">quality.json</a> (every check)</p>')
    if files.quality_trend_png is not None:
        out.append(f'<img src="{_e(_rel(files.quality_trend_png, files.out_dir))}" alt="quality trend">')
    by_test: dict[str, list[QualityAudio]] = {}
    for a in files.quality_audio:
        by_test.setdefault(a.nodeid, []).append(a)
    for tq in sorted(data.quality, key=lambda t: STATUS_ORDER.get(t.status, len(STATUS_ORDER))):
        out.append(_quality_test(tq, by_test.get(tq.nodeid, []), files.out_dir))
    return out


def _machine(data: ReportInput) -> str:
    """The machine section: its health (as the terminal's `machine:` line), what changed in the stack."""
    rows = machine_facts(data.health, data.machine)
    if data.drift is not None:
        rows.append(("stack changes since the baseline", ", ".join(data.stack_changes) or "none"))
    rows += [(f"stack: {k}", v) for k, v in data.stack.items()]
    body = "".join(f"<tr><td class=id>{_e(k)}</td><td class=id>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _changes_section(files: ReportFiles, tests: list[str]) -> str:
    """The change points of each test's RTF over the sessions of this key (oldest first)."""
    if files.changes is None:
        return f"<p>Not computed: {_e(files.changes_note)}</p>"
    order = {n: i for i, n in enumerate(tests)}
    rows = []
    for nodeid in sorted(files.changes, key=lambda n: order.get(n, len(order))):
        for cp in files.changes[nodeid]:
            colour = VERDICT_COLOURS[DriftVerdict.REGRESSION if cp.shift > 0 else DriftVerdict.IMPROVEMENT]
            changed = "<br>".join(_e(w) for w in cp.what_changed) or "nothing recorded"
            when = (cp.time_utc or "time unknown")[:16].replace("T", " ")
            rows.append(
                f"<tr><td class=id title=\"{_e(nodeid)}\">{_e(short_id(nodeid, 70))}</td>"
                f"<td>{cp.index + 1} ({_e(when)}, <code>{_e(short_commit(cp.commit))}</code>)"
                f"</td><td style=\"color:{colour}\">{cp.shift_pct:+.1f}%</td>"
                f"<td>{cp.median_before:.3f} &rarr; {cp.median_after:.3f}</td>"
                f"<td class=changed>{changed}</td></tr>")
    if not rows:
        return "<p>None found.</p>"
    head = ("<tr><th>test</th><th>from session (time UTC, commit)</th><th>RTF shift</th>"
            "<th>median RTF before &rarr; after</th><th>what changed</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _stream_block(s: StreamFiles, out_dir: Path) -> str:
    t = s.stream.trace
    audio = (f'<div><audio controls preload="none" src="{_e(_rel(s.wav, out_dir))}"></audio> '
             f'<a href="{_e(_rel(s.wav, out_dir))}">{_e(s.wav.name)}</a></div>'
             if s.wav else "<div><em>no audio recorded</em></div>")
    err = f": {_e(t.error)}" if t.error else ""
    return (f'<div class=stream><h3>{_e(s.stream.nodeid)} / {_e(t.label)} '
            f'({_e(t.outcome)}{err})</h3>{audio}'
            f'<img src="{_e(_rel(s.png, out_dir))}" alt="stream {_e(t.label)}"></div>')


def write_index(files: ReportFiles, data: ReportInput, commit: str | None) -> Path:
    out = files.out_dir
    counts = Counter(r.verdict for r in (data.drift or []))
    if data.drift is None:
        banner = (f"No baseline is stored for runner {data.key.runner} and this configuration, so nothing "
                  "was judged for drift. The graphs show this session's figures only.",
                  VERDICT_COLOURS[DriftVerdict.NEW])
    elif counts[DriftVerdict.REGRESSION]:
        banner = (f"{counts[DriftVerdict.REGRESSION]} regression(s) against the baseline"
                  + (f" (stack changed: {', '.join(data.stack_changes)})." if data.stack_changes else "."),
                  VERDICT_COLOURS[DriftVerdict.REGRESSION])
    elif counts[DriftVerdict.INCONCLUSIVE]:
        note = next(r.note for r in data.drift if r.verdict == DriftVerdict.INCONCLUSIVE)
        banner = (f"{counts[DriftVerdict.INCONCLUSIVE]} verdict(s) inconclusive: {note}. Rerun on a quiet machine.",
                  VERDICT_COLOURS[DriftVerdict.INCONCLUSIVE])
    else:
        banner = ("No regression against the baseline.", VERDICT_COLOURS[DriftVerdict.OK])
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    failing = [s for s in files.streams if s.stream.failed]
    passing = [s for s in files.streams if not s.stream.failed]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(data.title)}</h1>",
        f"<p class=key>{_e(data.key.describe())}<br>baseline file <code>{_e(data.key.runner)}/"
        f"{_e(data.key.config_slug())}.json</code>"
        f" &middot; commit <code>{_e(commit or 'unknown')}</code> &middot; {_e(now)} UTC"
        f" &middot; tolerance &plusmn;{data.tolerance:.0%}</p>",
        f'<div class=banner style="border-color:{banner[1]}">{_e(banner[0])}'
        f"{(' (' + _e(summary) + ')') if summary else ''}</div>",
        *_ab_section(files, data),
        "<h2>Summary</h2>", _table(data),
        *_quality_section(files, data),
        "<h2>Machine and stack</h2>", _machine(data),
        f'<p><a href="{_e(_rel(files.csv, out))}">rtf.csv</a> (every run) &middot; '
        + (f'<a href="{_e(_rel(files.history, out))}">history.jsonl</a></p>'
           if files.history.parent.resolve() == out.resolve() else
           f"history: <code>{_e(files.history)}</code></p>"),
        "<h2>RTF against the baseline</h2>",
        f'<img src="{_e(_rel(files.drift_png, out))}" alt="RTF drift">',
        "<h2>RTF over sessions</h2>",
        f'<img src="{_e(_rel(files.trend_png, out))}" alt="RTF trend">',
        "<h2>Change points</h2>",
        "<p class=key>Where a test's median RTF over these sessions moved to a new level "
        "(ruptures PELT, L1 cost on log RTF scaled by its noise), and what differs between "
        "the session before and the first session after.</p>",
        _changes_section(files, [f.nodeid for f in data.figures]),
        f"<h2>Failing streams ({len(failing)})</h2>",
        *([_stream_block(s, out) for s in failing] or ["<p>None.</p>"]),
    ]
    if passing:
        parts += [f"<h2>Sample of passing streams ({len(passing)})</h2>",
                  *[_stream_block(s, out) for s in passing]]
    parts.append("</body></html>\n")
    files.html.write_text("\n".join(parts), encoding="utf-8")
    return files.html


def _p(p: float, against: float) -> str:
    return "-" if p != p else f"{p:.2g} vs {against:.2f}"
