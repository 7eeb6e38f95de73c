"""With pytest-xdist each worker loads its own model and its recorded figures travel to the
controller: `-n 2` yields the same set of recorded figures as a serial run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xdist")

CONFTEST = '''
import json, os
import pytest
from pytest_cosyvoice.faults import forced_llm as forced, forced_tokens
from pytest_cosyvoice.plugin import get_session


@pytest.fixture
def forced_llm(cosy_model, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", forced(forced_tokens(2, 140, seed=7)))


@pytest.fixture
def pid_file(cosy_model, pytestconfig):
    # Which process used a model: each xdist worker loads its own.
    (pytestconfig.rootpath / f"pid-{os.getpid()}").touch()


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    cosy = get_session(session.config)
    figures, streams = cosy.results()
    health = cosy.health()
    (session.config.rootpath / "figures.json").write_text(json.dumps({
        "health": None if health is None else health.to_json(),
        "figures": [f.to_json() for f in figures],
        "streams": [{"nodeid": s.nodeid, "label": s.trace.label, "chunk_samples": s.trace.chunk_samples,
                     "outcome": s.trace.outcome, "failed": s.failed,
                     "audio": 0 if s.audio is None else int(s.audio.size)}
                    for s in streams]}))
'''

SUITE = '''
import pytest


@pytest.mark.streaming(prebuffer_ms=1000)
def test_forced_stream(cosy_tts, forced_llm, pid_file):
    list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))


@pytest.mark.rtf(max=100.0, warmup=1, repeat=2)
def test_synthesize_rounds(cosy_tts, pid_file):
    cosy_tts.synthesize("Hello there.", speaker=cosy_tts.speakers[0])


@pytest.mark.first_chunk(max_ms=0.001)
def test_first_chunk_fails(cosy_tts, forced_llm, pid_file):
    list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))


@pytest.mark.streaming(prebuffer_ms=1000)
def test_two_streams(cosy_tts, forced_llm, pid_file):
    for _ in range(2):
        list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))
'''


def shape(data: dict[str, Any]) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """What must agree between runs: everything except the timings themselves."""
    figures = {(f["nodeid"], f["outcome"], tuple(f["failed_checks"]), len(f["rtf"]), len(f["first_chunk_ms"]),
                len(f["worst_gap_ms"]), f["engine"]) for f in data["figures"]}
    streams = {(s["nodeid"], s["label"], s["outcome"], s["failed"], s["audio"] > 0,
                tuple(s["chunk_samples"]) if "forced" in s["nodeid"] or "two" in s["nodeid"] else None)
               for s in data["streams"]}
    return figures, streams


def test_two_workers_record_the_same_figures_as_a_serial_run(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    args = ["-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu"]

    serial = pytester.runpytest(*args)
    serial.assert_outcomes(passed=3, failed=1)
    serial_data = json.loads((pytester.path / "figures.json").read_text())
    (pytester.path / "figures.json").unlink()

    parallel = pytester.runpytest_subprocess(*args, "-n", "2", "--dist=load", timeout=300)
    parallel.assert_outcomes(passed=3, failed=1)
    parallel_data = json.loads((pytester.path / "figures.json").read_text())

    assert shape(parallel_data) == shape(serial_data)
    # Streams kept for the report: every failing one and the first passing one per test.
    assert len(parallel_data["figures"]) == 4 and len(parallel_data["streams"]) == 4
    # Each worker loaded its own model: pid files from two processes besides the serial one.
    assert len(list(pytester.path.glob("pid-*"))) == 3
    # The controller pools the workers' calibration and model-reference samples: at least the one
    # each worker took at its load, with every component's share.
    for data, least in ((serial_data, 1), (parallel_data, 2)):
        health = data["health"]
        assert health["errors"] == [] and len(health["reference"]) == len(health["calibration"]) >= least
        assert {k: len(v) for k, v in health["reference_parts"].items()} == dict.fromkeys(
            ("llm", "flow", "hift"), len(health["reference"]))
