"""End of session: report files, --cosy-save-baseline per runner, the comparison against a stored
baseline with the machine check, RTF rounds spread over the session, and every bad place (corrupt,
non-UTF-8 or schema-1 baseline, a baseline folder that is a file or read-only, a torn history line):
exit code 4 or a note naming the path, nothing overwritten, on the tiny v2 model in inner sessions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
              "--cosy-baseline-dir=bl", "--cosy-runner=ci-box")

    # 1. No baseline yet: the report is written, the passed test's figures are saved for the runner.
    first = pytester.runpytest(*common, "--cosy-report=rep", "--cosy-save-baseline", "-k", "test_timed")
    first.assert_outcomes(passed=1)
    assert first.ret == 0
    rep = pytester.path / "rep"
    for name in ("rtf.csv", "history.jsonl", "rtf_drift.png", "index.html"):
        assert (rep / name).is_file(), name
    out = first.stdout.str()
    assert "no baseline for runner ci-box (model " in out and "run with --cosy-save-baseline" in out
    # rounds 2 and 3 ran after the main pass, and each gave the test one sample
    assert "RTF round 2 of 3: 1 test(s), shuffled" in out and "RTF round 3 of 3" in out
    assert "machine: calibration" in out
    saved = list((pytester.path / "bl" / "ci-box").glob("*.json"))
    assert len(saved) == 1
    assert f"baseline saved (1 test(s)) for runner ci-box: {saved[0]}" in out
    doc = json.loads(saved[0].read_text())
    assert len(doc["tests"]["test_inner.py::test_timed"]["rtf"]) == 3
    (session,) = doc["sessions"].values()
    assert session["stack"]["torch"] and len(session["health"]["calibration"]) >= 3

    # 2. Same key: compared against the stored baseline; a verdict instead of "no baseline".
    second = pytester.runpytest(*common, "--cosy-report=rep", "-k", "test_timed")
    second.assert_outcomes(passed=1)
    out = second.stdout.str()
    assert "no baseline" not in out and "stack unchanged" in out
    row = next(line for line in out.splitlines() if "test_timed" in line and "  3  " in line)
    assert any(v in row for v in ("ok", "regression", "improvement", "inconclusive", "insufficient-samples")), row
    assert "inconclusive in 1 test(s)" in out
    assert f"report: {rep / 'index.html'}" in out
    history = (rep / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and json.loads(history[-1])["runner"] == "ci-box"

    # 3. A busy neighbour on the cores: the machine is not comparable, so no change can be a regression.
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        crowded = pytester.runpytest(*common, "--cosy-no-report", "--cosy-fail-on-drift", "-k", "test_timed")
    finally:
        busy.kill()
        busy.wait()
    out = crowded.stdout.str()
    assert "NOT comparable: " in out and "other processes used" in out, out
    assert crowded.ret == 0 and "RTF regression(s)" not in out
    row = next(line for line in out.splitlines() if "test_timed" in line and "  3  " in line)
    assert "regression" not in row and "improvement" not in row, row

    # 4. Another runner name: its own (missing) baseline, and the message names the runners that have one.
    other = pytester.runpytest(*common[:-1], "--cosy-runner=other-box", "--cosy-no-report", "-k", "test_timed")
    assert other.ret == 0
    assert "no baseline for runner other-box" in other.stdout.str()
    assert "baselines exist for runner(s) ci-box" in other.stdout.str()

    # 5. A corrupt baseline: exit code 4, the file named and left as it was, even when saving.
    saved[0].write_text("{not json", encoding="utf-8")
    third = pytester.runpytest(*common, "--cosy-no-report", "--cosy-save-baseline", "-k", "test_no_call")
    assert third.ret == 4
    assert str(saved[0]) in third.stdout.str()
    assert saved[0].read_text(encoding="utf-8") == "{not json"


def test_bad_places_end_the_session_with_their_names(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    common = ("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu", "--cosy-runner=ci-box",
              "-k", "test_no_call")

    # a baseline folder that is a file
    (pytester.path / "blocker").write_text("x")
    r = pytester.runpytest(*common, "--cosy-baseline-dir=blocker", "--cosy-save-baseline", "--cosy-no-report")
    assert r.ret == 4 and "Traceback" not in r.stdout.str()
    assert str(pytester.path / "blocker") in r.stdout.str()
    assert (pytester.path / "blocker").read_text() == "x"

    # a baseline file of bytes that are not UTF-8
    from pytest_cosyvoice.tracking.runkey import RunKey

    key = RunKey.detect(warm_tiny, device="cpu", runner="ci-box")
    bad = pytester.path / "bl" / "ci-box" / f"{key.config_slug()}.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xfe not text")
    r = pytester.runpytest(*common, "--cosy-baseline-dir=bl", "--cosy-no-report", "--cosy-save-baseline")
    assert r.ret == 4 and f"{bad}: not UTF-8" in r.stdout.str() and "Traceback" not in r.stdout.str()
    assert bad.read_bytes() == b"\xff\xfe not text"
    bad.unlink()
    (pytester.path / "bl" / "schema1.json").write_text(json.dumps({"schema": 1, "key": {}, "tests": {}}))
    r = pytester.runpytest(*common, "--cosy-baseline-dir=bl", "--cosy-no-report")
    assert r.ret == 1, "schema-1 files are reported, not fatal"
    assert f"note: {pytester.path / 'bl' / 'schema1.json'} is not a schema-2 baseline" in r.stdout.str()
    assert "re-save it with --cosy-save-baseline" in r.stdout.str()

    # a read-only baseline folder (root ignores permissions: checked only where they bite)
    ro = pytester.path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):
            pytester.makepyfile(test_timed_only=INNER_TESTS.split("@pytest.mark.first_chunk")[0])
            r = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                   "--cosy-runner=ci-box", "--cosy-baseline-dir=ro", "--cosy-save-baseline",
                                   "--cosy-no-report", "test_timed_only.py")
            assert r.ret == 4 and str(ro / "ci-box") in r.stdout.str()
    finally:
        ro.chmod(0o700)

    # a torn history line: named, skipped, the session goes on
    rep = pytester.path / "rep"
    rep.mkdir()
    (rep / "history.jsonl").write_text("{torn\n")
    r = pytester.runpytest(*common, "--cosy-baseline-dir=bl", "--cosy-report=rep")
    assert r.ret == 1 and f"{rep / 'history.jsonl'}: line(s) 1 are not session records" in r.stdout.str()
    assert len((rep / "history.jsonl").read_text().splitlines()) == 2


def test_bad_runner_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    r = pytester.runpytest("-p", "no:cacheprovider", "--cosy-runner=gpu box/1")
    assert r.ret == 4
    assert "--cosy-runner='gpu box/1'" in r.stderr.str() and "letters, digits" in r.stderr.str()
