"""The report files: present, non-trivial, self-consistent; the terminal table's content."""
from __future__ import annotations

import html
import importlib.util
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pytest_cosyvoice.judging.measurements import StreamTrace
from pytest_cosyvoice.judging.measurements import TestFigures as Figures
from pytest_cosyvoice.report.model import (
    ReportFiles,
    ReportInput,
    StreamRecord,
    machine_facts,
    machine_line,
    sanitise_nodeid,
)
from pytest_cosyvoice.report.writer import summary_table, write_report
from pytest_cosyvoice.tracking.baseline import BaselineStore
from pytest_cosyvoice.tracking.drift import Machine, compare
from pytest_cosyvoice.tracking.health import Health, HealthError
from pytest_cosyvoice.tracking.history import append_history, history_entry, history_problems, read_history
from pytest_cosyvoice.tracking.probes import CalibrationSample
from pytest_cosyvoice.tracking.runkey import RunKey

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

KEY = RunKey("nvidia-h100-80gb-hbm3", "cuda", "fp16", "fixed", "CosyVoice2-0.5B", "0123456789")
SLOW = "suites/perf/test_rtf.py::test_rtf[v2-fp16-short]"
STEADY = "suites/perf/test_rtf.py::test_rtf[v2-fp16-long]"
NEW = "suites/perf/test_stream.py::test_first_chunk"
SR = 8000


def figures(rng: np.random.Generator, slow: float = 1.0) -> list[Figures]:
    def f(nodeid: str, median: float, n: int = 6) -> Figures:
        return Figures(nodeid, rtf=list(median * np.exp(rng.normal(0, 0.03, n))),
                       first_chunk_ms=list(300 + rng.normal(0, 10, n)),
                       worst_gap_ms=[0.0] * (n - 1) + [42.0], audio_s=2.0)
    return [f(SLOW, 0.2 * slow), f(STEADY, 0.1), f(NEW, 0.3)]


def streams(rng: np.random.Generator) -> list[StreamRecord]:
    late = StreamTrace("stream 0", SR, [4000] * 5, [0.2, 0.6, 1.0, 1.9, 2.0], click_joins=[2],
                       outcome="ok")
    fine = StreamTrace("stream 1", SR, [4000] * 5, [0.1, 0.4, 0.7, 1.0, 1.3])
    audio = (0.3 * rng.normal(size=20000)).astype(np.float32)
    return [StreamRecord(SLOW, late, audio, prebuffer_s=0.0, failed=True),
            StreamRecord(SLOW, fine, audio * 3, prebuffer_s=0.1),   # loud: clipped in the .wav
            StreamRecord(STEADY, fine, None)]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.audio = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.audio += tag == "audio"
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return img.shape[1], img.shape[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportFiles, ReportInput]:
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    store = BaselineStore(tmp / "baselines")
    store.save(KEY, figures(rng)[:2], commit="base")
    baseline = store.load(KEY)
    history = tmp / "history.jsonl"
    for _ in range(3):   # earlier sessions for the trend
        append_history(history, history_entry(figures(rng), KEY, "old"))
    current = figures(rng, slow=1.3)
    current[2].outcome, current[2].failed_checks = "failed", ["gap-free"]
    health = Health([CalibrationSample(0.02, 0.03)] * 3, others_cpu=0.02, steal=0.0)
    data = ReportInput(current, KEY, compare(current, baseline), baseline, streams(rng),
                       history_path=history, commit="deadbeef", stack={"torch": "2.10.0", "commit": "deadbeef"},
                       stack_changes=["torch 2.9.1 -> 2.10.0"], health=health, machine=Machine(1.02))
    return write_report(tmp / "reports", data), data


def test_files_exist_and_are_non_trivial(report: tuple[ReportFiles, ReportInput]) -> None:
    files, _ = report
    for png in (files.drift_png, files.trend_png, *(s.png for s in files.streams)):
        width, height = png_size(png)
        assert width >= 800 and height >= 300, (png, width, height)
    # A picture per stream; a .wav only where audio was recorded (not the third stream's).
    assert [s.wav is not None for s in files.streams] == [True, True, False]
    assert files.drift_png.name == "rtf_drift.png" and files.trend_png.name == "rtf_trend.png"


def test_stream_files_and_wav(report: tuple[ReportFiles, ReportInput]) -> None:
    import soundfile as sf

    files, data = report
    names = sorted(s.png.name for s in files.streams)
    assert names == sorted([f"{sanitise_nodeid(SLOW)}--stream_0.png",
                            f"{sanitise_nodeid(SLOW)}--stream_1.png",
                            f"{sanitise_nodeid(STEADY)}.png"])
    assert all(s.png.parent.name == "streams" for s in files.streams)
    wavs = [s.wav for s in files.streams if s.wav is not None]
    info = sf.info(str(wavs[0]))
    assert info.samplerate == SR and info.frames == 20000 and info.subtype == "PCM_16"
    loud, _ = sf.read(str(wavs[1]))
    assert np.abs(loud).max() <= 1.0 and np.abs(loud).max() > 0.99   # clipped, not wrapped


def test_csv_rows(report: tuple[ReportFiles, ReportInput]) -> None:
    import pandas as pd

    files, data = report
    frame = pd.read_csv(files.csv)
    assert len(frame) == sum(len(f.rtf) for f in data.figures) == 18
    assert set(frame["nodeid"]) == {SLOW, STEADY, NEW}
    assert {"rtf", "first_chunk_ms", "worst_gap_ms", "run", "verdict", "drift",
            "calibrated_drift", "key_runner", "key_dtype", "key_model_hash"} <= set(frame.columns)
    assert (frame["key_runner"] == KEY.runner).all()
    assert set(frame.loc[frame.nodeid == SLOW, "verdict"]) == {"regression"}
    assert frame.loc[frame.nodeid == SLOW, "rtf"].tolist() == pytest.approx(data.figures[0].rtf)


def test_every_verdict_has_its_colour() -> None:
    from pytest_cosyvoice.report.model import VERDICT_COLOURS
    from pytest_cosyvoice.tracking.drift import DriftVerdict

    assert set(VERDICT_COLOURS) == set(DriftVerdict)


def test_csv_keeps_tests_without_runs(tmp_path: Path) -> None:
    import pandas as pd

    from pytest_cosyvoice.report.writer import write_csv

    write_csv(tmp_path / "rtf.csv", [Figures("t::errored", outcome="error")], KEY)
    frame = pd.read_csv(tmp_path / "rtf.csv")
    assert len(frame) == 1 and frame["run"].isna().all() and frame["outcome"][0] == "error"


def test_history_appends_one_line_per_session(report: tuple[ReportFiles, ReportInput]) -> None:
    files, data = report
    lines = files.history.read_text().splitlines()
    assert len(lines) == 4
    last = json.loads(lines[-1])
    assert last["commit"] == "deadbeef" and last["key"] == KEY.to_dict()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", last["time_utc"])
    assert last["tests"][SLOW]["rtf"] == pytest.approx(float(np.median(data.figures[0].rtf)))
    assert last["runner"] == KEY.runner and last["stack"] == data.stack
    other = RunKey(**{**KEY.to_dict(), "dtype": "fp32"})
    assert len(read_history(files.history, KEY)) == 4 and read_history(files.history, other) == []


def test_history_skips_torn_lines_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"tests": {}, "slug": "x"}\n{"tests": {"a"\n[1]\n\n')
    assert len(read_history(path)) == 1
    (problem,) = history_problems(path)
    assert str(path) in problem and "line(s) 2, 3 " in problem
    assert history_problems(tmp_path / "missing.jsonl") == []


def test_html_references_resolve(report: tuple[ReportFiles, ReportInput]) -> None:
    files, _ = report
    text = files.html.read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert parser.refs and parser.audio == 2       # the two streams with audio
    for ref in parser.refs:
        assert not ref.startswith(("/", "http")), ref
        assert (files.out_dir / ref).is_file(), ref
    assert {"rtf_drift.png", "rtf_trend.png", "rtf.csv"} <= set(parser.refs)
    assert "regression" in text and "deadbeef" in text and KEY.config_slug() in text
    assert "torch 2.9.1 -&gt; 2.10.0" in text and "Machine and stack" in text
    # The failing stream comes first, under its own heading.
    failing = text.index("Failing streams (1)")
    assert failing < text.index("stream_0.png") < text.index("Sample of passing streams")


def test_the_terminal_and_the_page_say_the_same_of_the_machine(report: tuple[ReportFiles, ReportInput]) -> None:
    files, data = report
    page = files.html.read_text(encoding="utf-8")
    facts = machine_facts(data.health, data.machine)
    line = machine_line(data.health, data.machine)
    assert [what for what, _ in facts] == ["calibration", "other processes' CPU share", "hypervisor steal",
                                           "against the baseline's machine"]
    for what, value in facts:
        assert f"{what}: {value}" in line
        assert f"<td class=id>{html.escape(what)}</td><td class=id>{html.escape(value)}</td>" in page
    assert line.startswith("machine: calibration: 50.0 ms (median of 3); other processes' CPU share: 2%; ")
    assert line.endswith("against the baseline's machine: comparable: machine 2 % slower than at baseline "
                         "(calibration x1.02)")


def test_the_machine_text_names_a_busy_or_unmeasured_machine() -> None:
    busy = Health([CalibrationSample(0.02, 0.03)] * 3, others_cpu=0.48)
    slower = Machine(1.23, tuple(busy.problems()))
    assert ("NOT comparable: machine 23 % slower than at baseline (calibration x1.23) (other processes used 48% "
            "of the CPU; beyond the machine tolerance of 10%)") in machine_line(busy, slower)
    assert machine_line(busy, None).endswith("; busy: other processes used 48% of the CPU")
    assert machine_line(None, None) == "machine: calibration: not measured (no model was loaded)"
    broken = Health(errors=[HealthError("calibration", "calibration on cuda failed: RuntimeError: no kernel")])
    assert machine_line(broken, None) == ("machine: calibration: not calibrated (calibration on cuda failed: "
                                          "RuntimeError: no kernel)")


def test_report_without_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    files = write_report(tmp_path, ReportInput(figures(rng), KEY, None, None, commit=""))
    assert png_size(files.drift_png)[0] >= 800
    assert "No baseline is stored" in files.html.read_text()
    assert len(read_history(files.history)) == 1


def test_summary_table() -> None:
    rng = np.random.default_rng(1)
    base = figures(rng)
    current = figures(rng, slow=1.3)
    current[1].outcome = "failed"
    drift = compare(current, {f.nodeid: f.rtf for f in base[:2]})
    table = summary_table(current, drift)
    lines = table.splitlines()
    assert lines[0].split() == ["test", "runs", "RTF", "baseline", "raw", "calibrated", "verdict",
                                "first-chunk", "ms", "worst", "gap", "ms"]
    slow = next(line for line in lines if "v2-fp16-short" in line)
    assert "regression" in slow and re.search(r"\+\d\d\.\d%", slow)
    assert f"{np.median(current[0].rtf):.3f}" in slow and "42" in slow
    assert "(failed)" in next(line for line in lines if "v2-fp16-long" in line)
    assert "new" in next(line for line in lines if "test_first_chunk" in line)
    assert lines[-1] == "1 regression(s), 0 inconclusive in 3 test(s)"
    assert "no baseline stored" in summary_table(current, None)


def test_a_stream_record_survives_the_xdist_wire() -> None:
    rec = streams(np.random.default_rng(6))[0]
    wire = rec.to_wire()
    assert isinstance(wire["audio"], bytes) and isinstance(wire["trace"], dict)   # execnet-safe types
    back = StreamRecord.from_wire(wire)
    assert back.nodeid == rec.nodeid and back.trace == rec.trace and back.failed and back.prebuffer_s == 0.0
    assert back.audio is not None and back.audio.dtype == np.float32 and back.audio.flags.writeable
    assert np.array_equal(back.audio, rec.audio)
    assert StreamRecord.from_wire(StreamRecord(STEADY, rec.trace, None).to_wire()).audio is None


def test_sanitise_nodeid() -> None:
    assert sanitise_nodeid("suites/a.py::test_x[v2 / fp16]") == "suites_a.py__test_x_v2_fp16"
    long = sanitise_nodeid("t::" + "x" * 500)
    assert len(long) < 140 and long != sanitise_nodeid("t::" + "x" * 499)


# -- change points ---------------------------------------------------------------------------

STACK = {"torch": "2.9.1+cu128", "cuda": "12.8", "driver": "570.124", "python": "3.11.2",
         "numpy": "2.4.6"}


def shifted_history(path: Path, rng: np.random.Generator) -> None:
    """14 sessions; from the 8th on torch is upgraded, the commit is new and SLOW is 30 % slower."""
    for i in range(14):
        upgraded = i >= 7
        entry = history_entry(figures(rng, slow=1.3 if upgraded else 1.0), KEY,
                              "b" * 40 if upgraded else "a" * 40)
        entry["stack"] = dict(STACK, torch="2.10.0+cu128") if upgraded else dict(STACK)
        append_history(path, entry)


def test_report_lists_and_draws_change_points(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ruptures")
    from pytest_cosyvoice.report import trends

    drawn: list[int] = []
    mark = trends.mark_changes
    monkeypatch.setattr(trends, "mark_changes",
                        lambda ax, cps: (drawn.extend(cp.index for cp in cps), mark(ax, cps)))
    rng = np.random.default_rng(4)
    shifted_history(tmp_path / "history.jsonl", rng)
    files = write_report(tmp_path, ReportInput(figures(rng, slow=1.3), KEY, None, None,
                                               commit="b" * 40))
    assert files.changes is not None and files.changes[STEADY] == files.changes[NEW] == []
    (cp,) = files.changes[SLOW]
    assert cp.index == 7 and 0.2 < cp.shift < 0.4
    assert cp.what_changed == ["torch 2.9.1+cu128 -> 2.10.0+cu128", "commit aaaaaaa -> bbbbbbb"]
    assert len(files.change_lines) == 1 and files.change_lines[0].startswith(SLOW)
    assert png_size(files.trend_png)[0] >= 800 and drawn == [7]    # marked on rtf_trend.png
    text = files.html.read_text(encoding="utf-8")
    section = text[text.index("<h2>Change points</h2>"):text.index("<h2>Failing streams")]
    assert "v2-fp16-short" in section and "v2-fp16-long" not in section
    assert f"{cp.shift_pct:+.1f}%" in section and "bbbbbbb" in section
    assert "torch 2.9.1+cu128 -&gt; 2.10.0+cu128" in section
    assert f"{cp.median_before:.3f} &rarr; {cp.median_after:.3f}" in section


def test_report_without_change_points_or_ruptures(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    for _ in range(6):
        append_history(tmp_path / "history.jsonl", history_entry(figures(rng), KEY, "a"))
    if importlib.util.find_spec("ruptures"):
        files = write_report(tmp_path / "a", ReportInput(
            figures(rng), KEY, None, None, commit="", history_path=tmp_path / "history.jsonl"))
        assert files.changes == {SLOW: [], STEADY: [], NEW: []} and files.change_lines == []
        assert "None found." in files.html.read_text(encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ruptures", None)    # `import ruptures` fails
    files = write_report(tmp_path / "b", ReportInput(
        figures(rng), KEY, None, None, commit="", history_path=tmp_path / "history.jsonl"))
    assert files.changes is None and files.change_lines == []
    assert "Not computed: change points need ruptures: pip install ruptures" in \
        files.html.read_text(encoding="utf-8")
    assert png_size(files.trend_png)[0] >= 800


def test_trend_marks_each_change(tmp_path: Path) -> None:
    from pytest_cosyvoice.report.plots import pyplot
    from pytest_cosyvoice.report.trends import mark_changes
    from pytest_cosyvoice.tracking.changepoints import ChangePoint

    plt = pyplot()
    fig, ax = plt.subplots()
    cps = [ChangePoint(SLOW, 5, None, None, 0.2, 0.26, 0.3, ["torch 2.9.1 -> 2.10.0"], 3, 0, 8),
           ChangePoint(SLOW, 9, None, None, 0.26, 0.2, -0.23, [], 8, 5, 12)]
    mark_changes(ax, cps)
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    # Between the sessions around each change: 1-based (3 + 5) / 2 + 1 and (8 + 9) / 2 + 1.
    assert sorted(ln.get_xdata()[0] for ln in dashed) == [5.0, 9.5]
    labels = sorted(" ".join(t.get_text().split()) for t in ax.texts)
    assert labels == ["+30 % torch 2.10.0", "-23 %"]    # shift, and the first change's new value
    segments = [seg for coll in ax.collections for seg in coll.get_segments()]
    # Three regimes: sessions 1-4 at 0.2, 6-9 at 0.26, 10-13 at 0.2.
    assert sorted((s[0][0], s[1][0], s[0][1]) for s in segments) == \
        [(1, 4, 0.2), (6, 9, 0.26), (10, 13, 0.2)]
    plt.close(fig)


def test_an_unreadable_history_is_named_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "history.jsonl"
    folder.mkdir()          # a folder where the file should be
    assert read_history(folder) == []
    (problem,) = history_problems(folder)
    assert problem.startswith(f"{folder}: cannot read the history (IsADirectoryError")
