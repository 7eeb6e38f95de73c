"""The report's history graphs: the RTF trend per test (rtf_trend.png, with the change points over
the history) and the quality trend (quality_trend.png), drawn with matplotlib as plots.py's graphs.
No pytest import here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tracking.drift import DriftVerdict
from ..tracking.runkey import RunKey
from .model import VERDICT_COLOURS, short_id
from .plots import BASELINE_COLOUR, DPI, MAX_TREND_PANELS, REGIME_COLOUR, key_line, pyplot

if TYPE_CHECKING:
    from ..tracking.changepoints import ChangePoint


# -- rtf_trend.png ---------------------------------------------------------------------------

def plot_trend(path: Path, history: Sequence[dict[str, Any]], nodeids: Sequence[str],
               baseline_medians: dict[str, float], key: RunKey, tolerance: float,
               changes: dict[str, list[ChangePoint]] | None = None,
               stack_changes: Sequence[str] = ()) -> Path:
    """Per test, median RTF over the sessions in history (same key), baseline as a line; with
    `changes` (changepoints.history_changes over the same history), each change point as a
    dashed line labelled with its shift and what changed first, and each regime's median.
    `stack_changes` (what differs from the baseline's stack) is named in the title."""
    plt = pyplot()
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
        mark_changes(ax, (changes or {}).get(nodeid, []))
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
    fig.suptitle(f"RTF trend: {span}{more}{since}\n{key_line(key, 90)}", fontsize=10, x=0.01,
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
    plt = pyplot()
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


def mark_changes(ax: Any, changes: Sequence[ChangePoint]) -> None:
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
