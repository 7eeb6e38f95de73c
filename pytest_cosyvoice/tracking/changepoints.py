"""Change points in each test's RTF history: where a new regime starts, and what changed there.

    changes = history_changes(history.read_history(path, key), nodeids)   # {nodeid: [ChangePoint]}
    for cp in changes[nodeid]: print(describe(cp))

How a change is found (`find_changes`): the series of session medians is taken as log(RTF), so a
step of X % has the same size whatever the RTF level, and divided by a robust estimate of its
session-to-session noise (`noise_scale`), so the penalty means the same on a quiet GPU and on a
shared 2-core VM. ruptures' PELT then fits a piecewise-constant series with the L1 cost (each
segment around its median: one slow session is an outlier, not a regime) and a fixed penalty of
DEFAULT_PENALTY per change point. See `find_changes` for the measured rates.

ruptures and numpy are imported inside the functions: ruptures is a [report] extra and the
plugin must load without it. No pytest import here.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..stats import median
from .stack import short_commit, stack_changes

INSTALL_HINT = "pip install ruptures (or pytest-cosyvoice[report])"

# Chosen with benchmarks/changepoint_rates.py; see find_changes and docs/changepoints.md.
DEFAULT_PENALTY = 7.0
# Smallest noise assumed (as sigma of log RTF, ~1 %): a series of identical medians (a stub, a
# cached result) would otherwise turn a 0.1 % wobble into "infinitely many sigmas".
NOISE_FLOOR = 0.01

# Sessions per test looked at, the most recent ones: PELT with the L1 cost takes ~0.4 s for 200
# points and ~5 s for 800 on one core, per test, at the end of every session.
MAX_SESSIONS = 200

# The old history format has no "stack": these key fields are its stack.
_OLD_KEY_FIELDS = {"torch_version": "torch", "cuda": "cuda", "driver": "driver"}


@dataclass(frozen=True)
class ChangePoint:
    """A new RTF regime for one test, starting at history[index].

    Indices are positions in the history list given to `history_changes` (the report passes the
    sessions of its key, oldest first); sessions without this test's RTF are skipped, so
    `previous_index` (the last session before the change that has it) may be < index - 1.
    """

    nodeid: str
    index: int                  # first session of the new regime
    time_utc: str | None        # of history[index]
    commit: str | None          # of history[index]
    median_before: float        # median of the session medians in the regime before
    median_after: float         # ... and in the regime from index on
    shift: float                # median_after / median_before - 1: +0.2 = 20 % slower
    what_changed: list[str]     # stack entries, then the commit, history[previous_index] -> [index]
    previous_index: int
    before_first: int           # first session of the regime before (for drawing it)
    after_last: int             # last session of the regime from index on

    @property
    def shift_pct(self) -> float:
        return 100.0 * self.shift


def _require_ruptures() -> Any:
    try:
        import ruptures
    except ImportError as exc:
        raise ImportError(f"change points need ruptures: {INSTALL_HINT}") from exc
    return ruptures


def noise_scale(log_values: Sequence[float]) -> float:
    """Robust sigma of the session-to-session noise of a log series.

    From the first differences (a step moves one difference, not the whole series' spread):
    MAD * 1.4826 estimates sigma of a difference, which is sqrt(2) sigma of a point."""
    import numpy as np

    d = np.diff(np.asarray(log_values, dtype=float))
    if len(d) == 0:
        return NOISE_FLOOR
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2.0), NOISE_FLOOR)


def find_changes(values: Sequence[float], *, min_size: int = 2,
                 penalty: float | None = None) -> list[int]:
    """Indices into `values` where a new regime starts (never 0), ascending.

    `values` are positive (RTF medians); `min_size` is the fewest points in a regime; `penalty`
    is the cost of one more change point in units of the normalised series (log values / noise
    scale), default DEFAULT_PENALTY. Fewer than 2 * min_size points: [].

    The default penalty, measured with `benchmarks/changepoint_rates.py --trials 300 --seed 0`
    (log-normal noise of sigma 0.05, i.e. ~5 % between sessions; found = a change within +-1
    session of the step; docs/changepoints.md has the whole table):

    | sessions | flat: any change | +20 % step in the middle | +20 % in the last 3 sessions |
    | 8        | 3.3 %            | 59.7 %                   | 52.7 %                       |
    | 12       | 2.0 %            | 85.7 %                   | 63.3 %                       |
    | 20       | 1.0 %            | 99.3 %                   | 67.3 %                       |
    | 40       | 0.3 %            | 99.3 %                   | 77.7 %                       |

    Penalties tried on similar trials (150 each, seeds 1, 2): 6 gave 2-7 % false changes (7:
    1-2 %), 8 found 39-66 % of the late steps (6: 56-91 %), 10 31-37 %; 2-2.5 * log(n) gave
    4-9 % false changes on short histories and found fewer late steps the longer the history.
    A fixed penalty works because the series is scaled by its own noise; most false changes on
    short histories come from a noise estimate made of few differences.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    vals = [float(v) for v in values]
    bad = [v for v in vals if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"change points need positive finite values, got {bad[0]!r}")
    n = len(vals)
    if n < 2 * min_size:
        return []
    rpt = _require_ruptures()
    import numpy as np

    y = np.log(np.asarray(vals))
    z = (y - np.median(y)) / noise_scale(y)
    pen = DEFAULT_PENALTY if penalty is None else float(penalty)
    ends = rpt.Pelt(model="l1", min_size=min_size, jump=1).fit(z.reshape(-1, 1)).predict(pen=pen)
    return [int(e) for e in ends[:-1]]   # ruptures ends each segment; the last end is n


# -- history ---------------------------------------------------------------------------------

def _stack(entry: Mapping[str, Any]) -> dict[str, str]:
    """A history entry's stack, for `stack_changes`: its "stack" (new format) or, in older lines,
    the stack fields of its "key"; plus its "runner", and its commit (from the entry's "commit")."""
    stack = entry.get("stack")
    if isinstance(stack, dict):
        out = {str(k): str(v) for k, v in stack.items() if v is not None}
    else:
        key = entry.get("key")
        if not isinstance(key, dict):
            key = {}
        out = {name: str(key[k]) for k, name in _OLD_KEY_FIELDS.items() if key.get(k) is not None}
    if entry.get("runner") is not None:
        out.setdefault("runner", str(entry["runner"]))
    commit = _commit(entry)
    if commit:
        out["commit"] = commit
    return out


def _commit(entry: Mapping[str, Any]) -> str | None:
    commit = entry.get("commit")
    if not commit and isinstance(entry.get("stack"), dict):
        commit = entry["stack"].get("commit")
    return str(commit) if commit else None


def what_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Differences between two history entries, worded by `stack.stack_changes`: every stack entry
    that both record and that differs ("torch 2.9.1 -> 2.10.0"), then the commit ("commit abc1234
    -> def5678").

    Old entries (no "stack") contribute torch, cuda and driver from their "key". Stack first because
    the trend graph labels a change with the first item, and a new torch explains more than a new
    commit (which most sessions have)."""
    return stack_changes(_stack(before), _stack(after))


def _rtf(entry: Mapping[str, Any], nodeid: str) -> float | None:
    tests = entry.get("tests")
    test = tests.get(nodeid) if isinstance(tests, dict) else None
    value = test.get("rtf") if isinstance(test, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def changes_of(history: Sequence[Mapping[str, Any]], nodeid: str, *, min_size: int = 2,
                 penalty: float | None = None) -> list[ChangePoint]:
    """Change points of one test's session medians (`tests[nodeid]["rtf"]`) over the last
    MAX_SESSIONS sessions of history that have it."""
    points = [(i, v) for i, e in enumerate(history) if (v := _rtf(e, nodeid)) is not None]
    points = points[-MAX_SESSIONS:]
    if not points:
        return []
    where = [i for i, _ in points]
    vals = [v for _, v in points]
    starts = find_changes(vals, min_size=min_size, penalty=penalty)
    bounds = [0, *starts, len(vals)]
    medians = [median(vals[a:b]) for a, b in itertools.pairwise(bounds)]
    out = []
    for k, s in enumerate(starts):
        index, prev = where[s], where[s - 1]
        entry = history[index]
        out.append(ChangePoint(
            nodeid=nodeid, index=index, time_utc=entry.get("time_utc"), commit=_commit(entry),
            median_before=medians[k], median_after=medians[k + 1],
            shift=medians[k + 1] / medians[k] - 1.0,
            what_changed=what_changed(history[prev], entry), previous_index=prev,
            before_first=where[bounds[k]], after_last=where[bounds[k + 2] - 1]))
    return out


def history_changes(history: Sequence[Mapping[str, Any]], nodeids: Sequence[str], *,
                    min_size: int = 2, penalty: float | None = None
                    ) -> dict[str, list[ChangePoint]]:
    """{nodeid: change points, oldest first} for each of nodeids (an empty list when none)."""
    return {n: changes_of(history, n, min_size=min_size, penalty=penalty) for n in nodeids}


def describe(cp: ChangePoint) -> str:
    """One line for the terminal: test, shift, where, medians, what changed."""
    when = (cp.time_utc or "time unknown")[:16].replace("T", " ")
    changed = "; ".join(cp.what_changed) or "nothing recorded changed"
    return (f"{cp.nodeid}: RTF {cp.shift_pct:+.0f} % from session {cp.index + 1} "
            f"({when}, commit {short_commit(cp.commit)}): median {cp.median_before:.3f} -> "
            f"{cp.median_after:.3f}; {changed}")
