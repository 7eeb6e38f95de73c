"""The drift rule: verdicts on crafted samples (calibrated, inconclusive on a busy or slower machine),
and its error rates over seeded trials."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from pytest_cosyvoice.judging.measurements import TestFigures as Figures
from pytest_cosyvoice.tracking.baseline import BaselineStore
from pytest_cosyvoice.tracking.drift import (
    DriftResult,
    DriftVerdict,
    Machine,
    compare,
    judge,
    min_attainable_p,
)
from pytest_cosyvoice.tracking.runkey import RunKey

BASE = [0.200, 0.202, 0.198, 0.205, 0.195, 0.201, 0.199, 0.203, 0.197, 0.200]


def scaled(factor: float) -> list[float]:
    return [v * factor for v in BASE]


def test_verdicts_are_typed_and_written_as_their_names() -> None:
    # The names are written to rtf.csv, history and the terminal, and users' scripts compare them.
    assert [v.value for v in DriftVerdict] == ["ok", "regression", "improvement", "inconclusive", "new",
                                               "insufficient-samples"]
    r = judge("t", scaled(1.2), BASE)
    assert r.verdict is DriftVerdict.REGRESSION and r.verdict == "regression"
    assert str(r.verdict) == f"{r.verdict}" == "regression" and f"{r.verdict:>11}|" == " regression|"
    assert {"regression": 1}[r.verdict] == 1 and json.dumps([r.verdict]) == '["regression"]'
    assert judge("t", BASE, []).verdict is DriftVerdict.NEW


def test_clear_slowdown_is_a_regression() -> None:
    r = judge("t", scaled(1.2), BASE)
    assert r.verdict == "regression"
    assert r.drift == pytest.approx(0.2)
    assert r.current_median == pytest.approx(0.24) and r.baseline_median == pytest.approx(0.2)
    assert r.p_value is not None and r.p_value < 0.001
    assert (r.n_current, r.n_baseline) == (10, 10)


def test_clear_speedup_is_an_improvement() -> None:
    r = judge("t", scaled(0.8), BASE)
    assert r.verdict == "improvement" and r.drift == pytest.approx(-0.2)
    assert r.p_value is not None and r.p_value < 0.001


def test_within_tolerance_is_ok_even_when_significant() -> None:
    r = judge("t", scaled(1.04), BASE)
    assert r.verdict == "ok" and r.p_value is not None and r.p_value < 0.01


def test_large_but_noisy_drift_is_ok_with_a_note() -> None:
    # Median up 15 %, but the two sides overlap so much that it could be chance.
    base = [0.10, 0.30, 0.12, 0.28, 0.20, 0.14, 0.26, 0.18]
    cur = [0.11, 0.31, 0.13, 0.29, 0.23, 0.24, 0.27, 0.22]
    r = judge("t", cur, base)
    assert r.drift is not None and r.drift > 0.10
    assert r.verdict == "ok" and r.p_value is not None and r.p_value >= 0.01
    assert "not significant" in r.note


def test_new_and_missing_samples() -> None:
    assert judge("t", BASE, []).verdict == "new"
    r = judge("t", [], BASE)
    assert r.verdict == "insufficient-samples" and r.drift is None and r.baseline_median == 0.2


def test_calibration_is_shown_beside_the_drift_not_applied_to_it() -> None:
    # Measured on the 2-core VM: a quiet rerun's calibration came out 6 % faster while its RTF did
    # not move; dividing by it would invent a drift. The judged drift is the raw one.
    r = judge("t", BASE, BASE, machine=Machine(ratio=0.94))
    assert r.verdict == "ok" and r.drift == pytest.approx(0.0)
    assert r.calibrated_drift == pytest.approx(1 / 0.94 - 1)
    # A comparable machine and the model 20 % slower: a regression.
    r = judge("t", scaled(1.2), BASE, machine=Machine(ratio=1.03))
    assert r.verdict == "regression" and r.drift == pytest.approx(0.2)
    assert judge("t", BASE, BASE).calibrated_drift is None


def test_the_calibrated_drift_divides_by_the_model_reference_where_both_sides_have_one() -> None:
    # The model reference tracked the tests' RTF better than the calibration across clean reruns
    # (docs/reports.md): where both sides measured it, it is the scale of the calibrated column.
    r = judge("t", scaled(1.2), BASE, machine=Machine(ratio=1.0, reference_ratio=1.2, tolerance=0.5))
    assert r.drift == pytest.approx(0.2) and r.calibrated_drift == pytest.approx(0.0)
    assert Machine(ratio=0.9, reference_ratio=None).scale == 0.9
    assert Machine(ratio=None, reference_ratio=1.1).scale == 1.1
    assert Machine().scale is None


@pytest.mark.parametrize("machine, why", [
    (Machine(ratio=1.3), "machine 30 % slower than at baseline .*beyond the machine tolerance of 10%"),
    (Machine(ratio=0.8), "machine 20 % faster"),
    (Machine(ratio=1.0, problems=("other processes used 48% of the CPU",)), "other processes used 48%"),
])
def test_a_machine_not_comparable_makes_changes_inconclusive(machine: Machine, why: str) -> None:
    for factor in (1.3, 0.7):
        r = judge("t", scaled(factor), BASE, machine=machine)
        assert r.verdict == "inconclusive", (factor, r)
        assert r.note and __import__("re").search(why, r.note), r.note
    # No change at all on a slower machine: nothing to doubt.
    assert judge("t", BASE, BASE, machine=Machine(ratio=1.0, problems=("busy",))).verdict == "ok"


@pytest.mark.parametrize("reference, why", [
    (1.24, "the model's kernels ran 24 % slower than at baseline (model reference x1.24): the machine or the "
           "component code; an A/B run decides"),
    (0.76, "the model's kernels ran 24 % faster than at baseline (model reference x0.76): the machine or the "
           "component code; an A/B run decides"),
])
def test_a_moved_model_reference_makes_changes_inconclusive(reference: float, why: str) -> None:
    # The calibration says the machine is the baseline's; the model's own kernels say otherwise.
    machine = Machine(ratio=1.02, reference_ratio=reference)
    assert machine.reference_moved and not machine.comparable
    for factor in (1.3, 0.7):
        r = judge("t", scaled(factor), BASE, machine=machine)
        assert r.verdict == "inconclusive", (factor, r)
        assert r.note == "machine 2 % slower than at baseline (calibration x1.02); " + why
    assert judge("t", BASE, BASE, machine=machine).verdict == "ok"


def test_a_model_reference_within_the_tolerance_leaves_the_verdict_to_the_samples() -> None:
    machine = Machine(ratio=1.02, reference_ratio=1.08)
    assert machine.comparable and not machine.reference_moved
    assert machine.describe() == "machine 2 % slower than at baseline (calibration x1.02); model reference x1.08"
    assert judge("t", scaled(1.3), BASE, machine=machine).verdict == "regression"
    # A baseline saved before the reference existed: nothing to compare, the line as before.
    assert Machine(ratio=1.02).describe() == "machine 2 % slower than at baseline (calibration x1.02)"
    assert not Machine(ratio=1.0, reference_ratio=1.15).comparable
    assert Machine(ratio=1.0, reference_ratio=1.15, tolerance=0.2).comparable


def test_machine_tolerance_is_a_setting() -> None:
    assert not Machine(ratio=1.15).comparable
    assert Machine(ratio=1.15, tolerance=0.2).comparable
    r = judge("t", scaled(1.3), BASE, machine=Machine(ratio=1.15, tolerance=0.2))
    assert r.verdict == "regression"


@pytest.mark.parametrize("n_cur, n_base, verdict", [
    (3, 10, "insufficient-samples"),    # below min_samples (4)
    (4, 4, "insufficient-samples"),     # full separation gives p = 1/70 = 0.014 > alpha 0.01
    (4, 5, "regression"),               # 1/126 = 0.0079 < 0.01: attainable
    (5, 5, "regression"),
])
def test_small_samples(n_cur: int, n_base: int, verdict: str) -> None:
    r = judge("t", scaled(1.3)[:n_cur], BASE[:n_base])
    assert r.verdict == verdict
    assert r.drift is not None and r.drift > 0.25       # reported either way


def test_small_samples_within_tolerance_are_ok() -> None:
    assert judge("t", BASE[:1], BASE[:1]).verdict == "ok"


def test_min_attainable_p() -> None:
    assert min_attainable_p(3, 3) == pytest.approx(0.05)
    assert min_attainable_p(4, 5) == pytest.approx(1 / 126)
    assert min_attainable_p(0, 5) == 1.0


def test_compare_accepts_figures_and_baseline(tmp_path: Path) -> None:
    key = RunKey("cpu-runner", "cpu", "fp32", "fixed", "m", "h")
    store = BaselineStore(tmp_path)
    store.save(key, [Figures("a", rtf=BASE), Figures("b", rtf=BASE), Figures("gone", rtf=BASE)])
    current = [Figures("a", rtf=scaled(1.3)), Figures("b", rtf=scaled(1.0)),
               Figures("c", rtf=BASE)]
    results = compare(current, store.load(key))
    assert [(r.nodeid, r.verdict) for r in results] == [("a", "regression"), ("b", "ok"),
                                                        ("c", "new")]
    # dict input, and the first-chunk metric
    by_dict = compare({"a": scaled(1.3)}, {"a": BASE})
    assert by_dict[0].verdict == "regression"
    fc = compare([Figures("a", rtf=BASE, first_chunk_ms=[400.0] * 5)],
                 {"a": [300.0, 301.0, 299.0, 300.5, 299.5]}, metric="first_chunk_ms")
    assert fc[0].verdict == "regression"
    assert all(r.verdict == "new" for r in compare(current, None))


def test_compare_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        compare({}, None, tolerance=-0.1)
    with pytest.raises(ValueError):
        compare({}, None, alpha=1.5)


def _drift_rates() -> ModuleType:
    # One implementation of the trials: the script that produced the table in docs/reports.md.
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "drift_rates.py"
    spec = importlib.util.spec_from_file_location("drift_rates", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_rates_over_seeded_trials() -> None:
    """500 trials each, 10 samples a side, ~6 % spread plus 10 % hiccups (docs/reports.md)."""
    rates = _drift_rates().rates
    noise = rates(effect=0.0, n=10, trials=500, seed=0)
    slow = rates(effect=0.15, n=10, trials=500, seed=1)
    assert noise["regression"] <= 0.05, noise           # false alarms
    assert noise["improvement"] <= 0.05, noise
    assert slow["regression"] >= 0.80, slow             # detection of a real 15 % slowdown
    assert slow["improvement"] == 0.0, slow


def test_result_type() -> None:
    r = judge("t", BASE, BASE)
    assert isinstance(r, DriftResult) and r.drift_pct == 0.0 and r.verdict == "ok"
