"""The report's graphs of this session's verdicts (rtf_drift.png, ab_forest.png) and what every graph
shares (matplotlib's loading, the key line, colours, size); the history graphs are trends.py's, a
stream's stream_plot.py's. Drawn with matplotlib (Agg backend, no display needed). No pytest import here.

matplotlib is imported inside each function: it is a [report] extra, and the plugin must load
without it.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judging.measurements import TestFigures
from ..tracking.ab import AbVerdicts
from ..tracking.drift import DriftResult, DriftVerdict
from ..tracking.runkey import RunKey
from .model import INSTALL_HINT, PAIRED_COLOURS, VERDICT_COLOURS, sample_stats, short_id

if TYPE_CHECKING:

    pass

BASELINE_COLOUR = "#555555"
REGIME_COLOUR = "#9467bd"
DPI = 110
MAX_TREND_PANELS = 24


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"the report graphs need matplotlib: {INSTALL_HINT}") from exc
    matplotlib.use("Agg", force=True)   # never try to open a window on a CI runner
    import matplotlib.pyplot as plt
    return plt


def key_line(key: RunKey, width: int = 110) -> str:
    return "\n".join(textwrap.wrap(key.describe(), width))


# -- rtf_drift.png ---------------------------------------------------------------------------

def plot_drift(path: Path, figures: Sequence[TestFigures], drift: Sequence[DriftResult] | None,
               baseline_samples: dict[str, list[float]] | None, key: RunKey,
               tolerance: float, alpha: float = 0.05) -> Path:
    """Per test: current vs baseline RTF, as % of the baseline median, with the tolerance band."""
    plt = pyplot()
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
    fig.suptitle(title + "\n" + key_line(key, 130), fontsize=10, x=0.01, ha="left")
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
    plt = pyplot()
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
            ax.errorbar([r.ratio], [y], xerr=[[r.ratio - r.ci_low], [r.ci_high - r.ratio]],
                        fmt="o", color=colour, ecolor=colour, capsize=3, ms=6,
                        label=str(r.verdict) if str(r.verdict) not in seen else None)
            seen.add(str(r.verdict))
            ax.text(1.01, y, f"{r.ratio:.2f}x, {r.n_pairs} pairs", transform=ax.get_yaxis_transform(),
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
        ax.set_xlabel(f"head / base {metric} (Hodges-Lehmann ratio, {_pct_ci(pooled.confidence)} CI); "
                      "right = head slower", fontsize=9)
        ax.set_title("\n".join(textwrap.wrap(pooled.describe(), 70)), fontsize=9, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no test recorded A/B pairs", ha="center", va="center",
                          transform=axes.flat[0].transAxes)
        axes.flat[0].axis("off")
    fig.suptitle(f"A/B against {ab.base or 'the base side'}\n{key_line(key, 120)}", fontsize=10, x=0.01,
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
