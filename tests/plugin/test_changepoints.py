"""Change points over history: found where a known shift is, not where there is none, and what
changed there named from the history entries (new "stack" format and old "key" format)."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ruptures")

from pytest_cosyvoice.tracking.changepoints import ChangePoint, describe, find_changes, history_changes, what_changed

T = "suites/perf/test_rtf.py::test_rtf[v2-fp32-short]"
U = "suites/perf/test_rtf.py::test_rtf[v2-fp32-long]"
OLD, NEW = "a" * 40, "b" * 40
STACK = {"torch": "2.9.1+cu128", "cuda": "12.8", "driver": "570.124", "python": "3.11.2",
         "numpy": "2.4.6", "pytest-cosyvoice": "0.1.0.dev0",
         "upstream": "cosyvoice-minicpmo 0.1.0"}


def noisy(rng: np.random.Generator, n: int, median: float = 0.25,
          sigma: float = 0.05) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, sigma, n))


def entry(i: int, rtf: dict[str, float | None], stack: dict[str, str] | None = None,
          commit: str = OLD, key: dict[str, str] | None = None) -> dict[str, Any]:
    when = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"
    e: dict[str, Any] = {"schema": 1, "time_utc": when, "commit": commit,
                         "tests": {n: {"rtf": v, "runs": 5} for n, v in rtf.items()}}
    if stack is not None:
        e["stack"], e["runner"] = stack, "ci-h100"
    if key is not None:
        e["key"] = key
    return e


# -- find_changes ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_step_of_20_percent_is_found_where_it_is(seed: int) -> None:
    x = noisy(np.random.default_rng(seed), 20)
    x[10:] *= 1.2
    found = find_changes(x.tolist())
    assert len(found) == 1 and abs(found[0] - 10) <= 1, found


@pytest.mark.parametrize("seed", range(10))
def test_flat_noisy_series_has_no_change(seed: int) -> None:
    assert find_changes(noisy(np.random.default_rng(100 + seed), 30).tolist()) == []


def test_same_relative_step_found_at_any_rtf_level() -> None:
    x = noisy(np.random.default_rng(7), 16)
    x[9:] *= 1.25
    assert find_changes(x.tolist()) == find_changes((x * 40).tolist()) == [9]


def test_one_slow_session_is_not_a_regime() -> None:
    x = noisy(np.random.default_rng(3), 20)
    x[8] *= 1.6      # a busy neighbour for one session
    assert find_changes(x.tolist()) == []


def test_too_few_points_give_nothing() -> None:
    step = [0.2, 0.2, 0.2, 0.4, 0.4]
    assert find_changes([]) == [] and find_changes([0.2]) == []
    assert find_changes(step, min_size=3) == []          # 5 < 2 * 3
    assert find_changes(step + [0.4], min_size=3) == [3]  # 6 is enough, and the step is plain


def test_bad_values_and_arguments() -> None:
    with pytest.raises(ValueError, match="positive finite"):
        find_changes([0.2, 0.0, 0.2, 0.2])
    with pytest.raises(ValueError, match="positive finite"):
        find_changes([0.2, float("nan"), 0.2, 0.2])
    with pytest.raises(ValueError, match="min_size"):
        find_changes([0.2] * 8, min_size=0)


def test_missing_ruptures_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ruptures", None)   # makes `import ruptures` fail
    with pytest.raises(ImportError, match=r"pip install ruptures"):
        find_changes([0.2] * 8)


def test_penalty_argument_is_used() -> None:
    x = noisy(np.random.default_rng(11), 20, sigma=0.05)
    x[10:] *= 1.2
    assert find_changes(x.tolist(), penalty=1e6) == []
    assert len(find_changes(x.tolist(), penalty=0.5)) > 1   # nearly free: noise becomes regimes


# -- history ---------------------------------------------------------------------------------

def shifted_history(seed: int = 0) -> list[dict[str, Any]]:
    """24 sessions of the new format; from session 12 on: torch upgraded, new commit, T +25 %
    slower, U unchanged."""
    rng = np.random.default_rng(seed)
    t, u = noisy(rng, 24, 0.20, 0.03), noisy(rng, 24, 0.10, 0.03)
    t[12:] *= 1.25
    out = []
    for i in range(24):
        stack = dict(STACK, torch="2.10.0+cu128") if i >= 12 else dict(STACK)
        out.append(entry(i, {T: float(t[i]), U: float(u[i])}, stack, NEW if i >= 12 else OLD))
    return out


def test_history_change_at_the_shift_with_what_changed() -> None:
    history = shifted_history()
    changes = history_changes(history, [T, U])
    assert set(changes) == {T, U} and changes[U] == []
    (cp,) = changes[T]
    assert isinstance(cp, ChangePoint) and cp.nodeid == T
    assert cp.index == 12 and cp.previous_index == 11
    assert cp.time_utc == history[12]["time_utc"] and cp.commit == NEW
    rtf = [e["tests"][T]["rtf"] for e in history]
    assert cp.median_before == pytest.approx(np.median(rtf[:12]))
    assert cp.median_after == pytest.approx(np.median(rtf[12:]))
    assert 0.18 < cp.shift < 0.32 and cp.shift_pct == pytest.approx(100 * cp.shift)
    assert (cp.before_first, cp.after_last) == (0, 23)
    assert cp.what_changed == ["torch 2.9.1+cu128 -> 2.10.0+cu128", "commit aaaaaaa -> bbbbbbb"]


def test_speed_up_has_a_negative_shift() -> None:
    history = shifted_history()
    for e in history:
        e["tests"][T]["rtf"] = 0.05 / e["tests"][T]["rtf"]   # the same step, downwards
    (cp,) = history_changes(history, [T])[T]
    assert cp.index == 12 and -0.26 < cp.shift < -0.16


def test_entries_without_the_test_are_skipped_but_indices_stay() -> None:
    history = shifted_history()
    gaps = [entry(0, {U: 0.1}, STACK), entry(0, {T: None}, STACK), {"tests": {T: "fast"}}]
    # Insert sessions lacking T's RTF just before the shift and at the start.
    history = history[:12] + gaps + history[12:]
    history.insert(0, entry(0, {}, STACK))
    (cp,) = history_changes(history, [T])[T]
    assert cp.index == 16 and cp.previous_index == 12 and cp.before_first == 1
    assert cp.after_last == len(history) - 1
    # Compared: the last session that had T's RTF before the change, not the gap entries.
    assert cp.what_changed[0] == "torch 2.9.1+cu128 -> 2.10.0+cu128"
    assert history_changes(history, ["not/in/history.py::t"]) == {"not/in/history.py::t": []}


def test_only_the_most_recent_sessions_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cosyvoice.tracking import changepoints

    rng = np.random.default_rng(9)
    t = noisy(rng, 40, 0.2, 0.03)
    t[10:] *= 1.3
    t[30:] *= 1.3
    history = [entry(i, {T: float(v)}, STACK) for i, v in enumerate(t)]
    assert [cp.index for cp in history_changes(history, [T])[T]] == [10, 30]
    monkeypatch.setattr(changepoints, "MAX_SESSIONS", 20)
    (cp,) = history_changes(history, [T])[T]
    assert (cp.index, cp.before_first, cp.after_last) == (30, 20, 39)   # indices into history


def test_old_format_entries_use_their_key() -> None:
    rng = np.random.default_rng(5)
    t = noisy(rng, 16, 0.3, 0.03)
    t[8:] *= 1.3
    key = {"device_name": "cpu", "cuda": "none", "driver": "none", "torch_version": "2.9.1",
           "dtype": "fp32", "engine": "fixed", "model_name": "tiny", "model_hash": "x"}
    history = [entry(i, {T: float(t[i])}, None, OLD if i < 8 else NEW,
                     dict(key, torch_version="2.10.0") if i >= 8 else key) for i in range(16)]
    (cp,) = history_changes(history, [T])[T]
    assert cp.index == 8
    assert cp.what_changed == ["torch 2.9.1 -> 2.10.0", "commit aaaaaaa -> bbbbbbb"]


def test_what_changed_between_formats_and_fields() -> None:
    key = {"torch_version": "2.9.1", "cuda": "none", "driver": "none"}
    old = entry(0, {}, None, OLD, key)
    new = entry(1, {}, dict(STACK, torch="2.10.0", cuda="none", driver="none"), OLD)
    # Only fields both sides record: numpy, python ... are new in the stack, not changes.
    assert what_changed(old, new) == ["torch 2.9.1 -> 2.10.0"]
    a = entry(0, {}, dict(STACK), OLD)
    b = entry(1, {}, dict(STACK, numpy="2.5.0", python="3.12.1", driver="580.1"), None)
    b["runner"] = "ci-h200"
    assert what_changed(a, b) == ["driver 570.124 -> 580.1", "python 3.11.2 -> 3.12.1",
                                  "numpy 2.4.6 -> 2.5.0", "runner ci-h100 -> ci-h200",
                                  "commit aaaaaaa -> unknown"]
    assert what_changed(a, a) == []


def test_describe_is_one_readable_line() -> None:
    (cp,) = history_changes(shifted_history(), [T])[T]
    line = describe(cp)
    assert "\n" not in line and line.startswith(T + ": RTF +")
    assert f"{cp.shift_pct:+.0f} %" in line and "session 13" in line
    assert "torch 2.9.1+cu128 -> 2.10.0+cu128; commit aaaaaaa -> bbbbbbb" in line
    assert f"{cp.median_before:.3f} -> {cp.median_after:.3f}" in line
    quiet = ChangePoint(T, 3, None, None, 0.2, 0.25, 0.25, [], 2, 0, 5)
    assert "nothing recorded changed" in describe(quiet) and "time unknown" in describe(quiet)
