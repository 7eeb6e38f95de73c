"""The report's graphs, drawn with matplotlib (Agg backend, no display needed). No pytest import here.

matplotlib is imported inside each function: it is a [report] extra, and the plugin must load
without it.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judging.measurements import StreamTrace, TestFigures
from ..judging.playback import simulate_playback
from ..tracking.ab import AbVerdicts
from ..tracking.drift import DriftResult, DriftVerdict
from ..tracking.runkey import RunKey
from .model import INSTALL_HINT, PAIRED_COLOURS, VERDICT_COLOURS, sample_stats, short_id

if TYPE_CHECKING:
    import numpy as np

    from ..tracking.changepoints import ChangePoint

BASELINE_COLOUR = "#555555"
REGIME_COLOUR = "#9467bd"
DPI = 110
MAX_TREND_PANELS = 24


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"the report graphs need matplotlib: {INSTALL_HINT}") from exc
    matplotlib.use("Agg", force=True)   # never try to open a window on a CI runner
    import matplotlib.pyplot as plt
    return plt


def _key_line(key: RunKey, width: int = 110) -> str:
    return "\n".join(textwrap.wrap(key.describe(), width))


# -- rtf_drift.png ---------------------------------------------------------------------------

def plot_drift(path: Path, figures: Sequence[TestFigures], drift: Sequence[DriftResult] | None,
               baseline_samples: dict[str, list[float]] | None, key: RunKey,
               tolerance: float, alpha: float = 0.05) -> Path:
    """Per test: current vs baseline RTF, as % of the baseline median, with the tolerance band."""
    plt = _pyplot()
    by_id = {r.nodeid: r for r in (drift or [])}
    has_baseline = any(r.baseline_median for r in by_id.values())
    tests = list(figures)
    n = max(len(tests), 1)
    # Right-hand column: the numbers per row, in its own axes so tight_layout keeps it in view.
    fig, (ax, ax_txt) = plt.subplots(1, 2, figsize=(13, 2.3 + 0.5 * n), dpi=DPI, sharey=True,
                                     gridspec_kw={"width_ratios": [3, 1.05]})
    ax_txt.axis("off")
    ys = list(range(n))[::-1]       # first test at the top
    rows = ys[: len(tests)]         # a session without tests (only quality ones, say) draws an empty row

    if not has_baseline:
        _plot_absolute(ax, ax_txt, tests, rows)
        title = ("RTF per test - NO BASELINE for this runner and configuration, nothing to compare with\n"
                 "diamond = median, bar = interquartile range, dots = single runs")
    else:
        _plot_relative(ax, ax_txt, tests, rows, by_id, baseline_samples or {}, tolerance)
        title = (f"RTF drift against the baseline (shaded: ±{tolerance:.0%} tolerance)\n"
                 f"regression = median drift > +{tolerance:.0%} AND one-sided Mann-Whitney "
                 f"p < {alpha:g} on a comparable machine; else inconclusive")
    fig.suptitle(title + "\n" + _key_line(key, 130), fontsize=10, x=0.01, ha="left")
    ax.set_yticks(ys)
    ax.set_yticklabels([short_id(f.nodeid) for f in tests] or ["(no tests)"], fontsize=9)
    for label, f in zip(ax.get_yticklabels(), tests, strict=False):  # no labels when empty
        verdict = by_id.get(f.nodeid)
        if verdict and verdict.verdict == DriftVerdict.REGRESSION:
            label.set_color(VERDICT_COLOURS[DriftVerdict.REGRESSION])
            label.set_fontweight("bold")
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower left", ncol=5, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.01, 0.0))
    fig.tight_layout(rect=(0, 0.35 / (2.3 + 0.5 * n) if handles else 0, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def _spread(ax: Any, y: float, values: list[float], colour: str, marker: str, label: str | None,
            size: float = 14) -> None:
    st = sample_stats(values)
    ax.scatter(values, [y] * len(values), s=size, color=colour, alpha=0.45, linewidths=0)
    ax.plot([st.q1, st.q3], [y, y], color=colour, lw=4, alpha=0.6, solid_capstyle="butt")
    ax.scatter([st.median], [y], s=60, color=colour, marker=marker, edgecolors="black",
               linewidths=0.6, zorder=3, label=label)


def _plot_relative(ax: Any, ax_txt: Any, tests: Sequence[TestFigures], ys: list[int],
                   by_id: dict[str, DriftResult], base: dict[str, list[float]],
                   tolerance: float) -> None:
    ax.axvspan(-100 * tolerance, 100 * tolerance, color="#2ca02c", alpha=0.10,
               label=f"±{tolerance:.0%} tolerance")
    ax.axvline(0, color=BASELINE_COLOUR, lw=1)
    lo, hi = -100 * tolerance * 2, 100 * tolerance * 2
    labelled: set[str] = set()
    for f, y in zip(tests, ys, strict=True):
        r = by_id.get(f.nodeid)
        if r is None or not r.baseline_median or not f.rtf:
            text = "new: no baseline for this test" if f.rtf else "no RTF samples"
            if f.rtf:
                text += f" (median RTF {sample_stats(f.rtf).median:.3f})"
            ax.text(0.01, y, text, transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8.5, color=VERDICT_COLOURS[DriftVerdict.NEW], style="italic")
            continue
        bmed = r.baseline_median
        if base.get(f.nodeid):
            b = _relative_pct(base[f.nodeid], bmed)
            _spread(ax, y + 0.17, b, BASELINE_COLOUR, "s",
                    "baseline samples (square = median, bar = IQR)"
                    if "baseline" not in labelled else None)
            labelled.add("baseline")
            lo, hi = min(lo, *b), max(hi, *b)
        verdict = r.verdict
        colour = VERDICT_COLOURS[verdict]
        c = _relative_pct(f.rtf, bmed)
        _spread(ax, y - 0.17, c, colour, "D",
                f"current: {verdict}" if verdict not in labelled else None)
        labelled.add(verdict)
        lo, hi = min(lo, *c), max(hi, *c)
        p = f", p={r.p_value:.2g}" if r.p_value is not None else ""
        mark = "  ▲" if verdict == DriftVerdict.REGRESSION else ""
        ax_txt.text(0.02, y, f"{bmed:.3f} → {r.current_median:.3f}  {r.drift_pct:+.1f}%{p}\n"
                    f"{verdict}{mark}", transform=ax_txt.get_yaxis_transform(), va="center",
                    fontsize=8.5, color=colour,
                    fontweight="bold" if verdict == DriftVerdict.REGRESSION else "normal")
    pad = 0.08 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("RTF relative to the baseline median (%); right = slower")
    ax_txt.set_title("baseline → current median RTF", fontsize=9, loc="left")


def _relative_pct(values: Sequence[float], base: float) -> list[float]:
    return [100.0 * (v / base - 1.0) for v in values]


def _plot_absolute(ax: Any, ax_txt: Any, tests: Sequence[TestFigures], ys: list[int]) -> None:
    values = [v for f in tests for v in f.rtf]
    for f, y in zip(tests, ys, strict=True):
        if f.rtf:
            st = sample_stats(f.rtf)
            _spread(ax, y, list(f.rtf), VERDICT_COLOURS[DriftVerdict.NEW], "D", None)
            ax_txt.text(0.02, y, f"median {st.median:.3f}, IQR {st.iqr:.3f}, {st.rounds} runs",
                        transform=ax_txt.get_yaxis_transform(), va="center", fontsize=8.5)
        else:
            ax.text(0.01, y, "no RTF samples", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8.5, style="italic")
    hi = max(values + [0.0])
    if hi >= 0.8:
        ax.axvline(1.0, color="#d62728", ls="--", lw=1, label="RTF 1 = real time")
    ax.set_xlim(0, max(hi * 1.15, 0.05))
    ax.set_xlabel("RTF = synthesis time / audio duration (lower is faster)")


# -- ab_forest.png ----------------------------------------------------------------------------

def plot_forest(path: Path, ab: AbVerdicts, key: RunKey, tolerance: float) -> Path:
    """A/B: per test its median head/base ratio with its CI, the pooled ratio at the bottom, the
    tolerance band shaded, on a log x axis (so 0.8x and 1.25x lie equally far from 1x); one panel
    per metric (RTF, first chunk)."""
    plt = _pyplot()
    metrics = ab.metrics()
    rows = max((len(paired) for _, paired, _ in metrics), default=0) + 1
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(6.5 * max(len(metrics), 1), 2.0 + 0.42 * rows),
                             dpi=DPI, squeeze=False)
    for ax, (metric, paired, pooled) in zip(axes.flat, metrics, strict=False):
        ys = list(range(len(paired), 0, -1))    # first test at the top, the pooled row at 0
        ax.axvspan(1.0 - tolerance, 1.0 + tolerance, color="#2ca02c", alpha=0.10,
                   label=f"±{tolerance:.0%} tolerance")
        ax.axvline(1.0, color=BASELINE_COLOUR, lw=1)
        seen: set[str] = set()
        for r, y in zip(paired, ys, strict=True):
            colour = PAIRED_COLOURS[r.verdict]
            ax.errorbar([r.median_ratio], [y], xerr=[[r.median_ratio - r.ci_low], [r.ci_high - r.median_ratio]],
                        fmt="o", color=colour, ecolor=colour, capsize=3, ms=6,
                        label=str(r.verdict) if str(r.verdict) not in seen else None)
            seen.add(str(r.verdict))
            ax.text(1.01, y, f"{r.median_ratio:.2f}x, {r.n_pairs} pairs", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=8, color=colour)
        colour = PAIRED_COLOURS[pooled.verdict]
        ax.errorbar([pooled.ratio], [0], xerr=[[pooled.ratio - pooled.ci_low], [pooled.ci_high - pooled.ratio]],
                    fmt="D", color=colour, ecolor=colour, capsize=4, ms=9, mec="black", lw=2.2)
        ax.text(1.01, 0, f"{pooled.ratio:.2f}x: {pooled.verdict}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8.5, color=colour, fontweight="bold")
        ax.axhline(0.5, color="#cccccc", lw=0.8)
        ax.set_xscale("log")
        lows = [r.ci_low for r in paired] + [pooled.ci_low, 1.0 - tolerance]
        highs = [r.ci_high for r in paired] + [pooled.ci_high, 1.0 + tolerance]
        lo, hi = min(lows) / 1.05, max(highs) * 1.05
        ax.set_xlim(lo, hi)
        _ratio_ticks(ax, lo, hi)
        ax.set_yticks([*ys, 0])
        ax.set_yticklabels([short_id(r.nodeid, 44) for r in paired] + [f"pooled ({pooled.n_tests} tests)"],
                           fontsize=8.5)
        ax.set_ylim(-0.7, len(paired) + 0.7)
        ax.set_xlabel(f"head / base {metric} (median ratio, {_pct_ci(pooled.confidence)} CI); right = head slower",
                      fontsize=9)
        ax.set_title("\n".join(textwrap.wrap(pooled.describe(), 70)), fontsize=9, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no test recorded A/B pairs", ha="center", va="center",
                          transform=axes.flat[0].transAxes)
        axes.flat[0].axis("off")
    fig.suptitle(f"A/B against {ab.base or 'the base side'}\n{_key_line(key, 120)}", fontsize=10, x=0.01,
                 ha="left")
    legend: dict[str, Any] = {}     # each verdict once, whichever panel has it
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower left", ncol=6, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.01, 0.0))
    fig.tight_layout(rect=(0, 0.3 / (2.0 + 0.42 * rows) if legend else 0, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def _ratio_ticks(ax: Any, lo: float, hi: float) -> None:
    """Ratios as "0.9x", "1x", "1.25x" at round values: a log axis' own labels are powers of ten."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    candidates = [0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0,
                  10.0]
    shown = [t for t in candidates if lo <= t <= hi]
    while len(shown) > 5:           # keep the labels apart (the panels are narrow): every other one, 1x kept
        shown = [t for i, t in enumerate(shown) if i % 2 == 0 or t == 1.0]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _pct_ci(confidence: float) -> str:
    return f"{100.0 * confidence:g} %"


# -- rtf_trend.png ---------------------------------------------------------------------------

def plot_trend(path: Path, history: Sequence[dict[str, Any]], nodeids: Sequence[str],
               baseline_medians: dict[str, float], key: RunKey, tolerance: float,
               changes: dict[str, list[ChangePoint]] | None = None,
               stack_changes: Sequence[str] = ()) -> Path:
    """Per test, median RTF over the sessions in history (same key), baseline as a line; with
    `changes` (changepoints.history_changes over the same history), each change point as a
    dashed line labelled with its shift and what changed first, and each regime's median.
    `stack_changes` (what differs from the baseline's stack) is named in the title."""
    plt = _pyplot()
    shown = list(nodeids)[:MAX_TREND_PANELS]
    n = max(len(shown), 1)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 1.3 + 2.5 * rows), dpi=DPI,
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, nodeid in zip(axes.flat, shown, strict=False):  # the grid may have spare panels
        pts = [(i + 1, s["tests"][nodeid]["rtf"]) for i, s in enumerate(history)
               if s.get("tests", {}).get(nodeid, {}).get("rtf") is not None]
        if pts:
            xs, vals = zip(*pts, strict=True)
            ax.plot(xs, vals, marker="o", ms=4, color=VERDICT_COLOURS[DriftVerdict.OK], lw=1.2,
                    label="session median")
            ax.scatter([xs[-1]], [vals[-1]], s=50, color=VERDICT_COLOURS[DriftVerdict.OK],
                       edgecolors="black", zorder=3)
        else:
            ax.text(0.5, 0.5, "no sessions recorded", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
        bmed = baseline_medians.get(nodeid)
        if bmed:
            ax.axhline(bmed, color=BASELINE_COLOUR, ls="--", lw=1, label="baseline median")
            ax.axhspan(bmed * (1 - tolerance), bmed * (1 + tolerance), color="#2ca02c",
                       alpha=0.10, label=f"±{tolerance:.0%}")
        _mark_changes(ax, (changes or {}).get(nodeid, []))
        ax.set_title(short_id(nodeid, 48), fontsize=9)
        ax.set_xlabel("session (1 = oldest)", fontsize=8)
        ax.set_ylabel("median RTF", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0.5, max(len(history), 1) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    if len(history):
        first = str(history[0].get("time_utc", ""))[:16].replace("T", " ")
        last = str(history[-1].get("time_utc", ""))[:16].replace("T", " ")
        span = f"{len(history)} session(s), {first} → {last} UTC"
    else:
        span = "no sessions recorded yet"
    more = f" (showing {len(shown)} of {len(nodeids)} tests)" if len(nodeids) > len(shown) else ""
    legend: dict[str, Any] = {}     # every panel's entries once: a change may be in any panel
    for ax in axes.flat[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="upper right", fontsize=8, ncol=3,
                   frameon=False)
    since = ("\nstack changed since the baseline: " + ", ".join(stack_changes)) if stack_changes else ""
    fig.suptitle(f"RTF trend: {span}{more}{since}\n{_key_line(key, 90)}", fontsize=10, x=0.01,
                 ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97 - 0.03 / rows))
    fig.savefig(path)
    plt.close(fig)
    return path


# -- quality_trend.png ----------------------------------------------------------------------------

QUALITY_COLOURS = {"dnsmos": "#2b7bba", "plcmos": "#ff7f0e", "failed": "#d62728"}


def plot_quality_trend(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per session that recorded quality tests (history lines with "quality", oldest first): the mean
    DNSMOS and PLCMOS over its tests (a gap where a session had none) above, its failed quality
    tests below, as bars against its number of quality tests."""
    plt = _pyplot()
    sessions = [(i + 1, s["quality"]) for i, s in enumerate(history) if isinstance(s.get("quality"), dict)]
    fig, (ax_mos, ax_failed) = plt.subplots(2, 1, figsize=(8, 5.2), dpi=DPI, sharex=True,
                                            gridspec_kw={"height_ratios": [2, 1]})
    xs = [x for x, _ in sessions]
    for name, label in (("dnsmos", "DNSMOS (P.835 overall)"), ("plcmos", "PLCMOS")):
        # None -> NaN: matplotlib leaves a gap rather than joining across a session without the score.
        ys = [float("nan") if q.get(name) is None else float(q[name]) for _, q in sessions]
        if any(not math.isnan(y) for y in ys):
            ax_mos.plot(xs, ys, marker="o", ms=4, lw=1.2, color=QUALITY_COLOURS[name], label=f"mean {label}")
    if ax_mos.get_legend_handles_labels()[0]:
        ax_mos.legend(fontsize=8, frameon=False)
    else:
        ax_mos.text(0.5, 0.5, "no MOS recorded (the quality extra or the scores were not used)",
                    ha="center", va="center", transform=ax_mos.transAxes, fontsize=9)
    ax_mos.set_ylabel("mean MOS", fontsize=8)
    tests = [int(q.get("tests") or 0) for _, q in sessions]
    failed = [int(q.get("failed") or 0) for _, q in sessions]
    ax_failed.bar(xs, tests, color="#dddddd", label="quality tests")
    ax_failed.bar(xs, failed, color=QUALITY_COLOURS["failed"], label="failed")
    ax_failed.set_ylabel("tests", fontsize=8)
    ax_failed.set_xlabel("session (1 = oldest in the history)", fontsize=8)
    ax_failed.legend(fontsize=8, frameon=False)
    for ax in (ax_mos, ax_failed):
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_failed.yaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Quality over {len(sessions)} session(s)", fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _change_label(cp: ChangePoint) -> str:
    """"+31 %" over "torch 2.10.0+cu128": the first thing that changed, by its new value."""
    first = cp.what_changed[0] if cp.what_changed else ""
    name, _, rest = first.partition(" ")
    new = rest.rpartition(" -> ")[2]
    item = f"{name} {new}" if new else first
    return f"{cp.shift_pct:+.0f} %" + (f"\n{item[:21]}…" if len(item) > 22 else
                                      f"\n{item}" if item else "")


def _mark_changes(ax: Any, changes: Sequence[ChangePoint]) -> None:
    """Dashed line between the last session before and the first after each change (x is the
    1-based session number), labelled at the top; each regime's median as a segment."""
    if not changes:
        return
    for j, cp in enumerate(changes):
        x = (cp.previous_index + cp.index) / 2 + 1
        colour = VERDICT_COLOURS[DriftVerdict.REGRESSION if cp.shift > 0 else DriftVerdict.IMPROVEMENT]
        ax.axvline(x, color=colour, ls="--", lw=1.2, label="change point" if j == 0 else None)
        # Alternate heights so that labels of nearby changes do not cover each other.
        ax.text(x, 0.97 - 0.13 * (j % 2), " " + _change_label(cp).replace("\n", "\n "),
                ha="left", va="top", fontsize=7, color=colour, clip_on=True,
                transform=ax.get_xaxis_transform(),
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
        ax.hlines(cp.median_before, cp.before_first + 1, cp.previous_index + 1,
                  color=REGIME_COLOUR, lw=2.2, alpha=0.8,
                  label="regime median" if j == 0 else None)
    last = changes[-1]
    ax.hlines(last.median_after, last.index + 1, last.after_last + 1, color=REGIME_COLOUR,
              lw=2.2, alpha=0.8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.35 * (hi - lo))     # headroom for the labels above the data


# -- streams/<id>.png ------------------------------------------------------------------------

def _envelope(audio: np.ndarray, sr: int, buckets: int = 3000) -> tuple[Any, Any, Any]:
    """Min/max per bucket: a 30 s stream has ~700k samples; plotting each is slow and no clearer."""
    import numpy as np

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(x) <= 2 * buckets:
        t = np.arange(len(x)) / sr
        return t, x, x
    size = len(x) // buckets
    trimmed = x[: size * buckets].reshape(buckets, size)
    t = (np.arange(buckets) * size + size / 2) / sr
    return t, trimmed.min(axis=1), trimmed.max(axis=1)


def plot_stream(path: Path, nodeid: str, trace: StreamTrace, audio: np.ndarray | None,
                prebuffer_s: float) -> Path:
    """Waveform with chunk joins, and chunk arrival vs playback due time (stalls, clicks)."""
    plt = _pyplot()
    pb = simulate_playback(trace.chunk_samples, trace.arrivals_s, trace.sample_rate, prebuffer_s)
    sr = trace.sample_rate or 1
    starts = [sum(trace.chunk_samples[:i]) / sr for i in range(len(trace.chunk_samples))]
    fig, (ax_w, ax_t) = plt.subplots(2, 1, figsize=(12, 7.2), dpi=DPI,
                                     gridspec_kw={"height_ratios": [1, 1.15]})

    # Waveform, on the audio's own time axis.
    if audio is not None and len(audio):
        t, lo, hi = _envelope(audio, sr)
        ax_w.fill_between(t, lo, hi, color="#2b7bba", lw=0.6)
        ax_w.plot(t, lo, color="#2b7bba", lw=0.4)
    else:
        ax_w.text(0.5, 0.5, "no audio recorded for this stream", ha="center", va="center",
                  transform=ax_w.transAxes)
    for i, s in enumerate(starts[1:], start=1):
        ax_w.axvline(s, color="#999999", lw=0.7, ls=":", label="chunk join" if i == 1 else None)
    for j, i in enumerate(pb.stalled_chunks):
        ax_w.axvline(starts[i], color="#d62728", lw=1.6,
                     label="player stalls here" if j == 0 else None)
        ax_w.text(starts[i], 0.97, f" stall {pb.stalls_s[i] * 1000:.0f} ms", color="#d62728",
                  fontsize=8, ha="left", va="top", transform=ax_w.get_xaxis_transform(),
                  bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    clicks = [starts[i] for i in trace.click_joins if 0 <= i < len(starts)]
    if clicks:
        ax_w.scatter(clicks, [0.93] * len(clicks), marker="v", s=70, color="#ff7f0e",
                     edgecolors="black", zorder=4, transform=ax_w.get_xaxis_transform(),
                     label="click at join")
    total = sum(trace.chunk_samples) / sr
    ax_w.set_xlim(0, max(total, 1e-3))
    ax_w.set_ylim(-1.05, 1.05)
    ax_w.set_xlabel("audio time (s)")
    ax_w.set_ylabel("amplitude")
    if ax_w.get_legend_handles_labels()[0]:  # a passing single-chunk stream has nothing to label
        ax_w.legend(loc="lower right", fontsize=8, ncol=3)
    worst = (f"worst stall {pb.worst_stall_s * 1000:.0f} ms at chunk {pb.worst_chunk}"
             if pb.worst_chunk is not None else "no stall")
    err = f" - {trace.error}" if trace.error else ""
    ax_w.set_title(f"{short_id(nodeid, 90)} / {trace.label}: {trace.outcome}{err}\n"
                   f"{len(trace.chunk_samples)} chunks, {total:.2f} s audio at {sr} Hz; "
                   f"prebuffer {prebuffer_s * 1000:.0f} ms: {worst}; "
                   f"gap-free needs {pb.needed_prebuffer_s * 1000:.0f} ms",
                   fontsize=10, loc="left")

    # Arrival vs due, on the wall clock from the request.
    idx = list(range(len(trace.arrivals_s)))
    def ms(vals: Sequence[float]) -> list[float]:
        return [v * 1000.0 for v in vals]

    if idx:
        ax_t.plot(idx, ms(pb.due_s), color="black", marker="o", mfc="white", ms=5, lw=1,
                  label="due (player needs it)")
        ax_t.scatter(idx, ms(trace.arrivals_s), color="#2b7bba", s=22, zorder=3,
                     label="arrived")
        ax_t.axhline(pb.due_s[0] * 1000, color="#7f7f7f", ls="--", lw=0.8,
                     label=f"playback starts (first chunk + {prebuffer_s * 1000:.0f} ms)")
        for j, i in enumerate(pb.stalled_chunks):
            ax_t.vlines(i, pb.due_s[i] * 1000, trace.arrivals_s[i] * 1000, color="#d62728",
                        lw=3, label="stall (late by)" if j == 0 else None)
            ax_t.annotate(f"{pb.stalls_s[i] * 1000:.0f} ms", (i, trace.arrivals_s[i] * 1000),
                          xytext=(4, 2), textcoords="offset points", color="#d62728",
                          fontsize=8)
        for j, i in enumerate(c for c in trace.click_joins if 0 <= c < len(idx)):
            ax_t.scatter([i], [trace.arrivals_s[i] * 1000], marker="v", s=70, color="#ff7f0e",
                         edgecolors="black", zorder=4, label="click at join" if j == 0 else None)
        ax_t.set_xlim(-0.5, len(idx) - 0.5)
        ax_t.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax_t.text(0.5, 0.5, "no chunks arrived", ha="center", va="center",
                  transform=ax_t.transAxes)
    ax_t.set_xlabel("chunk index")
    ax_t.set_ylabel("ms since the request")
    ax_t.grid(alpha=0.3)
    ax_t.legend(loc="upper left", fontsize=8)
    ax_t.set_title("chunk arrival vs playback due time (a late chunk stalls the player "
                   "and shifts every later due time)", fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
