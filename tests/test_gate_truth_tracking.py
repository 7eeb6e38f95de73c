"""benchmarks/gate_truth.py --tracking: from kept runs (their rtf.csv files and health figures), how
far the calibration and the model reference each are from the tests' own RTF ratio to the baseline."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gate_truth() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))    # gate_truth imports inject.py beside it, as when run
    try:
        spec = importlib.util.spec_from_file_location("gate_truth", ROOT / "benchmarks" / "gate_truth.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod      # its dataclasses look their module up while being built
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def write_rtf(path: Path, samples: dict[str, list[float]]) -> None:
    rows = [f"{nodeid},{v}" for nodeid, values in samples.items() for v in values]
    path.write_text("nodeid,rtf\n" + "\n".join(rows) + "\n")


def test_each_candidate_is_scored_by_its_distance_from_the_tests_ratio(gate_truth: ModuleType,
                                                                      tmp_path: Path) -> None:
    base = {"a": [0.20, 0.20, 0.20], "b": [0.40, 0.40, 0.40], "c": [0.10, 0.10, 0.10]}
    write_rtf(tmp_path / "baseline-save baseline-0.csv", base)
    # Two clean reruns: the tests moved x1.25 and x1.00; the calibration x1.08 and x1.00; the model
    # reference x1.22 and x1.02. A slow run of another part is left out of the table.
    write_rtf(tmp_path / "clean-clean rerun-0.csv", {n: [v * 1.25 for v in s] for n, s in base.items()})
    write_rtf(tmp_path / "clean-clean rerun-1.csv", base)
    write_rtf(tmp_path / "slow-slowed-0.csv", {n: [v * 2 for v in s] for n, s in base.items()})
    Run = gate_truth.Run
    runs = [Run("baseline", "save baseline", 1.0, 0, calibration_s=0.050, reference_s=0.200),
            Run("clean", "clean rerun", 1.0, 0, calibration_s=0.054, reference_s=0.244),
            Run("clean", "clean rerun", 1.0, 0, calibration_s=0.050, reference_s=0.204),
            Run("slow", "slowed", 1.0, 0, calibration_s=0.050, reference_s=0.200)]
    table = gate_truth.tracking(tmp_path, runs, ["clean"]).splitlines()
    assert table[2:4] == ["| 1 | clean | clean rerun | x1.25 | x1.08 | x1.22 |",
                          "| 2 | clean | clean rerun | x1.00 | x1.00 | x1.02 |"]
    assert table[4] == ""
    assert table[7:] == ["| none (x1.00) | 2 | 0.125 | 0.250 |",
                         "| calibration | 2 | 0.085 | 0.170 |",
                         "| model reference | 2 | 0.025 | 0.030 |"]
    # A run saved before the reference (no reference_s) is scored by the candidates it has.
    runs[2].reference_s = None
    assert gate_truth.tracking(tmp_path, runs, ["clean"]).splitlines()[-1] == "| model reference | 1 | 0.030 | 0.030 |"

    # The flag: from --json and --workdir, nothing run.
    (tmp_path / "runs.json").write_text(json.dumps([asdict(r) for r in runs]))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gate_truth.py"), "--tracking", "clean",
                          "--json", str(tmp_path / "runs.json"), "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-3:] == ["| none (x1.00) | 2 | 0.125 | 0.250 |",
                                            "| calibration | 2 | 0.085 | 0.170 |",
                                            "| model reference | 1 | 0.030 | 0.030 |"]
