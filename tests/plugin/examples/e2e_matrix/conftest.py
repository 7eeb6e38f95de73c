"""The end-to-end matrix's inner session (copied by tests/plugin/test_e2e.py): fault injectors and a
dump of the recorded figures."""
import json
import warnings

import pytest

from pytest_cosyvoice.faults import Fault, forced_llm, forced_tokens
from pytest_cosyvoice.plugin import get_session

TOKENS = forced_tokens(2, 140, seed=7)   # speaker mode: chunks of 25, 50, 65


def forced(fail_after=None, stall_after=None, warn=False):
    """An LLM stand-in yielding TOKENS (the real flow and HiFT render them)."""
    if fail_after is not None:
        inference = forced_llm(TOKENS, fault=Fault(at=fail_after, message="injected LLM failure"))
    elif stall_after is not None:
        inference = forced_llm(TOKENS, fault=Fault(at=stall_after, stall_s=3.0))
    else:
        inference = forced_llm(TOKENS)
    if not warn:
        return inference

    def warning(*args, **kwargs):
        # Warned here, so the clean check's message names this file as the warning's origin.
        for i, tok in enumerate(inference(*args, **kwargs)):
            if i in (3, 4):
                warnings.warn("injected deprecation", FutureWarning)   # from the producer thread
            yield tok
    return warning


def on_call(fn, k, action):
    """Wraps fn so that action(result or None) runs around its k-th call (1-based)."""
    calls = []
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            return action(fn, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper


@pytest.fixture
def speaker(cosy_tts):
    return {"speaker": cosy_tts.speakers[0]}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    figures, streams = get_session(session.config).results()
    out = {"figures": {f.nodeid: f.to_json() for f in figures},
           "streams": [{"nodeid": s.nodeid, "label": s.trace.label, "chunks": len(s.trace.chunk_samples),
                        "outcome": s.trace.outcome, "failed": s.failed, "click_joins": s.trace.click_joins,
                        "audio": 0 if s.audio is None else int(s.audio.size)} for s in streams]}
    (session.config.rootpath / "figures.json").write_text(json.dumps(out, indent=1, sort_keys=True))
