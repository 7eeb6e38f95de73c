"""The quality gate's report outputs: quality.json, the golden and current audio under audio/, the
page's Quality section, the history line and its trend graph, the terminal and Markdown lines, the
JUnit properties. Built from TestQuality objects holding real speech (the packaged prompt)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosyvoice_runtime.audio import read_wav
from pytest_cosyvoice.finish import gather
from pytest_cosyvoice.judging.golden_checks import compare_call
from pytest_cosyvoice.judging.junit import quality_properties
from pytest_cosyvoice.judging.quality_results import CallOutput, QualityCheck, TestQuality, Why
from pytest_cosyvoice.judging.scores import judge_scores, saves_to_gate
from pytest_cosyvoice.judging.specs import QualitySpec
from pytest_cosyvoice.report.findings import Findings
from pytest_cosyvoice.report.markdown import markdown_summary
from pytest_cosyvoice.report.model import GoldenAudio, ReportFiles, ReportInput
from pytest_cosyvoice.report.terminal import quality_line, quality_lines, summary_lines
from pytest_cosyvoice.report.writer import write_report
from pytest_cosyvoice.tracking.goldens import GoldenCall
from pytest_cosyvoice.tracking.history import quality_counts, quality_entry, read_history
from pytest_cosyvoice.tracking.runkey import RunKey
from pytest_cosyvoice.tracking.verdicts import EndOptions

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

KEY = RunKey("ci-box", "cpu", "fp32", "fixed", "tiny", "0123456789")
PROMPT = Path(__file__).resolve().parents[2] / "pytest_cosyvoice" / "data" / "prompt.wav"
# A node id with what file names must not carry: a slash in the parameter, spaces, quotes, a colon.
FAILING = 'suites/quality/test_q.py::test_stream[v2/fp32 "short": ü]'
PASSING = "suites/quality/test_q.py::test_offline[v2]"
NOTED = "suites/quality/test_q.py::test_new[v2]"


def speech() -> tuple[np.ndarray, int]:
    audio, rate = read_wav(PROMPT)
    return audio, rate


def call(label: str, audio: np.ndarray, rate: int, **scores: Any) -> CallOutput:
    return CallOutput(label=label, kind=label.split()[0], seed=7, sample_rate=rate, text="Hello there.",
                      tokens=[1, 2, 3], audio=audio, mos={k: v for k, v in scores.items() if k != "wer"},
                      wer=scores.get("wer"))


def qualities() -> tuple[list[TestQuality], GoldenAudio]:
    audio, rate = speech()
    rng = np.random.default_rng(3)
    noisy = (audio + 0.05 * rng.standard_normal(audio.size)).astype(np.float32)
    failing = TestQuality(FAILING, [call("stream 0", noisy, rate, dnsmos=2.1, plcmos=2.0),
                                    call("synthesize 0", audio[: rate // 2], rate, dnsmos=2.9, plcmos=2.6)], [
        QualityCheck("audio", "stream 0", "pass", float("inf"), 40.0, "audio identical to the golden"),
        QualityCheck("tokens", "stream 0", "fail", 37.0, None, "tokens diverge at 37 of 120"),
        QualityCheck.note("dnsmos", "", Why.UNCALIBRATED, "dnsmos 2.500: uncalibrated (2 of 5 clean runs), not gated",
                          2.5),
        QualityCheck("token2wav", "stream 0", "fail", 12.0, 60.0, "token->wav 12.0 dB SNR vs golden (limit 60 dB)"),
        QualityCheck.note("tokens", "synthesize 0", Why.NO_GOLDEN, "no golden for this call")])
    passing = TestQuality(PASSING, [call("synthesize 0", audio, rate, dnsmos=3.0, plcmos=2.8, wer=0.1)], [
        QualityCheck("token2wav", "synthesize 0", "pass", 72.5, 60.0, "token->wav 72.5 dB SNR vs golden")])
    passing.seconds = 1.25  # type: ignore[attr-defined]  # what the lead's session adds
    noted = TestQuality(NOTED, [call("stream 0", audio[:rate], rate)], [
        QualityCheck.note("tokens", "stream 0", Why.NO_GOLDEN, "no golden for this call")])
    golden: GoldenAudio = {
        FAILING: {"stream 0": (audio, rate)},
        # A golden call this session did not make, and one at another rate than recorded.
        PASSING: {"synthesize 0": (audio[::2].copy(), rate // 2), "synthesize 1": (audio, rate)},
    }
    return [failing, passing, noted], golden


def report_input(quality: list[TestQuality], golden: GoldenAudio, history: Path) -> ReportInput:
    return ReportInput([], KEY, history_path=history, commit="", quality=quality, golden_audio=golden)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportFiles, list[TestQuality], GoldenAudio]:
    tmp = tmp_path_factory.mktemp("quality")
    quality, golden = qualities()
    return write_report(tmp / "rep", report_input(quality, golden, tmp / "history.jsonl")), quality, golden


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_quality_json_follows_the_contract(written: tuple[ReportFiles, list[TestQuality], GoldenAudio]) -> None:
    files, quality, _ = written
    assert files.quality_json == files.out_dir / "quality.json"
    data = _strict(files.quality_json.read_text(encoding="utf-8"))
    assert data["schema"] == 1
    assert set(data["tests"]) == {FAILING, PASSING, NOTED}
    failing, passing, noted = (data["tests"][n] for n in (FAILING, PASSING, NOTED))
    assert (failing["status"], passing["status"], noted["status"]) == ("fail", "pass", "note")
    # Every check as judged, in order, with the contract's fields; an infinite SNR as the string "inf".
    assert [c["name"] for c in failing["checks"]] == ["audio", "tokens", "dnsmos", "token2wav", "tokens"]
    assert failing["checks"][0] == {"name": "audio", "call": "stream 0", "status": "pass", "figure": "inf",
                                    "limit": 40.0, "text": "audio identical to the golden", "why": None}
    assert failing["checks"][4]["figure"] is None and failing["checks"][4]["limit"] is None
    assert [c["why"] for c in failing["checks"]] == [None, None, "uncalibrated", None, "no golden"]
    assert failing["scores"] == pytest.approx({"dnsmos": 2.5, "plcmos": 2.3})
    assert passing["scores"] == pytest.approx({"dnsmos": 3.0, "plcmos": 2.8, "wer": 0.1})
    assert noted["scores"] == {}
    # "seconds" only where the session timed the checks.
    assert passing["seconds"] == 1.25 and "seconds" not in failing


def test_each_call_has_its_current_and_golden_wav(
        written: tuple[ReportFiles, list[TestQuality], GoldenAudio]) -> None:
    import soundfile as sf

    files, quality, golden = written
    by_call = {(a.nodeid, a.call): a for a in files.quality_audio}
    assert list(by_call) == [(FAILING, "stream 0"), (FAILING, "synthesize 0"), (PASSING, "synthesize 0"),
                             (PASSING, "synthesize 1"), (NOTED, "stream 0")]
    for a in files.quality_audio:
        for path in (a.current, a.golden):
            if path is not None:
                assert path.parent == files.out_dir / "audio" and path.is_file()
                assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name), path.name   # safe for any node id
    names = [p.name for a in files.quality_audio for p in (a.current, a.golden) if p is not None]
    assert len(names) == len(set(names)) == 7

    stream = by_call[(FAILING, "stream 0")]
    assert stream.current is not None and stream.current.name.endswith("--stream_0-current.wav")
    assert stream.golden is not None and stream.golden.name.endswith("--stream_0-golden.wav")
    assert stream.note == ""
    audio, rate = golden[FAILING]["stream 0"]
    read, read_rate = sf.read(str(stream.golden), dtype="float32")
    assert read_rate == rate and read.size == audio.size
    assert np.abs(read - audio).max() < 1e-4       # PCM_16: within one step of the golden
    current = quality[0].calls[0].audio
    read, _ = sf.read(str(stream.current), dtype="float32")
    assert np.abs(read - np.clip(current, -1, 1)).max() < 1e-4

    no_golden = by_call[(FAILING, "synthesize 0")]
    assert no_golden.golden is None and no_golden.current is not None
    assert no_golden.note == "no golden for this call"
    other_rate = by_call[(PASSING, "synthesize 0")]
    assert other_rate.golden is not None and sf.info(str(other_rate.golden)).samplerate == rate // 2
    assert other_rate.note == f"golden at {rate // 2} Hz, current at {rate} Hz"
    not_called = by_call[(PASSING, "synthesize 1")]
    assert not_called.current is None and not_called.golden is not None
    assert not_called.note == "not called in this session"
    # One call only: the stem is the test's alone.
    alone = by_call[(NOTED, "stream 0")]
    assert alone.current is not None and alone.current.name == "suites_quality_test_q.py__test_new_v2-current.wav"


class _Page(HTMLParser):
    """The Quality section's headings, check rows (as cell texts) and audio sources, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.in_quality = False
        self.tag = ""
        self.h3: list[str] = []
        self.rows: list[list[str]] = []
        self.audio: list[str] = []
        self.imgs: list[str] = []
        self.text: list[str] = []
        self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tag = tag
        if not self.in_quality:
            return
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
            self.in_cell = True
        src = dict(attrs).get("src")
        if tag == "audio" and src:
            self.audio.append(src)
        if tag == "img" and src:
            self.imgs.append(src)

    def handle_endtag(self, tag: str) -> None:
        self.tag = ""
        if tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data: str) -> None:
        if self.tag == "h2":
            self.in_quality = data == "Quality"
        if not self.in_quality:
            return
        self.text.append(data)
        if self.tag == "h3":
            self.h3.append(data.strip())
        elif self.in_cell:
            self.rows[-1][-1] += data


def page(files: ReportFiles) -> _Page:
    p = _Page()
    p.feed(files.html.read_text(encoding="utf-8"))
    return p


def test_the_page_shows_checks_and_both_players(
        written: tuple[ReportFiles, list[TestQuality], GoldenAudio]) -> None:
    files, _, _ = written
    p = page(files)
    # Failed tests first.
    assert [h for h in p.h3 if h.startswith("suites/")] == [FAILING, PASSING, NOTED]
    text = " ".join(p.text)
    assert "3 quality test(s): 1 failed, 1 uncalibrated" in text and "2 without golden" in text
    checks = [r for r in p.rows if len(r) == 6 and r[0] != "check"]
    # The failing test's checks: failed first, then passed, then notes; figures and limits shown.
    assert [(r[0], r[2]) for r in checks[:5]] == [("tokens", "fail"), ("token2wav", "fail"), ("audio", "pass"),
                                                  ("dnsmos", "note"), ("tokens", "note")]
    assert checks[1][3:] == ["12", "60", "token->wav 12.0 dB SNR vs golden (limit 60 dB)"]
    assert checks[2][3] == "∞" and checks[0][4] == "-"
    players = [r for r in p.rows if len(r) == 4 and r[0] != "call"]
    assert [r[0] for r in players] == ["stream 0", "synthesize 0", "synthesize 0", "synthesize 1", "stream 0"]
    assert "no golden" in players[1][1] and players[1][3] == "no golden for this call"
    # Golden and current side by side, relative paths to the files written.
    expected = [p.relative_to(files.out_dir).as_posix() for a in files.quality_audio
                for p in (a.golden, a.current) if p is not None]
    assert p.audio == expected
    assert all((files.out_dir / src).is_file() for src in p.audio)
    assert "1.25 s" in text                                 # the time the passing test's checks took
    assert p.imgs == []                                     # one session of quality: no trend yet


def test_nothing_is_written_without_quality_tests(tmp_path: Path) -> None:
    files = write_report(tmp_path / "rep", ReportInput([], KEY, history_path=tmp_path / "h.jsonl", commit=""))
    assert files.quality_json is None and files.quality_audio == [] and files.quality_trend_png is None
    assert not (tmp_path / "rep" / "quality.json").exists() and not (tmp_path / "rep" / "audio").exists()
    assert "<h2>Quality</h2>" not in files.html.read_text(encoding="utf-8")
    assert "quality" not in read_history(tmp_path / "h.jsonl")[0]


def test_the_history_keeps_the_quality_and_the_page_draws_its_trend(tmp_path: Path) -> None:
    import matplotlib.image

    quality, golden = qualities()
    history = tmp_path / "history.jsonl"
    first = write_report(tmp_path / "a", report_input(quality, golden, history))
    assert first.quality_trend_png is None
    write_report(tmp_path / "b", ReportInput([], KEY, history_path=history, commit=""))  # no quality tests
    second = write_report(tmp_path / "c", report_input(quality[1:], golden, history))
    sessions = read_history(history, KEY)
    assert ["quality" in s for s in sessions] == [True, False, True]
    assert sessions[0]["quality"] == pytest.approx({
        "tests": 3, "failed": 1, "uncalibrated": 1, "without_golden": 2,
        "dnsmos": (2.5 + 3.0) / 2, "plcmos": (2.3 + 2.8) / 2, "wer": 0.1, "sim": None, "sim_model": None,
        "seconds": 1.25})
    assert sessions[2]["quality"]["failed"] == 0 and sessions[2]["quality"]["tests"] == 2
    assert second.quality_trend_png == tmp_path / "c" / "quality_trend.png"
    img = matplotlib.image.imread(second.quality_trend_png)
    assert img.shape[1] >= 600 and img.shape[0] >= 400
    assert page(second).imgs == ["quality_trend.png"]


def test_quality_entry_and_counts_of_nothing() -> None:
    assert quality_entry([]) == {"tests": 0, "failed": 0, "uncalibrated": 0, "without_golden": 0,
                                 "dnsmos": None, "plcmos": None, "wer": None, "sim": None, "sim_model": None,
                                 "seconds": None}
    quality, _ = qualities()
    n = quality_counts(quality)
    assert (n.tests, n.failed, n.uncalibrated, n.without_golden) == (3, 1, 1, 2)


def test_the_terminal_lines() -> None:
    quality, _ = qualities()
    assert quality_line([]) is None and quality_lines([]) == []
    assert quality_lines(quality) == [
        "quality: 3 tests, 1 failed, 1 uncalibrated, 2 without golden",
        f"quality FAILED {FAILING}: stream 0: tokens diverge at 37 of 120; "
        "stream 0: token->wav 12.0 dB SNR vs golden (limit 60 dB)"]


def test_a_first_session_says_it_compared_nothing_and_how_to_start() -> None:
    """Issue 23: a first quality session passes with nothing compared; its line says so, names the flag
    that saves goldens and after how many saving sessions the scores gate. Once goldens exist, the
    line counts down the saving sessions left; a saving session is not told to save."""
    audio, rate = speech()
    limits = QualitySpec()

    def judged(stored: dict[str, list[float]], golden: bool) -> TestQuality:
        current = call("stream 0", audio, rate, dnsmos=3.0, plcmos=2.5)
        tq = TestQuality("t.py::t", [current])
        tq.checks = compare_call(GoldenCall("stream 0", "stream", 7, rate, [1, 2, 3], audio, audio) if golden
                                 else None, current, limits, "fp32") + judge_scores(stored, tq.scores(), limits)
        tq.saves_to_gate = saves_to_gate(stored, tq.scores(), limits)
        return tq

    first = [judged({}, golden=False)] * 2
    assert quality_line(first) == ("quality: 2 tests, 0 failed, 2 uncalibrated, 2 without golden: nothing compared; "
                                   "save goldens with --cosy-save-baseline (MOS/WER/SIM gate after 5 saving sessions)")
    first[0].saves_to_gate = 4          # as the gate counts in a saving session: this one is saved
    assert quality_line(first, saving=True) == ("quality: 2 tests, 0 failed, 2 uncalibrated, 2 without golden; "
                                                "MOS/WER/SIM gate after 4 more saving sessions (--cosy-save-baseline)")
    second = [judged({"dnsmos": [3.0], "plcmos": [2.5]}, golden=True)]
    assert quality_line(second) == ("quality: 1 tests, 0 failed, 1 uncalibrated, 0 without golden; MOS/WER/SIM gate "
                                    "after 4 more saving sessions (--cosy-save-baseline)")
    calibrated = [judged({"dnsmos": [3.0] * 5, "plcmos": [2.5] * 5}, golden=True)]
    assert quality_line(calibrated) == "quality: 1 tests, 0 failed, 0 uncalibrated, 0 without golden"


def test_the_end_of_session_says_it_in_the_terminal_markdown_and_report(tmp_path: Path) -> None:
    quality, golden = qualities()
    found = gather([], [], KEY, "cpu", EndOptions(tmp_path / "bl", tmp_path / "rep"), repo_dir=tmp_path,
                   quality=quality, golden_audio=golden)
    assert found.report is not None, found.report_error
    assert found.report.quality_json is not None and found.report.quality_json.is_file()
    assert sum(a.golden is not None for a in found.report.quality_audio) == 3
    lines = summary_lines(found)
    assert "quality: 3 tests, 1 failed, 1 uncalibrated, 2 without golden" in lines
    assert any(line.startswith(f"quality FAILED {FAILING}: ") for line in lines)
    md = markdown_summary(found)
    assert "### Quality" in md and "quality: 3 tests, 1 failed, 1 uncalibrated, 2 without golden" in md
    assert "| `suites/quality/test_q.py::test_stream[v2/fp32 \"short\": ü]` | tokens, token2wav |" in md
    # Without quality tests none of it appears.
    quiet = Findings([], KEY, EndOptions(tmp_path / "bl", None), tmp_path / "x.json")
    assert not any(line.startswith("quality") for line in summary_lines(quiet))
    assert "Quality" not in markdown_summary(quiet)


def test_junit_properties() -> None:
    quality, _ = qualities()
    failing, passing, noted = quality
    assert quality_properties(failing) == [
        ("cosy_quality", "fail"), ("cosy_quality_failed", "tokens,token2wav"),
        ("cosy_quality_audio", "inf (40)"), ("cosy_quality_tokens", "37 (-)"), ("cosy_quality_dnsmos", "2.5 (-)"),
        ("cosy_quality_token2wav", "12 (60)"), ("cosy_quality_tokens", "- (-)")]
    assert quality_properties(passing) == [("cosy_quality", "pass"), ("cosy_quality_failed", ""),
                                           ("cosy_quality_token2wav", "72.5 (60)")]
    assert quality_properties(noted)[:2] == [("cosy_quality", "note"), ("cosy_quality_failed", "")]
