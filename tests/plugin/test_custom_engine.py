"""Bring your own engine: `--cosy-engine package.module:factory`. The engine here is the test's own
(a thin serving wrapper around the Runtime, as a team would write one); bad values stop the session
with exit code 4 before any test runs, naming the value and what is missing.

Note: the sessions that use the custom engine record figures, so the end of the session computes a
run key with the engine's name in it (`pytest_cosyvoice.tracking.runkey`)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

ENGINE = '''
import threading


class Served:
    """A serving wrapper: counts requests, hands the Runtime's chunks on unchanged."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.sample_rate = runtime.sample_rate
        self.version = runtime.version
        self.requests = 0
        self._lock = threading.Lock()

    def stream(self, text, **kwargs):
        it = self.runtime.stream(text, **kwargs)  # argument errors raise at the call, as from the Runtime
        with self._lock:
            self.requests += 1
        return it

    def synthesize(self, text, **kwargs):
        with self._lock:
            self.requests += 1
        return self.runtime.synthesize(text, **kwargs)


def build(runtime):
    return Served(runtime)


def broken(runtime):
    raise RuntimeError("no GPU slot for the server")


class OnlyStream:
    sample_rate = 24000

    def stream(self, text, **kwargs):
        yield from ()


def incomplete(runtime):
    return OnlyStream()


not_callable = 42
'''

USES_ENGINE = '''
import pytest
from myengines import Served

RAN = []


@pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
def test_streams_through_the_custom_engine(cosy_tts, cosy_prompt):
    assert isinstance(cosy_tts.engine, Served)
    chunks = list(cosy_tts.stream("Hello there.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text))
    syn = cosy_tts.synthesize("Hello there.", prompt_wav=cosy_prompt.wav, prompt_text=cosy_prompt.text)
    assert chunks and syn.audio.size and cosy_tts.engine.requests == 2
    assert [r.outcome for r in cosy_tts.recordings] == ["ok", "ok"]
    assert all(r.generated_tokens == r.tokens > 0 for r in cosy_tts.recordings)


@pytest.mark.rtf(max=1000, repeat=3)
def test_timed_through_the_custom_engine(cosy_tts):
    cosy_tts.synthesize("Hello there.", speaker=cosy_tts.speakers[0])


def test_side_effect():
    open("ran", "w").close()
'''


def run(pytester: pytest.Pytester, model: Path, engine: str, *extra: str) -> pytest.RunResult:
    pytester.makepyfile(myengines=ENGINE)
    pytester.syspathinsert()
    return pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={model}", "--cosy-device=cpu",
                              "--cosy-no-report", f"--cosy-engine={engine}", *extra)


def test_a_custom_engine_is_what_cosy_tts_calls(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makepyfile(test_engine=USES_ENGINE)
    result = run(pytester, warm_tiny, "myengines:build")
    result.assert_outcomes(passed=3)
    # `Served` takes no observer=: its tokens are counted by the foreign adapter, which swaps the LLM's
    # class; the model reference beside every calibration still runs the LLM's own method (it failed
    # with "'property' object is not callable" from the first calibration after the adapter's install).
    assert_reference_ran_with_every_calibration(result)


def assert_reference_ran_with_every_calibration(result: pytest.RunResult) -> None:
    [line] = [line for line in result.stdout.lines if line.startswith("machine: ")]
    assert "model reference error" not in line, line
    found = re.search(r"calibration: [\d.]+ ms \(median of (\d+)\).*; model reference: [\d.]+ ms \(median of "
                      r"(\d+);", line)
    assert found is not None and found.group(1) == found.group(2) and int(found.group(1)) >= 3, line


def test_the_engine_value_may_come_from_the_ini(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makeini("[pytest]\ncosy_engine = myengines:broken\n")
    pytester.makepyfile(test_engine=USES_ENGINE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu")
    # No module on the path yet: the ini value is named as the source.
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("ERROR: ini cosy_engine='myengines:broken': module 'myengines' does not import: "
            "ModuleNotFoundError: No module named 'myengines'") in result.stderr.lines


@pytest.mark.parametrize("engine, message", [
    ("no_such_engines:build", "module 'no_such_engines' does not import: ModuleNotFoundError: "
                              "No module named 'no_such_engines'"),
    ("myengines:nothing", "module 'myengines' has no attribute 'nothing'"),
    ("myengines:not_callable", "'not_callable' is a int, expected a callable factory(runtime)"),
    ("myengines", "expected fixed, upstream or package.module:factory"),
], ids=["no-module", "no-attribute", "not-callable", "no-factory"])
def test_a_factory_that_cannot_be_found_stops_at_configure(pytester: pytest.Pytester, fake_model: Path,
                                                           engine: str, message: str) -> None:
    # Checked with the options: no model is loaded (the fake one would not load).
    pytester.makepyfile(test_engine=USES_ENGINE)
    result = run(pytester, fake_model, engine)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --cosy-engine={engine!r}: {message}" in result.stderr.lines


def test_a_module_that_raises_on_import_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(badengines="import numpy\nraise RuntimeError('needs a licence server')\n")
    pytester.syspathinsert()
    result = pytester.runpytest("--cosy-engine=badengines:build")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("ERROR: --cosy-engine='badengines:build': module 'badengines' does not import: "
            "RuntimeError: needs a licence server") in result.stderr.lines


@pytest.mark.parametrize("engine, message", [
    ("myengines:broken", "the factory raised RuntimeError: no GPU slot for the server"),
    ("myengines:incomplete", "the factory returned a OnlyStream that lacks synthesize, version "
                             "(an engine needs stream, synthesize, sample_rate, version)"),
], ids=["factory-raises", "missing-members"])
def test_a_bad_engine_stops_before_any_test_runs(pytester: pytest.Pytester, warm_tiny: Path, engine: str,
                                                 message: str) -> None:
    pytester.makepyfile(test_engine=USES_ENGINE)
    result = run(pytester, warm_tiny, engine)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --cosy-engine={engine!r}: {message}" in result.stderr.lines
    assert not (pytester.path / "ran").exists()
    assert "passed" not in result.stdout.str()


def test_tests_that_do_not_use_cosy_tts_never_build_the_engine(pytester: pytest.Pytester, fake_model: Path) -> None:
    # The factory would raise, but nothing asks for cosy_tts: no model is loaded, nothing is built.
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = run(pytester, fake_model, "myengines:broken")
    result.assert_outcomes(passed=1)


FORK = '''
from cosyvoice_runtime.upstream import UpstreamEngine


class SharedHop:
    """Upstream's class with the defect of its later revisions: the chunk hop grows on the shared
    object (25 -> 50 -> 100 tokens) instead of per request, so every later request starts big."""

    def __init__(self, runtime):
        self.inner = UpstreamEngine(runtime)
        self.sample_rate, self.version = runtime.sample_rate, runtime.version

    def stream(self, text, **kwargs):
        chunks = self.inner.stream(text, **kwargs)

        def growing():
            for chunk in chunks:
                self.inner.model.token_hop_len = min(100, self.inner.model.token_hop_len * 2)
                yield chunk
        return growing()

    def synthesize(self, text, **kwargs):
        return self.inner.synthesize(text, **kwargs)


def build(runtime):
    return SharedHop(runtime)
'''


def test_the_concurrency_suite_names_a_fork_with_a_shared_schedule(tmp_path: Path, warm_tiny: Path) -> None:
    """The gate's own concurrency test on a team's fork: the shared hop is named, with both schedules."""
    import os
    import subprocess
    import sys

    from .test_gate_suites import ROOT, WIDE_OPEN

    (tmp_path / "myfork.py").write_text(FORK)
    env = {**os.environ, **WIDE_OPEN, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env.pop("COSY_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "test_concurrency.py"), "-p", "no:cacheprovider", "-q",
         "-rs", f"--cosy-model={warm_tiny}", "--cosy-device=cpu", "--cosy-no-report", "--cosy-engine=myfork:build",
         "-o", "cosy_allowed_warnings=autocast\n__array_wrap__"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if "installed upstream class is unusable" in out:
        pytest.skip("the installed upstream class is unusable here")
    assert proc.returncode == 1, out[-4000:]
    assert "1 failed" in out and "per chunk" in out and "differ from solo" in out, out[-4000:]


def test_the_documented_example_engine_runs(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugin.md").read_text(encoding="utf-8")
    section = doc[doc.index("## The engine under test"):doc.index("## What the gate suites check")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "--cosy-engine myserving.engines:build" in code
    pkg = pytester.mkpydir("myserving")
    (pkg / "engines.py").write_text(code)
    pytester.syspathinsert()
    pytester.makepyfile(test_doc='''
        import pytest

        @pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
        def test_example(cosy_tts):
            assert type(cosy_tts.engine).__name__ == "Admitted"
            assert list(cosy_tts.stream("Hello there.", speaker=cosy_tts.speakers[0]))
            assert cosy_tts.synthesize("Hello there.", speaker=cosy_tts.speakers[0]).audio.size
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-engine=myserving.engines:build")
    result.assert_outcomes(passed=1)


def test_the_built_in_engines_follow_the_protocol(warm_tiny: Path) -> None:
    import cosyvoice_runtime
    from pytest_cosyvoice.engine import Engine, build, missing_members

    rt = cosyvoice_runtime.load(warm_tiny, device="cpu")
    assert isinstance(build("fixed", rt), Engine) and missing_members(rt) == []
    try:
        up = build("upstream", rt)
    except Exception as e:  # noqa: BLE001 - EngineUnavailable: the skip names why
        pytest.skip(f"upstream engine unusable here: {e}")
    assert isinstance(up, Engine) and missing_members(up) == []
    assert missing_members(object()) == ["stream", "synthesize", "sample_rate", "version"]


RESAMPLING = '''
import numpy as np
from cosyvoice_runtime import Chunk, Synthesis


class Upsampled:
    """Serves the Runtime's audio at twice its rate (each sample repeated), as an engine that resamples
    for its clients would: the recording holds this engine's rate, not the model's."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.sample_rate = 2 * runtime.sample_rate
        self.version = runtime.version

    def _up(self, chunk):
        return Chunk(audio=np.repeat(chunk.audio, 2), sample_rate=self.sample_rate, index=chunk.index,
                     tokens=chunk.tokens)

    def stream(self, text, **kwargs):
        return (self._up(c) for c in self.runtime.stream(text, **kwargs))

    def synthesize(self, text, **kwargs):
        syn = self.runtime.synthesize(text, **kwargs)
        chunks = [self._up(c) for c in syn.chunks]
        return Synthesis(audio=np.concatenate([c.audio for c in chunks]), sample_rate=self.sample_rate,
                         chunks=chunks, stats=syn.stats)


def build(runtime):
    return Upsampled(runtime)
'''


def test_an_engine_that_resamples_is_judged_at_its_own_rate(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    # The complete check's samples per token follow the engine's rate (the recording's), not the model's.
    pytester.makepyfile(upsampled=RESAMPLING)
    pytester.syspathinsert()
    pytester.makepyfile(test_up='''
        import pytest

        @pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
        def test_up(cosy_tts, cosy_model):
            assert cosy_tts.sample_rate == 2 * cosy_model.sample_rate
            list(cosy_tts.stream("Hello there.", speaker=cosy_tts.speakers[0]))
            cosy_tts.synthesize("Hello there.", speaker=cosy_tts.speakers[0])
            assert all(r.generated_tokens == r.tokens > 0 for r in cosy_tts.recordings)
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "--cosy-engine=upsampled:build")
    result.assert_outcomes(passed=1)
