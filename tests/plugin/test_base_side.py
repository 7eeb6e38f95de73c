"""The base side of an A/B session (issue #17): bad base options stop the session (exit 4) before any
test runs, naming the option and the value; `--cosy-base-python` runs the base engine in a worker
process of that interpreter, whose death or hang is a named `BaseSideError`, never a hung session.

The base interpreter here is this one (`sys.executable`): it has the package. The worker inherits the
environment, so modules the tests write are put on its path through PYTHONPATH."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_cosyvoice
from cosyvoice_runtime import InvalidInput
from pytest_cosyvoice.judging.checks import Recording
from pytest_cosyvoice.recording.attribution import Takes
from pytest_cosyvoice.recording.base_side import BaseSideError
from pytest_cosyvoice.recording.calls import WatchdogExpired
from pytest_cosyvoice.recording.other_interpreter import BaseStartError, WorkerBase, probe_python
from pytest_cosyvoice.recording.worker_frames import (
    FrameError,
    read_frame,
    recording_from_wire,
    recording_to_wire,
    write_frame,
)
from pytest_cosyvoice.tracking.stack import interpreter_versions

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

DATA = Path(pytest_cosyvoice.__file__).parent / "data"
PROMPT = {"prompt_wav": DATA / "prompt.wav", "prompt_text": (DATA / "prompt.txt").read_text(encoding="utf-8").strip()}
TEXT = "A short sentence for the base side."

USES_TTS = '''
def test_speaks(cosy_tts, cosy_prompt):
    list(cosy_tts.stream("Hello.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text))
'''

# Base engines with faults, written where the worker imports them from (PYTHONPATH).
ENGINES = '''
import io
import os
import signal
import sys
import time


class Wrapped:
    def __init__(self, runtime):
        self.runtime = runtime
        self.sample_rate = runtime.sample_rate
        self.version = runtime.version
        self.calls = 0

    def synthesize(self, text, **kwargs):
        return self.runtime.synthesize(text, **kwargs)


class Dying(Wrapped):
    def stream(self, text, **kwargs):
        self.calls += 1
        if self.calls == 2:
            print("dying engine: second call, exiting with status 3", file=sys.stderr, flush=True)
            os._exit(3)
        return self.runtime.stream(text, **kwargs)


class Sleeping(Wrapped):
    def stream(self, text, **kwargs):
        def chunks():
            time.sleep(3600)
            yield from ()
        return chunks()


class Stopping(Wrapped):
    def stream(self, text, **kwargs):
        print("stopping engine: stopping the whole process", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        return self.runtime.stream(text, **kwargs)


def dying(runtime):
    return Dying(runtime)


def sleeping(runtime):
    return Sleeping(runtime)


def stopping(runtime):
    return Stopping(runtime)


def broken(runtime):
    raise RuntimeError("no GPU slot for the base server")
'''


@pytest.fixture
def on_worker_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`faulty` (the engines above) importable here and in a worker started from here."""
    d = tmp_path / "worker_path"
    d.mkdir()
    (d / "faulty.py").write_text(ENGINES, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(d), os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.syspath_prepend(str(d))
    return d


def start(model: Path, engine: str = "fixed", **kw: float) -> WorkerBase:
    return WorkerBase.start(sys.executable, model=model, engine=engine, device="cpu", fp16=False,
                            stall_timeout_s=kw.pop("stall_timeout_s", 5.0), **kw)


def call(base: WorkerBase, kind: str, label: str, stall_timeout_s: float = 5.0, **kwargs: object) -> object:
    return base.call(kind, TEXT, {**PROMPT, **kwargs}, label=label, round=0, measured=True, seed=7,
                     stall_timeout_s=stall_timeout_s)


def run(pytester: pytest.Pytester, model: Path, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_ab=USES_TTS)
    return pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={model}", "--cosy-device=cpu",
                              "--cosy-no-report", *args)


def assert_usage_error(result: pytest.RunResult, *lines: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(list(lines))
    result.stdout.no_fnmatch_line("*test_speaks*")  # stopped before any test ran


# -- the frames -------------------------------------------------------------------------------------
def test_a_recording_crosses_the_wire_as_plain_values() -> None:
    import numpy as np

    rec = Recording(label="stream 0", kind="stream", sample_rate=24000,
                    chunks=[np.arange(4, dtype=np.float32), np.ones((2, 3), dtype=np.float32)], chunk_tokens=[25, 50],
                    arrivals_s=[0.1, 0.2], wall_s=0.2, thread_errors=["t: boom"], round=3, measured=False)
    buf = io.BytesIO()
    wire = recording_to_wire(rec)
    write_frame(buf, {"op": "recording", "fields": wire})
    # No numpy object inside: an interpreter with another numpy reads it.
    assert b"numpy" not in buf.getvalue()
    buf.seek(0)
    back = recording_from_wire({**read_frame(buf)["fields"], "a_field_of_a_newer_worker": 1})  # type: ignore[index]
    assert [c.tolist() for c in back.chunks] == [c.tolist() for c in rec.chunks]
    assert back.chunks[1].dtype == np.float32 and back.chunks[1].shape == (2, 3)
    assert (back.label, back.chunk_tokens, back.arrivals_s, back.thread_errors, back.round, back.measured) == \
        (rec.label, rec.chunk_tokens, rec.arrivals_s, rec.thread_errors, 3, False)
    assert read_frame(buf) is None  # the stream's clean end


def test_a_stream_cut_inside_a_frame_is_named() -> None:
    buf = io.BytesIO()
    write_frame(buf, {"op": "beat"})
    with pytest.raises(FrameError, match="ended inside a frame"):
        read_frame(io.BytesIO(buf.getvalue()[:-2]))
    with pytest.raises(FrameError, match="not a frame"):
        read_frame(io.BytesIO(b"Hello, world! printed by an engine"))


# -- bad base options: exit 4 before any test ------------------------------------------------------
@pytest.mark.parametrize(("make", "what"), [
    (lambda p: p / "nowhere", "no such directory"),
    (lambda p: (p / "file.txt", (p / "file.txt").write_text("x"))[0], "not a directory"),
    (lambda p: (p / "empty", (p / "empty").mkdir())[0], "not a CosyVoice model directory*"),
])
def test_a_base_model_naming_no_model_directory_is_a_usage_error(pytester: pytest.Pytester, fake_model: Path,
                                                                 make: object, what: str) -> None:
    bad = make(pytester.path)  # type: ignore[operator]
    result = run(pytester, fake_model, f"--cosy-base-model={bad}")
    assert_usage_error(result, f"*--cosy-base-model='{bad}': {what}")


def test_a_base_factory_that_raises_is_a_usage_error(pytester: pytest.Pytester, warm_tiny: Path,
                                                     on_worker_path: Path) -> None:
    result = run(pytester, warm_tiny, "--cosy-base-engine=faulty:broken")
    assert_usage_error(result, "*--cosy-base-engine='faulty:broken': the base engine cannot be built: "
                               "*RuntimeError: no GPU slot for the base server*")


def test_a_base_interpreter_that_does_not_exist_is_a_usage_error(pytester: pytest.Pytester,
                                                                  fake_model: Path) -> None:
    missing = pytester.path / "venv" / "bin" / "python"
    assert_usage_error(run(pytester, fake_model, f"--cosy-base-python={missing}"),
                       f"*--cosy-base-python='{missing}': no such file")


def test_a_base_interpreter_that_exits_at_start_is_a_usage_error(pytester: pytest.Pytester,
                                                                  fake_model: Path) -> None:
    script = pytester.path / "python"
    script.write_text("#!/bin/sh\necho 'python: cannot open shared object libpython' >&2\nexit 1\n")
    script.chmod(0o755)
    result = run(pytester, fake_model, f"--cosy-base-python={script}")
    assert_usage_error(result, f"*--cosy-base-python='{script}': does not run (exit status 1): "
                               "python: cannot open shared object libpython")


def test_a_base_interpreter_without_the_package_is_a_usage_error(pytester: pytest.Pytester, fake_model: Path,
                                                                 tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Which module it lacks depends on PYTHONPATH (a checkout on it brings pytest_cosyvoice's source,
    # not numpy and torch); either way the advice is the same.
    result = run(pytester, fake_model, f"--cosy-base-python={python}")
    assert_usage_error(result, f"*--cosy-base-python='{python}': lacks * (ModuleNotFoundError: *): "
                               "install pytest-cosyvoice into that environment")


def test_a_directory_given_as_the_base_interpreter_is_named(fake_model: Path, tmp_path: Path) -> None:
    with pytest.raises(BaseSideError, match="a directory, not an interpreter"):
        probe_python(str(tmp_path))


def test_a_base_factory_that_raises_inside_the_worker_is_a_usage_error(pytester: pytest.Pytester, warm_tiny: Path,
                                                                       on_worker_path: Path) -> None:
    result = run(pytester, warm_tiny, f"--cosy-base-python={sys.executable}", "--cosy-base-engine=faulty:broken")
    assert_usage_error(result, "*--cosy-base-engine='faulty:broken': the base engine cannot be built in the base "
                               f"interpreter (--cosy-base-python='{sys.executable}'): *RuntimeError: no GPU slot*")


# -- the worker ------------------------------------------------------------------------------------
def test_a_session_with_a_base_interpreter_starts_its_worker_before_the_tests(pytester: pytest.Pytester,
                                                                              warm_tiny: Path) -> None:
    pytester.makepyfile(test_ab='''
from pytest_cosyvoice.plugin import get_session

def test_base(request):
    base = get_session(request.config).host.base_side()
    print("BASE:", base.description)
    assert base.versions["pytest-cosyvoice"]
''', test_speaks=USES_TTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", f"--cosy-base-python={sys.executable}")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"*BASE: engine fixed, model {warm_tiny}, python {sys.executable} (torch *)"])


@pytest.fixture(scope="module")
def worker(tiny_v2_dir: Path) -> Iterator[WorkerBase]:
    base = start(tiny_v2_dir)
    yield base
    base.close()


@pytest.mark.parametrize("kind", ["stream", "synthesize"])
def test_the_worker_records_a_call_as_the_head_does(worker: WorkerBase, kind: str) -> None:
    rec = worker.call(kind, TEXT, PROMPT, label=f"{kind} 0", round=2, measured=True, seed=7, stall_timeout_s=5.0)
    assert rec.outcome == "ok", rec.error
    assert (rec.label, rec.kind, rec.round, rec.measured) == (f"{kind} 0", kind, 2, True)
    assert rec.chunks and rec.tokens > 0 and rec.wall_s > 0
    assert len(rec.arrivals_s) == len(rec.chunks) and rec.audio.dtype.name == "float32"
    assert rec.audio_s > 0 and rec.sample_rate == 24000
    # Seeded per request (the worker's Runtime takes seed=), unless the pair seeds both sides globally.
    assert rec.seed == 7
    globally = worker.call(kind, TEXT, PROMPT, label=f"{kind} 1", round=2, measured=True, seed=7,
                           stall_timeout_s=5.0, seed_per_request=False)
    assert globally.outcome == "ok" and globally.seed is None


def test_the_worker_says_what_its_engine_takes(worker: WorkerBase) -> None:
    # Its ready frame carries the engine's takes (the pairing drives both sides alike with them).
    everything = Takes(observer=True, stall_timeout_s=True, seed=True)
    assert worker.takes("stream") == worker.takes("synthesize") == everything
    assert worker.takes("nothing") is None


def test_the_workers_versions_are_its_interpreters(worker: WorkerBase) -> None:
    assert worker.versions["python"] == ".".join(map(str, sys.version_info[:3]))
    # One reader of an interpreter's stack: the worker's (another process of this python) is the head's.
    assert worker.versions == interpreter_versions()


def test_an_argument_error_in_the_worker_raises_as_it_would_in_process(worker: WorkerBase) -> None:
    with pytest.raises(InvalidInput, match="do not name a mode"):
        worker.call("stream", TEXT, {}, label="stream 9", round=0, measured=True, seed=None, stall_timeout_s=5.0)
    assert call(worker, "synthesize", "synthesize 9").outcome == "ok"  # type: ignore[attr-defined]


def test_a_worker_that_dies_mid_session_fails_its_calls_with_its_status(tiny_v2_dir: Path,
                                                                        on_worker_path: Path) -> None:
    base = start(tiny_v2_dir, "faulty:dying")
    try:
        assert call(base, "stream", "stream 0").outcome == "ok"  # type: ignore[attr-defined]
        with pytest.raises(BaseSideError) as died:
            call(base, "stream", "stream 1")
        text = str(died.value)
        assert text.startswith(f"base side (python {sys.executable}): the worker died during stream 1: ")
        assert "exit status 3" in text
        assert "dying engine: second call, exiting with status 3" in text
        with pytest.raises(BaseSideError) as later:  # every later call: the same error
            call(base, "synthesize", "synthesize 0")
        assert str(later.value) == text
    finally:
        base.close()


def test_an_engine_that_stops_producing_in_the_worker_is_its_watchdog(tiny_v2_dir: Path,
                                                                        on_worker_path: Path) -> None:
    base = start(tiny_v2_dir, "faulty:sleeping")
    try:
        with pytest.raises(WatchdogExpired, match=r"^base side \(python .*\): cosy_tts stream 0: nothing produced"):
            call(base, "stream", "stream 0", stall_timeout_s=0.5)
        assert call(base, "synthesize", "synthesize 0").outcome == "ok"  # type: ignore[attr-defined]
    finally:
        base.close()


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_worker_that_stops_as_a_whole_is_killed_within_the_bound(tiny_v2_dir: Path, on_worker_path: Path) -> None:
    base = start(tiny_v2_dir, "faulty:stopping", slack_s=1.0)
    try:
        with pytest.raises(BaseSideError) as hung:
            call(base, "stream", "stream 0", stall_timeout_s=0.5)
        text = str(hung.value)
        assert "the worker sent nothing for " in text and " during stream 0" in text
        assert "killed it, killed by signal SIGKILL" in text
        assert "stopping engine: stopping the whole process" in text
    finally:
        base.close()


def test_a_failed_start_names_its_stage(tiny_v2_dir: Path, on_worker_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BaseStartError) as engine:
        start(tiny_v2_dir, "faulty:broken")
    assert engine.value.stage == "engine" and "no GPU slot for the base server" in str(engine.value)
    not_a_model = tmp_path / "m"
    not_a_model.mkdir()
    with pytest.raises(BaseStartError) as model:
        start(not_a_model)
    assert model.value.stage == "model"


def test_a_closed_worker_serves_no_more_calls(tiny_v2_dir: Path) -> None:
    base = start(tiny_v2_dir)
    base.close()
    base.close()  # twice is harmless
    with pytest.raises(BaseSideError, match="closed"):
        call(base, "synthesize", "synthesize 0")


def test_the_base_interpreter_does_not_import_the_working_directorys_package(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The session's directory is often the head's checkout: its pytest_cosyvoice must not shadow the
    # base interpreter's own.
    shadow = tmp_path / "pytest_cosyvoice"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the head checkout was imported')\n")
    monkeypatch.chdir(tmp_path)
    assert probe_python(sys.executable)["pytest-cosyvoice"]
