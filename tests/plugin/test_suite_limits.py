"""The gate suites' thresholds are options like the plugin's: a --cosy-gate-* flag, a COSY_GATE_*
variable or a cosy_gate_* ini key, checked and named when wrong, and resolved before the suite
modules (which use them in marker arguments at import) are collected."""
from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suites import limits
from suites.limits import GATE_OPTIONS, GateLimits

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

# The suites' own hooks, in an inner session's conftest; the test module reads LIMITS at import
# time, as the suite modules do in their marker arguments.
CONFTEST = "from suites.conftest import pytest_addoption, pytest_configure, pytest_unconfigure  # noqa: F401\n"
TEST_MODULE = """
import dataclasses
import pytest
from suites import limits
from suites.limits import LIMITS

AT_IMPORT = LIMITS

@pytest.mark.parametrize("max_rtf", [LIMITS.max_rtf])
def test_values(pytestconfig, max_rtf):
    assert limits.of(pytestconfig) is AT_IMPORT and max_rtf == AT_IMPORT.max_rtf
    print("LIMITS", sorted(dataclasses.asdict(AT_IMPORT).items()))
"""


@pytest.fixture
def gate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for f in dataclasses.fields(GateLimits):
        monkeypatch.delenv(GateLimits.variable(f.name), raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=TEST_MODULE)
    return pytester


def resolved(result: pytest.RunResult) -> dict[str, float]:
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    (line,) = [ln for ln in result.stdout.lines if "LIMITS [" in ln]
    return dict(ast.literal_eval(line.split("LIMITS ", 1)[1]))


def test_defaults_without_any_source(gate: pytest.Pytester) -> None:
    assert resolved(gate.runpytest("-s")) == dataclasses.asdict(GateLimits())
    with pytest.raises(RuntimeError, match="resolved in the suites' pytest_configure"):
        _ = limits.LIMITS   # the inner session's values end with it


def test_flag_over_environment_over_ini(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    gate.makeini("[pytest]\ncosy_gate_max_rtf = 0.9\ncosy_gate_prebuffer_ms = 100\ncosy_gate_rtf_repeat = 7\n")
    monkeypatch.setenv("COSY_GATE_MAX_RTF", "0.3")
    monkeypatch.setenv("COSY_GATE_PREBUFFER_MS", "0")
    got = resolved(gate.runpytest("-s", "--cosy-gate-max-rtf", "0.25", "--cosy-gate-max-gap-ms=40"))
    assert got == dict(dataclasses.asdict(GateLimits()), max_rtf=0.25, max_gap_ms=40.0, prebuffer_ms=0.0,
                       rtf_repeat=7)
    assert isinstance(got["rtf_repeat"], int)


@pytest.mark.parametrize("var,raw,expected", [
    ("COSY_GATE_MAX_RTF", "fast", "expected a number"),
    ("COSY_GATE_MAX_GAP_MS", "-5", "expected a number >= 0"),
    ("COSY_GATE_RTF_REPEAT", "2.5", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "0", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "inf", "expected a whole number >= 1"),
    ("COSY_GATE_RTF_REPEAT", "nan", "expected a whole number >= 1"),
])
def test_bad_values_are_usage_errors_naming_the_variable(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                         var: str, raw: str, expected: str) -> None:
    monkeypatch.setenv(var, raw)
    result = gate.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: {var}='{raw}': {expected}" in result.stderr.lines


def test_bad_flag_and_ini_values_are_named_by_their_source(gate: pytest.Pytester) -> None:
    result = gate.runpytest("--cosy-gate-rtf-repeat=many")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: --cosy-gate-rtf-repeat='many': expected a number" in result.stderr.lines
    gate.makeini("[pytest]\ncosy_gate_max_first_chunk_ms = -1\n")
    result = gate.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: ini cosy_gate_max_first_chunk_ms='-1': expected a number >= 0" in result.stderr.lines


def test_help_lists_every_gate_limit_with_its_variable_and_default(gate: pytest.Pytester) -> None:
    text = " ".join(gate.runpytest("--help").stdout.str().split())
    assert "CosyVoice release-gate suites (suites/limits.py):" in text
    for f in dataclasses.fields(GateLimits):
        opt = next(o for o in GATE_OPTIONS if o.name == f.name)
        start = text.index(opt.flag + "=")
        assert f"(default: {f.default:g}). [env {GateLimits.variable(f.name)}]" in text[start:start + 300], f.name
        assert f"{opt.ini} (string):" in text


def test_a_bad_value_stops_the_suites_before_collection() -> None:
    env = {**os.environ, "COSY_GATE_RTF_REPEAT": "many"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "ERROR: COSY_GATE_RTF_REPEAT='many': expected a number" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and "collected" not in proc.stdout


def test_the_suites_take_a_flag() -> None:
    # The real suites: a flag's value reaches the markers of the collected suite modules.
    code = ("import sys, pytest\n"
            "class P:\n"
            "    def pytest_collection_finish(self, session):\n"
            "        marks = {i.get_closest_marker('rtf').kwargs['max'] for i in session.items\n"
            "                 if i.get_closest_marker('rtf')}\n"
            "        print('RTF MAX', sorted(marks))\n"
            "sys.exit(pytest.main(['suites', '--collect-only', '-q', '-p', 'no:cacheprovider',\n"
            "                      '--cosy-gate-max-rtf', '0.4'], plugins=[P()]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSY_GATE_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RTF MAX [0.4]" in proc.stdout.splitlines()
