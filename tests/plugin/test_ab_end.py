"""The end of an A/B session (issue #17) on synthetic pairs: the paired verdicts in the findings, the
terminal summary, the report files (ab.csv, ab_verdicts.csv, ab_forest.png, the A/B section of
index.html, the history line), --cosy-fail-on-drift, the Markdown summary, and - through pytester -
the JUnit testsuite properties and the exit status of a real session."""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from pytest_cosyvoice.finish import end_options, exit_status, gather, junit_properties, markdown_path
from pytest_cosyvoice.judging.measurements import PairOutputs, PairSample, TestFigures
from pytest_cosyvoice.report.findings import Findings
from pytest_cosyvoice.report.markdown import TITLE, append_markdown, markdown_summary
from pytest_cosyvoice.report.terminal import UNDECIDED_SHOWN, summary_lines
from pytest_cosyvoice.settings import Settings
from pytest_cosyvoice.tracking.paired import PairedVerdict
from pytest_cosyvoice.tracking.runkey import RunKey
from pytest_cosyvoice.tracking.verdicts import EndOptions

KEY = RunKey("cpu-runner", "cpu", "fp32", "fixed", "tiny", "0123456789")
BASE = "engine 'fixed' over model tiny-copy"


def pairs(factor: float, noise: float, n: int, seed: int) -> list[PairSample]:
    """n pairs whose head is `factor` times the base, each side with its own log-normal noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = 0.2 * float(np.exp(rng.normal(0.0, noise)))
        head = 0.2 * factor * float(np.exp(rng.normal(0.0, noise)))
        out.append(PairSample(i, "AB" if i % 2 else "BA", head, base, 1000 * head, 1000 * base,
                              PairOutputs("identical")))
    return out


def ab_figures() -> list[TestFigures]:
    # +25 %: a candidate at the first look (10 pairs), confirmed on 30 fresh pairs.
    slow = pairs(1.25, 0.01, 40, 1)
    slow[3].outputs = PairOutputs("differs", "tokens diverge at 37 of 120", finding=True)
    return [TestFigures("t.py::slow", rtf=[p.head_rtf for p in slow], pairs=slow),
            TestFigures("t.py::same", rtf=[0.2] * 10, pairs=pairs(1.0, 0.005, 10, 2)),
            # +/- 8 % noise a side around +5 %: neither inside the tolerance nor beyond it in 20 pairs.
            TestFigures("t.py::noisy", rtf=[0.2] * 20, pairs=pairs(1.05, 0.08, 20, 3)),
            TestFigures("t.py::plain", rtf=[0.2, 0.21])]       # no pairs: not judged


def ab_options(tmp_path: Path, **kw: object) -> EndOptions:
    return EndOptions(tmp_path / "baselines", tmp_path / "reports", ab_base=BASE,
                      ab_versions={"torch": "2.9.0", "commit": "abc123"}, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> Findings:
    tmp = tmp_path_factory.mktemp("ab")
    return gather(ab_figures(), [], KEY, "cpu", ab_options(tmp), repo_dir=tmp)


def test_each_paired_test_gets_its_verdict_and_the_session_a_pooled_one(found: Findings) -> None:
    assert found.paired is not None and found.pooled is not None
    verdicts = {r.nodeid: r.verdict for r in found.paired}
    assert verdicts == {"t.py::slow": PairedVerdict.REGRESSION, "t.py::same": PairedVerdict.SAME,
                        "t.py::noisy": PairedVerdict.INCONCLUSIVE}
    assert found.pooled.n_tests == 3 and found.pooled.n_pairs == 70 and found.pooled.metric == "RTF"
    # First-chunk latency is judged on the same pairs, as its own metric.
    assert found.pooled_first_chunk is not None and found.pooled_first_chunk.metric == "first chunk"
    assert [r.nodeid for r in found.paired_first_chunk or []] == ["t.py::slow", "t.py::same", "t.py::noisy"]
    assert found.ab_regressed and not found.fails_on_drift     # not asked to fail


def test_the_terminal_names_a_few_undecided_tests_and_counts_the_rest(tmp_path: Path) -> None:
    # Seven noisy tests (x2 metrics): the first UNDECIDED_SHOWN are named, the rest counted; every
    # regression stays named whatever their number.
    figures = [TestFigures(f"t.py::noisy{i}", rtf=[0.2] * 20, pairs=pairs(1.05, 0.08, 20, 10 + i)) for i in range(7)]
    lines = summary_lines(gather(figures, [], KEY, "cpu", ab_options(tmp_path), repo_dir=tmp_path))
    start = next(i for i, line in enumerate(lines) if line.startswith("A/B undecided ("))
    undecided = int(lines[start].split("(")[1].split(")")[0])
    assert undecided >= 7
    named = lines[start + 1:start + 1 + UNDECIDED_SHOWN]
    assert all(line.startswith("  t.py::noisy") for line in named)
    assert lines[start + 1 + UNDECIDED_SHOWN] == (f"  ... and {undecided - UNDECIDED_SHOWN} more "
                                                  "(all in ab_verdicts.csv of the report)")


def test_the_summary_leads_with_the_pooled_line_then_the_tests(found: Findings) -> None:
    lines = summary_lines(found)
    assert found.pooled is not None
    assert lines[0] == f"A/B against {BASE}: {found.pooled.describe()}"
    assert lines[0].startswith(f"A/B against {BASE}: head/base RTF 1.")
    assert lines[1].startswith(f"A/B against {BASE}: head/base first chunk ")
    text = "\n".join(lines)
    regression = lines.index("A/B regression(s) (2) (reported only):")
    assert lines[regression + 1].startswith("  t.py::slow (RTF): 1.2") and (
        "40 pairs: regression (candidate regression at 10 pairs" in lines[regression + 1])
    assert "confirmed on 30 fresh pairs; outputs differ in 1 of 40 pairs" in lines[regression + 1]
    assert lines[2].startswith("  order effect: the second call of a pair ran ")
    assert lines[3] == ("  a failing regression is confirmed on fresh pairs: its one-sided 99 % bound lies "
                        "above 1.04x (--cosy-ab-floor 0.04)")
    undecided = next(i for i, line in enumerate(lines) if line.startswith("A/B undecided ("))
    assert any(line.startswith("  t.py::noisy (RTF): inconclusive: 20 pairs, CI ")
               for line in lines[undecided:])
    assert "  t.py::slow: differs: tokens diverge at 37 of 120 (round(s) 3 of 40 pairs)" in lines
    # The cross-session part stays, labelled as such, after the A/B part.
    cross = next(i for i, line in enumerate(lines) if line.startswith("cross-session view"))
    assert cross > undecided and lines[cross + 1].startswith("no baseline for runner cpu-runner")
    assert "t.py::same (RTF)" not in text      # "same" is no news


def test_the_report_has_the_raw_pairs_and_the_verdicts(found: Findings) -> None:
    assert found.report is not None and found.report_error == ""
    assert found.report.ab_csv is not None and found.report.ab_verdicts_csv is not None
    with open(found.report.ab_csv, encoding="utf-8", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert list(raw[0]) == ["nodeid", "round", "order", "head_rtf", "base_rtf", "head_first_chunk_ms",
                            "base_first_chunk_ms", "outputs", "outputs_detail", "outputs_finding", "head_tokens",
                            "base_tokens", "head_audio_s", "base_audio_s"]
    assert len(raw) == 70 and {r["nodeid"] for r in raw} == {"t.py::slow", "t.py::same", "t.py::noisy"}
    assert (raw[3]["outputs"], raw[3]["outputs_detail"], raw[3]["outputs_finding"]) == (
        "differs", "tokens diverge at 37 of 120", "True")
    slow = ab_figures()[0].pairs[0]
    assert float(raw[0]["head_rtf"]) == slow.head_rtf and float(raw[0]["base_rtf"]) == slow.base_rtf

    with open(found.report.ab_verdicts_csv, encoding="utf-8", newline="") as fh:
        verdicts = list(csv.DictReader(fh))
    assert list(verdicts[0]) == ["nodeid", "metric", "ratio", "ci_low", "ci_high", "p_value", "p_against", "pairs",
                                 "verdict", "flagged", "confirm_pairs", "outputs_differ", "note"]
    pooled = [r for r in verdicts if r["nodeid"] == "(pooled)"]
    assert [r["metric"] for r in pooled] == ["RTF", "first chunk"] and len(verdicts) == 8
    assert found.pooled is not None and pooled[0]["verdict"] == str(found.pooled.verdict)
    noisy = next(r for r in verdicts if r["nodeid"] == "t.py::noisy" and r["metric"] == "RTF")
    assert noisy["verdict"] == "inconclusive" and noisy["note"].startswith("inconclusive: 20 pairs")
    assert float(noisy["ci_low"]) < float(noisy["ratio"]) < float(noisy["ci_high"])


def test_the_forest_plot_and_the_page(found: Findings) -> None:
    assert found.report is not None and found.report.ab_forest_png is not None
    png = found.report.ab_forest_png.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    html = found.report.html.read_text(encoding="utf-8")
    assert f"<h2>A/B against {BASE}</h2>".replace("'", "&#x27;") in html
    assert 'src="ab_forest.png"' in html and 'href="ab.csv"' in html and 'href="ab_verdicts.csv"' in html
    assert "pooled (3 tests)" in html and "tokens diverge at 37 of 120 (1 of 40 pairs differ)" in html
    assert "identical in 10 of 10 pairs" in html


def test_the_history_line_is_marked_as_ab(found: Findings) -> None:
    assert found.report is not None
    entry = json.loads(found.report.history.read_text(encoding="utf-8").splitlines()[-1])
    ab = entry["ab"]
    assert ab["base"] == BASE and ab["base_versions"] == {"torch": "2.9.0", "commit": "abc123"}
    assert found.pooled is not None and ab["pooled"]["ratio"] == found.pooled.ratio
    assert ab["pooled"]["verdict"] == str(found.pooled.verdict) and ab["pooled"]["pairs"] == 70
    assert set(ab["tests"]) == {"t.py::slow", "t.py::same", "t.py::noisy"}
    assert ab["tests"]["t.py::slow"]["verdict"] == "regression" and ab["tests"]["t.py::slow"]["pairs"] == 40
    assert set(ab["tests"]["t.py::same"]) == {"ratio", "ci_low", "ci_high", "p_value", "p_against", "pairs",
                                               "verdict", "flagged", "outputs_differ"}
    assert ab["first_chunk"]["pooled"]["verdict"] in {v.value for v in PairedVerdict}


def test_an_ab_regression_fails_the_session_under_fail_on_drift(tmp_path: Path) -> None:
    figures = ab_figures()
    gate = gather(figures, [], KEY, "cpu", ab_options(tmp_path, fail_on_drift=True), repo_dir=tmp_path)
    assert gate.drift is None and gate.fails_on_drift     # no baseline: the A/B verdict alone
    assert "A/B regression(s) (2) (--cosy-fail-on-drift: the session fails):" in summary_lines(gate)
    assert exit_status(gate, pytest.ExitCode.OK) == pytest.ExitCode.TESTS_FAILED

    calm = [TestFigures("t.py::same", rtf=[0.2] * 10, pairs=pairs(1.0, 0.005, 10, 2))]
    quiet = gather(calm, [], KEY, "cpu", ab_options(tmp_path, fail_on_drift=True), repo_dir=tmp_path)
    assert quiet.pooled is not None and quiet.pooled.verdict is PairedVerdict.SAME
    assert not quiet.fails_on_drift and exit_status(quiet, pytest.ExitCode.OK) == pytest.ExitCode.OK


def test_failed_tests_and_missing_first_chunks_are_left_out(tmp_path: Path) -> None:
    ps = pairs(1.0, 0.005, 10, 4)
    for p in ps[:4]:
        p.head_first_chunk_ms = None      # the head produced no chunk in those rounds
    figures = [TestFigures("t.py::ok", pairs=ps),
               TestFigures("t.py::bad", outcome="failed", pairs=pairs(2, 0.01, 3, 5))]
    found = gather(figures, [], KEY, "cpu", EndOptions(tmp_path, None), repo_dir=tmp_path)
    assert [r.nodeid for r in found.paired or []] == ["t.py::ok"]
    assert [r.n_pairs for r in found.paired_first_chunk or []] == [6]
    assert summary_lines(found)[0].startswith("A/B against the base side: head/base RTF ")


def test_an_ab_session_without_pairs_says_so(tmp_path: Path) -> None:
    found = gather([TestFigures("t.py::plain", rtf=[0.2])], [], KEY, "cpu",
                   ab_options(tmp_path), repo_dir=tmp_path)
    assert found.paired is None and found.pooled is None and found.ab is not None
    assert summary_lines(found)[0].startswith(f"A/B against {BASE}: no passed test recorded pairs")
    assert found.report is not None and found.report.ab_csv is None and found.report.ab_forest_png is None
    entry = json.loads(found.report.history.read_text(encoding="utf-8").splitlines()[-1])
    assert entry["ab"]["pooled"] is None and entry["ab"]["tests"] == {}


def test_no_ab_lines_outside_ab_mode(tmp_path: Path) -> None:
    found = gather([TestFigures("t.py::plain", rtf=[0.2])], [], KEY, "cpu", EndOptions(tmp_path, None),
                   repo_dir=tmp_path)
    assert found.ab is None and junit_properties(found) == []
    assert summary_lines(found)[0].startswith("no baseline for runner")


def test_junit_properties_name_the_pooled_line_and_each_test(found: Findings) -> None:
    props = dict(junit_properties(found))
    assert found.pooled is not None and found.paired is not None
    assert props["cosy_ab_pooled"] == f"A/B against {BASE}: {found.pooled.describe()}"
    assert props["cosy_ab_t.py::slow"] == found.paired[0].describe()
    assert props["cosy_ab_t.py::noisy"].startswith("inconclusive: 20 pairs, CI ")
    assert props["cosy_ab_first_chunk_pooled"].startswith(f"A/B against {BASE}: head/base first chunk ")


def test_the_markdown_summary(found: Findings, tmp_path: Path) -> None:
    text = markdown_summary(found)
    assert found.pooled is not None
    lines = text.splitlines()
    assert lines[0] == TITLE and f"**A/B against {BASE}: {found.pooled.describe()}**  " in lines
    assert "| test | metric | head/base | CI | p | pairs | verdict |" in lines
    slow = next(line for line in lines if line.startswith("| `t.py::slow` | RTF |"))
    assert slow.endswith("| 40 | **regression** |")
    assert "### Cross-session view (against the stored baseline)" in lines
    assert "No baseline for runner `cpu-runner`: drift not judged." in lines
    assert any(line.startswith("_machine: calibration: not measured") for line in lines)
    assert text.endswith("\n\n")

    # Appended, never truncated: the step summary file is shared by the job's steps.
    path = tmp_path / "deep" / "summary.md"
    assert append_markdown(path, "# an earlier step\n") == ""
    assert append_markdown(path, text) == "" and append_markdown(path, text) == ""
    assert path.read_text(encoding="utf-8") == "# an earlier step\n" + text + text
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    error = append_markdown(blocker / "summary.md", text)
    assert error.startswith(("NotADirectoryError", "FileExistsError")), error


def test_the_markdown_summary_outside_ab_mode_is_the_drift_table(tmp_path: Path) -> None:
    base = [0.200, 0.202, 0.198, 0.205, 0.195, 0.201, 0.199, 0.203, 0.197, 0.200]
    save = EndOptions(tmp_path / "b", None, save_baseline=True)
    gather([TestFigures("t.py::a", rtf=base)], [], KEY, "cpu", save, repo_dir=tmp_path)
    found = gather([TestFigures("t.py::a", rtf=[v * 1.3 for v in base])], [], KEY, "cpu",
                   EndOptions(tmp_path / "b", None), repo_dir=tmp_path)
    lines = markdown_summary(found).splitlines()
    assert "### Speed against the stored baseline" in lines and not any("A/B" in line for line in lines)
    assert "| `t.py::a` | 10 | 0.260 | 0.200 | +30.0% | **regression** |" in lines


def test_the_markdown_path_is_the_option_else_the_step_summary(tmp_path: Path) -> None:
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "step.md")}
    assert markdown_path(Settings(), tmp_path, {}) is None
    assert markdown_path(Settings(), tmp_path, env) == tmp_path / "step.md"
    assert markdown_path(Settings(markdown=Path("out/s.md")), tmp_path, env) == tmp_path / "out" / "s.md"
    options = end_options(Settings(ab_max_pairs=12), tmp_path, ab_base=BASE, ab_versions={"torch": "x"},
                          environ=env)
    assert options.markdown == tmp_path / "step.md" and options.ab_max_pairs == 12
    assert options.ab_base == BASE and options.ab_versions == {"torch": "x"}


INNER = '''
import pytest

from pytest_cosyvoice.judging.measurements import PairSample, TestFigures
from pytest_cosyvoice.plugin import get_session


def test_records_pairs(request):
    """Stands in for the pairing: what an A/B session of one RTF test leaves on the session."""
    session = get_session(request.config)
    # A candidate at 10 pairs, confirmed on 30 fresh ones; balanced AB/BA blocks.
    pairs = [PairSample(i, "AB" if i % 2 else "BA", 0.26 + 0.001 * (i % 7), 0.20 + 0.0005 * (i % 5))
             for i in range(40)]
    session.figures["inner.py::paired"] = TestFigures("inner.py::paired", rtf=[p.head_rtf for p in pairs],
                                                      pairs=pairs)
    session.ab_base = "the base side"
'''


def test_junit_gets_the_ab_properties_and_fail_on_drift_fails(pytester: pytest.Pytester, warm_tiny: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # warm_tiny: torch and transformers imported before pytester's sys.modules snapshot (see the fixture),
    # and named as the model: under pytester's own HOME the default model would be built afresh inside
    # the snapshot (onnx imported there, then dropped: a later import aborts on ml_dtypes' registration).
    pytester.makepyfile(test_inner=INNER)
    step = pytester.path / "step.md"
    step.write_text("# earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--junitxml=junit.xml",
                                "--cosy-no-report", "--cosy-fail-on-drift")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["A/B against the base side: head/base RTF 1.3*x (95 % CI *) over 1 test, "
                                 "40 pairs: regression"])
    root = ET.parse(pytester.path / "junit.xml").getroot()
    props = {p.get("name"): p.get("value", "") for p in root.iter("property")}
    assert props["cosy_ab_pooled"].startswith("A/B against the base side: head/base RTF 1.3")
    assert "40 pairs: regression (candidate regression at 10 pairs" in props["cosy_ab_inner.py::paired"]
    assert "cosy_ab_first_chunk_pooled" not in props       # no first-chunk figures in those pairs
    markdown = step.read_text(encoding="utf-8")
    assert markdown.startswith("# earlier step\n## pytest-cosyvoice\n")
    assert "**the session fails**" in markdown
