"""`--cosy-engine upstream` vs `fixed` on the same suite: upstream's orchestration fails the clean
check (its torch.cuda.amp.autocast FutureWarning) and its hang when the LLM thread dies is ended by
the watchdog; our runtime passes both."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFTEST = '''
import json
import pytest
from pytest_cosyvoice.faults import Fault, forced_llm, forced_tokens
from pytest_cosyvoice.plugin import get_session


def failing_llm(after):
    return forced_llm(forced_tokens(2, 140, seed=7), fault=Fault(at=after, message="injected LLM failure"))


def pytest_sessionfinish(session):
    figures, _ = get_session(session.config).results()
    (session.config.rootpath / "figures.json").write_text(json.dumps({f.nodeid: f.to_json() for f in figures}))
'''

SUITE = '''
import dataclasses
import pytest
from cosyvoice_runtime import StreamError
from conftest import failing_llm


@pytest.mark.streaming(prebuffer_ms=2000)
def test_stream_is_clean(cosy_tts):
    list(cosy_tts.stream("Hello there, this is a test of streaming speech.", speaker=cosy_tts.speakers[0]))


@pytest.mark.stall_timeout(1)
def test_llm_death_reaches_the_caller(cosy_tts, cosy_model, monkeypatch):
    monkeypatch.setattr(cosy_model, "settings", dataclasses.replace(cosy_model.settings, join_timeout_s=0.5))
    monkeypatch.setattr(cosy_model.llm, "inference", failing_llm(after=40))
    with pytest.raises(StreamError):
        list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))
'''


def run_suite(pytester: pytest.Pytester, model: Path, engine: str) -> tuple[pytest.RunResult, dict]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", f"--cosy-model={model}", "--cosy-device=cpu",
                                f"--cosy-engine={engine}")
    path = pytester.path / "figures.json"
    return result, json.loads(path.read_text()) if path.exists() else {}


def test_fixed_and_upstream_on_the_same_suite(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    fixed, fixed_figs = run_suite(pytester, warm_tiny, "fixed")
    fixed.assert_outcomes(passed=2)
    assert fixed_figs["test_suite.py::test_stream_is_clean"]["failed_checks"] == []
    assert fixed_figs["test_suite.py::test_stream_is_clean"]["engine"] == "fixed"

    upstream, up_figs = run_suite(pytester, warm_tiny, "upstream")
    if upstream.parseoutcomes().get("skipped"):
        upstream.stdout.fnmatch_lines(["SKIPPED *--cosy-engine upstream: the installed upstream class is unusable: *"])
        pytest.skip("the installed upstream class is unusable here (the inner run skipped with the reason)")
    upstream.assert_outcomes(failed=2)
    fig = up_figs["test_suite.py::test_stream_is_clean"]
    assert "clean" in fig["failed_checks"] and fig["engine"] == "upstream"
    upstream.stdout.fnmatch_lines_random([
        "*clean: FutureWarning: `torch.cuda.amp.autocast(args...)` is deprecated. *cosyvoice/cli/model.py:*",
        # The hang ends by the watchdog (stall timeout 1 s + the runtime's 0.5 s join + 1 s margin).
        "*cosy_tts stream 0: nothing produced for * s (stall timeout 1 s) after * chunk(s); waited * s in all; "
        "reader thread 'cosy-tts-reader-*' abandoned inside the engine",
    ])


def test_unusable_upstream_class_skips_with_the_reason(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    pytester.makeconftest("""
        import cosyvoice_runtime.upstream as up

        def pytest_configure(config):
            up.CLASS_NAMES[2] = "NoSuchModel"   # as if the installed upstream predates CosyVoice2

        def pytest_unconfigure(config):
            up.CLASS_NAMES[2] = "CosyVoice2Model"
    """)
    pytester.makepyfile(test_one="def test_uses_engine(cosy_tts):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-engine=upstream")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1] *: --cosy-engine upstream: the installed upstream class is unusable: "
                                 "the installed cosyvoice.cli.model has no NoSuchModel (v2 model)*"])
