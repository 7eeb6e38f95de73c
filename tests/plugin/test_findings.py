"""The end of a session without a pytest session: `finish.gather` (decide, then write the report) on a
real baseline folder, `summary_lines` wording it, and finish.py's mapping of the findings to the exit status."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_cosyvoice.finish import exit_status, gather
from pytest_cosyvoice.judging.measurements import TestFigures
from pytest_cosyvoice.judging.quality_results import CallOutput, TestQuality
from pytest_cosyvoice.report.terminal import summary_lines
from pytest_cosyvoice.tracking.drift import DriftVerdict
from pytest_cosyvoice.tracking.goldens import GoldenStore
from pytest_cosyvoice.tracking.health import Health
from pytest_cosyvoice.tracking.probes import CalibrationSample
from pytest_cosyvoice.tracking.runkey import RunKey
from pytest_cosyvoice.tracking.verdicts import EndOptions

KEY = RunKey("cpu-runner", "cpu", "fp32", "fixed", "tiny", "0123456789")
BASE = [0.200, 0.202, 0.198, 0.205, 0.195, 0.201, 0.199, 0.203, 0.197, 0.200]


def figures(factor: float = 1.0) -> list[TestFigures]:
    return [TestFigures("t.py::a", rtf=[v * factor for v in BASE]), TestFigures("t.py::b", rtf=list(BASE))]


def test_first_session_saves_and_a_slower_one_fails_on_drift(tmp_path: Path) -> None:
    save = EndOptions(tmp_path / "baselines", None, save_baseline=True)
    first = gather(figures(), [], KEY, "cpu", save, repo_dir=tmp_path)
    assert first.baseline is None and first.drift is None and first.saved is not None
    assert first.saved.path == first.baseline_file and first.baseline_file.is_file() and first.saved.tests == 2
    assert not first.usage_error and not first.fails_on_drift
    lines = summary_lines(first)
    assert lines[0].startswith("no baseline for runner cpu-runner")
    assert lines[1].startswith("machine: calibration: not measured")
    assert lines[-1] == f"baseline saved (2 test(s)) for runner cpu-runner: {first.baseline_file}"

    gate = EndOptions(tmp_path / "baselines", None, fail_on_drift=True)
    second = gather(figures(1.3), [], KEY, "cpu", gate, repo_dir=tmp_path)
    assert [r.verdict for r in second.drift or []] == [DriftVerdict.REGRESSION, DriftVerdict.OK]
    assert second.fails_on_drift and not second.usage_error and second.saved is None
    lines = summary_lines(second)
    assert lines[0].startswith("drift against the baseline of ") and lines[0].endswith("; stack unchanged")
    assert lines[-2] == "RTF regression(s) beyond the tolerance (--cosy-fail-on-drift: the session fails):"
    assert lines[-1].startswith("  t.py::a: RTF 0.260 vs baseline 0.200 (+30.0%")
    assert exit_status(second, pytest.ExitCode.OK) == pytest.ExitCode.TESTS_FAILED
    assert exit_status(second, pytest.ExitCode.INTERRUPTED) == pytest.ExitCode.INTERRUPTED


def test_a_broken_baseline_is_a_usage_error_and_left_as_it_is(tmp_path: Path) -> None:
    options = EndOptions(tmp_path / "baselines", None, save_baseline=True)
    path = options.baseline_dir / KEY.runner / f"{KEY.config_slug()}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    found = gather(figures(), [], KEY, "cpu", options, repo_dir=tmp_path)
    assert found.baseline_error and found.usage_error and found.saved is not None
    assert found.saved.skipped == "baseline-broken" and path.read_text(encoding="utf-8") == "{not json"
    lines = summary_lines(found)
    assert lines[0].startswith(f"ERROR: the stored baseline cannot be used: {path}")
    assert lines[-1] == f"baseline not saved: {path} is left as it is (see the error above)"
    assert exit_status(found, pytest.ExitCode.OK) == pytest.ExitCode.USAGE_ERROR


def test_nothing_passed_with_rtf_is_not_saved(tmp_path: Path) -> None:
    failed = [TestFigures("t.py::a", outcome="failed", rtf=list(BASE)), TestFigures("t.py::b")]
    found = gather(failed, [], KEY, "cpu", EndOptions(tmp_path, None, save_baseline=True), repo_dir=tmp_path)
    assert found.saved is not None and found.saved.skipped == "no-rtf" and not found.baseline_file.exists()
    assert summary_lines(found)[-1] == "baseline not saved: no passed test recorded RTF figures"
    assert exit_status(found, pytest.ExitCode.TESTS_FAILED) == pytest.ExitCode.TESTS_FAILED


def test_a_moved_model_reference_is_named_and_no_quiet_rerun_is_suggested(tmp_path: Path) -> None:
    def health(reference_s: float) -> Health:
        return Health([CalibrationSample(0.04, 0.01)] * 3, others_cpu=0.01, steal=0.0,
                      reference=[reference_s] * 3, reference_parts={"llm": [reference_s / 2] * 3,
                                                                    "flow": [reference_s / 2] * 3})
    gather(figures(), [], KEY, "cpu", EndOptions(tmp_path, None, save_baseline=True), health=health(0.2),
           repo_dir=tmp_path)
    found = gather(figures(1.3), [], KEY, "cpu", EndOptions(tmp_path, None, fail_on_drift=True),
                   health=health(0.248), repo_dir=tmp_path)
    assert found.machine is not None and found.machine.reference_ratio == pytest.approx(1.24)
    assert [r.verdict for r in found.drift or []] == [DriftVerdict.INCONCLUSIVE, DriftVerdict.OK]
    assert not found.fails_on_drift
    lines = summary_lines(found)
    why = ("the model's kernels ran 24 % slower than at baseline (model reference x1.24): the machine or the "
           "component code; an A/B run decides")
    assert lines[1] == ("machine: calibration: 50.0 ms (median of 3); model reference: 248.0 ms (median of 3; "
                        "llm 124, flow 124 ms); other processes' CPU share: 1%; hypervisor steal: 0%; against the "
                        "baseline's machine: NOT comparable: machine 0 % slower than at baseline (calibration "
                        f"x1.00); {why}")
    assert lines[-1] == f"inconclusive (1): machine 0 % slower than at baseline (calibration x1.00); {why}"


def test_goldens_are_saved_with_the_verdicts_and_a_broken_store_is_a_usage_error(tmp_path: Path) -> None:
    # The quality goldens are saved where the baseline is, by the same decision step; a golden index that
    # cannot be read is named, left as it is, and ends the session with exit 4.
    rng = np.random.default_rng(3)
    call = CallOutput("synthesize#0", "synthesize", 1, 16000, "Hi.", [1, 2, 3],
                      rng.standard_normal(1600).astype(np.float32))
    quality = [TestQuality("t.py::q", [call])]
    save = EndOptions(tmp_path / "baselines", None, save_baseline=True)
    first = gather(figures(), [], KEY, "cpu", save, repo_dir=tmp_path, quality=quality)
    assert first.goldens_saved is not None and first.goldens_saved.path is not None and not first.usage_error
    assert f"quality goldens saved: {first.goldens_saved.path} (1 tests)" in summary_lines(first)
    loaded = GoldenStore(tmp_path / "baselines").load(KEY)
    assert loaded is not None and loaded.tests["t.py::q"].calls[0].tokens == [1, 2, 3]

    index = first.goldens_saved.path / "index.json"
    index.write_text("{not json", encoding="utf-8")
    second = gather(figures(), [], KEY, "cpu", save, repo_dir=tmp_path, quality=quality)
    assert second.goldens_saved is not None and second.usage_error
    assert str(index) in second.goldens_saved.error and "Refusing to overwrite" in second.goldens_saved.error
    assert index.read_text(encoding="utf-8") == "{not json"
    assert any(line.startswith(f"ERROR quality goldens not saved: {index}: not valid JSON")
               for line in summary_lines(second))
    assert exit_status(second, pytest.ExitCode.OK) == pytest.ExitCode.USAGE_ERROR
    assert second.saved is not None and second.saved.path is not None   # the baseline's save is its own
