"""The gate suites' thresholds come from COSY_GATE_* variables, checked and named when wrong."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suites.limits import GateLimits

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GateLimits.__dataclass_fields__:
        monkeypatch.delenv(GateLimits.variable(name), raising=False)
    assert GateLimits.from_env() == GateLimits()


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSY_GATE_MAX_RTF", "0.3")
    monkeypatch.setenv("COSY_GATE_PREBUFFER_MS", "0")
    monkeypatch.setenv("COSY_GATE_RTF_REPEAT", "10")
    limits = GateLimits.from_env()
    assert (limits.max_rtf, limits.prebuffer_ms, limits.rtf_repeat) == (0.3, 0.0, 10)
    assert isinstance(limits.rtf_repeat, int)


@pytest.mark.parametrize("var,raw,expected", [
    ("COSY_GATE_MAX_RTF", "fast", "expected a number"),
    ("COSY_GATE_MAX_GAP_MS", "-5", "expected a number >= 0"),
    ("COSY_GATE_RTF_REPEAT", "2.5", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "0", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "inf", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "nan", "expected a whole number >= 1"),
])
def test_bad_values_are_usage_errors_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, raw: str,
                                                         expected: str) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(pytest.UsageError, match=f"^{var}='{raw}': {expected}$"):
        GateLimits.from_env()


def test_a_bad_value_stops_the_suites_before_collection() -> None:
    env = {**os.environ, "COSY_GATE_RTF_REPEAT": "many"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "ERROR: COSY_GATE_RTF_REPEAT='many': expected a number" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and "collected" not in proc.stdout
