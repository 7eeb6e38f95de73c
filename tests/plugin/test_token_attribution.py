"""Tokens are counted per call, also when calls overlap: each concurrent stream's recording gets the
tokens its own LLM run generated, on our runtime (its observer), through upstream's class (per
upstream request uuid, its observer) and on a foreign engine without `observer=` (counted at the LLM,
by thread lineage, with the test's own `llm.inference` assigned after the counter was installed), and
the complete check judges them."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

INNER = '''
import itertools
import threading

import pytest
from pytest_cosyvoice.faults import forced_tokens

LENGTHS = itertools.cycle([60, 130])
LOCK = threading.Lock()


def varying(*args, **kwargs):
    with LOCK:
        n = next(LENGTHS)
    yield from forced_tokens(2, n, seed=n)


@pytest.mark.streaming(prebuffer_ms=600000, max_gap_ms=600000)
def test_two_concurrent_streams(cosy_tts, cosy_model, monkeypatch):
    monkeypatch.setattr(cosy_model.llm, "inference", varying)
    barrier = threading.Barrier(2)
    errors = []

    def run():
        try:
            barrier.wait()
            list(cosy_tts.stream("x", speaker=cosy_tts.speakers[0]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    recs = cosy_tts.recordings
    assert sorted(r.generated_tokens for r in recs) == [60, 130], [r.generated_tokens for r in recs]
    assert all(r.generated_tokens == r.tokens for r in recs), [(r.generated_tokens, r.chunk_tokens) for r in recs]
    # The ids come from an engine's observer (its on_end); a foreign engine reports none.
    want = {n: forced_tokens(2, n, seed=n) for n in (60, 130)}
    observed = cosy_tts.attribution.takes["stream"].observer
    assert all(r.speech_tokens == (want[r.tokens] if observed else None) for r in recs)
'''


FOREIGN = '''
class Served:
    """A serving wrapper whose methods take **kwargs only: cosy_tts passes it no observer."""

    def __init__(self, runtime):
        self.runtime, self.sample_rate, self.version = runtime, runtime.sample_rate, runtime.version

    def stream(self, text, **kwargs):
        return self.runtime.stream(text, **kwargs)

    def synthesize(self, text, **kwargs):
        return self.runtime.synthesize(text, **kwargs)
'''


@pytest.mark.parametrize("engine", ["fixed", "upstream", "served:Served"])
def test_concurrent_streams_get_their_own_token_counts(pytester: pytest.Pytester, warm_tiny: Path,
                                                       engine: str) -> None:
    pytester.makepyfile(test_inner=INNER, served=FOREIGN)
    pytester.syspathinsert()
    start, hook = threading.Thread.start, threading.excepthook
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", f"--cosy-engine={engine}",
                                "-o", "cosy_allowed_warnings=autocast\n__array_wrap__")
    if engine == "upstream" and result.parseoutcomes().get("skipped"):
        pytest.skip("the installed upstream class is unusable here")
    result.assert_outcomes(passed=1)
    # The foreign engine's adapter was installed for the (in-process) session only.
    assert threading.Thread.start is start and threading.excepthook is hook
