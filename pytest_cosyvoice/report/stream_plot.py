"""The report's graph of one stream (streams/<id>.png): the waveform with its chunk joins, and each
chunk's arrival against its playback due time. No pytest import here.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judging.measurements import StreamTrace
from ..judging.playback import simulate_playback
from .model import short_id
from .plots import DPI, pyplot

if TYPE_CHECKING:
    import numpy as np


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
    plt = pyplot()
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
