"""Baseline storage: round trip, merge, refusal of broken, foreign or schema-1 files, OS errors
named by path, concurrent writers, and run key detection."""
from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import pytest

from cosyvoice_runtime import files
from pytest_cosyvoice.judging.measurements import TestFigures as Figures
from pytest_cosyvoice.tracking.baseline import SCHEMA, Baseline, BaselineError, BaselineStore
from pytest_cosyvoice.tracking.health import Health
from pytest_cosyvoice.tracking.probes import CalibrationSample
from pytest_cosyvoice.tracking.runkey import RunKey, model_identity
from tests.runtime.test_files import FakeMsvcrt

KEY = RunKey(runner="nvidia-h100-80gb-hbm3", device_kind="cuda", dtype="fp16", engine="fixed",
             model_name="CosyVoice2-0.5B", model_hash="0123456789")
STACK = {"torch": "2.9.1+cu128", "cuda": "12.8", "driver": "570.124.06", "commit": "abc123"}


def fig(nodeid: str, rtf: list[float]) -> Figures:
    return Figures(nodeid=nodeid, rtf=rtf, first_chunk_ms=[300.0 + v for v in rtf],
                       worst_gap_ms=[5.0] * len(rtf), audio_s=3.5)


def test_round_trip(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "baselines")
    assert store.load(KEY) is None
    health = Health([CalibrationSample(0.02, 0.03), CalibrationSample(0.021, 0.031)], others_cpu=0.01, steal=0.0)
    path = store.save(KEY, [fig("suites/a.py::t1", [0.2, 0.21, 0.22]),
                            fig("suites/a.py::t2", [0.5, 0.6])], commit="abc123", stack=STACK, health=health)
    assert path == tmp_path / "baselines" / KEY.runner / f"{KEY.config_slug()}.json"
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA == 2 and doc["key"] == KEY.to_dict()

    base = store.load(KEY)
    assert isinstance(base, Baseline) and base.key == KEY
    t1 = base.tests["suites/a.py::t1"]
    assert t1.rtf == [0.2, 0.21, 0.22] and t1.first_chunk_ms == [300.2, 300.21, 300.22]
    assert t1.worst_gap_ms == [5.0] * 3 and t1.audio_s == 3.5
    saved = base.session_of("suites/a.py::t1")
    assert saved is not None and saved.commit == "abc123" and saved.stack == STACK
    assert saved.health.calibration_s == pytest.approx(0.051) and saved.health.others_cpu == 0.01
    assert base.latest() == saved
    assert base.samples("rtf") == {"suites/a.py::t1": [0.2, 0.21, 0.22],
                                   "suites/a.py::t2": [0.5, 0.6]}
    assert not list(path.parent.glob("*.tmp")), "temporary files must not be left behind"


def test_save_merges_and_skips_unmeasured(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.save(KEY, [fig("t1", [0.2] * 3), fig("t2", [0.3] * 3)], commit="c1")
    store.save(KEY, [fig("t2", [0.4] * 3), fig("t3", [0.5] * 3), fig("errored", [])], commit="c2")
    base = store.load(KEY)
    assert base is not None
    assert sorted(base.tests) == ["t1", "t2", "t3"]
    assert base.tests["t1"].rtf == [0.2] * 3 and base.session_of("t1").commit == "c1"
    assert base.tests["t2"].rtf == [0.4] * 3 and base.session_of("t2").commit == "c2"
    assert len(base.sessions) == 2
    store.save(KEY, [fig("t1", [0.2] * 3)], commit="c3")
    assert [s.commit for s in store.load(KEY).sessions.values()] == ["c2", "c3"], "unreferenced sessions dropped"


def test_other_key_is_a_separate_file(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    other = RunKey(**{**KEY.to_dict(), "dtype": "fp32"})
    store.save(KEY, [fig("t1", [0.2] * 3)])
    assert store.load(other) is None
    assert store.path_for(other) != store.path_for(KEY)


def test_corrupt_file_raises_and_is_not_overwritten(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": 2, "key": {', encoding="utf-8")   # a torn write by some tool
    with pytest.raises(BaselineError, match="not valid JSON") as err:
        store.load(KEY)
    assert str(path) in str(err.value) and "schema" in str(err.value)
    with pytest.raises(BaselineError, match="move .* away"):
        store.save(KEY, [fig("t1", [0.2] * 3)])
    assert path.read_text(encoding="utf-8") == '{"schema": 2, "key": {'


@pytest.mark.parametrize("doc, message", [
    ({"tests": {}}, 'no "schema"'),
    ([1, 2, 3], 'no "schema"'),
    ({"schema": 99, "key": KEY.to_dict(), "tests": {}}, "unknown schema 99"),
    ({"schema": 1, "key": {"device_name": "x"}, "tests": {}},
     "schema-1 baseline.*re-save it with --cosy-save-baseline"),
    ({"schema": 2, "key": {"device_name": "x"}, "tests": {}}, 'bad "key"'),
    ({"schema": 2, "key": {**KEY.to_dict(), "runner": "nvidia-a10"}, "tests": {}},
     "another key .*runner: file has 'nvidia-a10'"),
    ({"schema": 2, "key": KEY.to_dict(), "tests": {"t": {"rtf": "fast"}}}, "list of numbers"),
    ({"schema": 2, "key": KEY.to_dict(), "sessions": {"s": {"health": {"calibration": [{"device_s": 1}]}}},
      "tests": {}}, "python_s"),
])
def test_foreign_file_raises(tmp_path: Path, doc: object, message: str) -> None:
    store = BaselineStore(tmp_path)
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(BaselineError, match=message) as err:
        store.load(KEY)
    assert str(path) in str(err.value)
    before = path.read_text(encoding="utf-8")
    with pytest.raises(BaselineError):
        store.save(KEY, [fig("t1", [0.2] * 3)])
    assert path.read_text(encoding="utf-8") == before


def _writer(directory: str, prefix: str, rounds: int) -> None:
    store = BaselineStore(directory)
    for i in range(rounds):
        store.save(KEY, [fig(f"{prefix}{i}", [0.1 + i / 100] * 3)], commit=prefix)


def test_two_writers_at_once_keep_each_others_tests(tmp_path: Path) -> None:
    # Each process saves 15 times into the same key; without the lock, a read-modify-write
    # from one would overwrite the other's freshly added test.
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), p, 15)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    base = BaselineStore(tmp_path).load(KEY)
    assert base is not None
    assert sorted(base.tests) == sorted([f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)])


def test_saving_takes_the_windows_lock_where_fcntl_is_missing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fcntl (Windows) the read-modify-write still runs under a lock: msvcrt's, polled
    while another holder has it, released after the write."""
    fake = FakeMsvcrt(busy_for=2)
    monkeypatch.setattr(files, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    path = BaselineStore(tmp_path).save(KEY, [fig("t1", [0.2] * 3)])
    assert [mode for mode, _ in fake.calls] == [fake.LK_NBLCK] * 3 + [fake.LK_UNLCK] and not fake.held
    assert (path.parent / (path.name + ".lock")).is_file()
    base = BaselineStore(tmp_path).load(KEY)
    assert base is not None and sorted(base.tests) == ["t1"]


def _model_dir(root: Path) -> Path:
    d = root / "CosyVoice2-0.5B"
    d.mkdir()
    (d / "cosyvoice2.yaml").write_text("sample_rate: 24000\n")
    (d / "llm.pt").write_bytes(b"\0" * 100)
    (d / "flow.pt").write_bytes(b"\0" * 50)
    (d / "campplus.onnx").write_bytes(b"\0" * 10)
    return d


def test_model_identity_follows_config_and_weights(tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    name, h0 = model_identity(d)
    assert name == "CosyVoice2-0.5B"
    (d / "hift.pt").write_bytes(b"\0" * 7)
    h1 = model_identity(d)[1]
    (d / "cosyvoice2.yaml").write_text("sample_rate: 22050\n")
    h2 = model_identity(d)[1]
    (d / "llm.pt").write_bytes(b"\0" * 101)
    h3 = model_identity(d)[1]
    assert len({h0, h1, h2, h3}) == 4
    (d / "notes.txt").write_text("unrelated")
    assert model_identity(d)[1] == h3


def test_schema_1_files_are_reported_not_used_and_never_touched(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    old = tmp_path / "amd-epyc_cpu_torch2.9.1_fp32_fixed_m-46408825.json"
    text = json.dumps({"schema": 1, "key": {"device_name": "AMD EPYC"}, "tests": {"t1": {"rtf": [0.2]}}})
    old.write_text(text, encoding="utf-8")
    assert store.load(KEY) is None
    assert store.legacy_files() == [old]
    store.save(KEY, [fig("t1", [0.3] * 3)])
    assert old.read_text(encoding="utf-8") == text
    assert store.legacy_files() == [old] and store.runners() == [KEY.runner]


def test_unreadable_and_unwritable_places_are_named(tmp_path: Path) -> None:
    # bytes that are not UTF-8
    store = BaselineStore(tmp_path / "b")
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe{not utf-8")
    with pytest.raises(BaselineError, match="not UTF-8") as err:
        store.load(KEY)
    assert str(path) in str(err.value)
    with pytest.raises(BaselineError):
        store.save(KEY, [fig("t1", [0.2] * 3)])
    assert path.read_bytes() == b"\xff\xfe{not utf-8"
    # the baseline directory is a file
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BaselineError, match="cannot create the baseline folder") as err:
        BaselineStore(blocker).save(KEY, [fig("t1", [0.2] * 3)])
    assert str(blocker) in str(err.value)
    with pytest.raises(BaselineError, match="cannot read"):
        BaselineStore(blocker).load(KEY)


def test_a_suite_importing_the_data_classes_gets_no_collection_warning(pytester: pytest.Pytester) -> None:
    # A user's test module that imports TestFigures / TestBaseline (to read figures or baselines) must
    # not have pytest try to collect them as test classes (a PytestCollectionWarning each).
    pytester.makepyfile(test_user="""
        from pytest_cosyvoice.judging.measurements import TestFigures
        from pytest_cosyvoice.tracking.baseline import TestBaseline

        def test_reads_figures():
            assert TestFigures("t", rtf=[0.2]).rtf == TestBaseline("t", rtf=[0.2]).rtf
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::pytest.PytestCollectionWarning")
    result.assert_outcomes(passed=1)
    assert "PytestCollectionWarning" not in result.stdout.str()
