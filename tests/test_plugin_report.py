"""End of session: report files, --cosy-save-baseline, the comparison against a stored baseline,
and a corrupt baseline (exit code 4, file untouched), on the tiny v2 model in inner sessions."""
from __future__ import annotations

from pathlib import Path

import pytest

from .plugin_helpers import warm_tiny  # noqa: F401 - fixture

INNER_TESTS = '''
import pytest


@pytest.mark.streaming(prebuffer_ms=1000)
@pytest.mark.rtf(max=100, repeat=3)
def test_timed(cosy_tts):
    list(cosy_tts.stream("Hello there, this is a test.", speaker=cosy_tts.speakers[0]))


@pytest.mark.first_chunk(max_ms=1)
def test_no_call():
    """Records figures (a failed first_chunk check) without touching the model: a cheap session."""
'''


def test_report_baseline_and_drift(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    common = ("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
              "--cosy-baseline-dir=bl")

    # 1. No baseline yet: the report is written, the passed test's figures are saved.
    first = pytester.runpytest(*common, "--cosy-report=rep", "--cosy-save-baseline", "-k", "test_timed")
    first.assert_outcomes(passed=1)
    assert first.ret == 0
    rep = pytester.path / "rep"
    for name in ("rtf.csv", "history.jsonl", "rtf_drift.png", "index.html"):
        assert (rep / name).is_file(), name
    out = first.stdout.str()
    assert "cosyvoice" in out and "no baseline stored for this hardware key (" in out
    saved = list((pytester.path / "bl").glob("*.json"))
    assert len(saved) == 1
    assert f"baseline saved (1 test(s)): {saved[0]}" in out
    assert "test_inner.py::test_timed" in saved[0].read_text()

    # 2. Same key: compared against the stored baseline; a verdict instead of "no baseline".
    second = pytester.runpytest(*common, "--cosy-report=rep", "-k", "test_timed")
    second.assert_outcomes(passed=1)
    out = second.stdout.str()
    assert "no baseline" not in out
    row = next(line for line in out.splitlines() if "test_timed" in line and "  3  " in line)
    assert any(v in row for v in ("ok", "regression", "improvement", "insufficient-samples")), row
    assert "regression(s) in 1 test(s)" in out
    assert f"report: {rep / 'index.html'}" in out
    assert len((rep / "history.jsonl").read_text().splitlines()) == 2

    # 3. A corrupt baseline: exit code 4, the file named and left as it was, even when saving.
    saved[0].write_text("{not json", encoding="utf-8")
    third = pytester.runpytest(*common, "--cosy-no-report", "--cosy-save-baseline", "-k", "test_no_call")
    assert third.ret == 4
    assert str(saved[0]) in third.stdout.str()
    assert saved[0].read_text(encoding="utf-8") == "{not json"
