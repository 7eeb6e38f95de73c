"""Faults in the components, through the engine under test (`cosy_tts`): the call ends with an error
within the watchdog bound, leaves no thread and no per-request state, and the next request succeeds
with complete audio. Every problem is listed, not only the first: a hang does not hide the state it
left, a silent partial result names the thread that died."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cosyvoice_runtime import InvalidInput, StreamError
from pytest_cosyvoice.faults import InjectedFault, forced_tokens, injected
from pytest_cosyvoice.judging import checks
from pytest_cosyvoice.recording.calls import WatchdogExpired

from .faults import FAULTS, JOIN_TIMEOUT_S, STALL_TIMEOUT_S, TOKENS, FaultCase, live_tensors
from .inputs import voice_kwargs


@pytest.fixture
def short_join(cosy_model: Any) -> Iterator[None]:
    """The runtime joins its producer for 1 s at the end of a failed request (the watchdog's bound
    counts it): a hang then costs seconds, not the default 5 s join plus margin."""
    saved = cosy_model.settings.join_timeout_s
    cosy_model.configure(join_timeout_s=JOIN_TIMEOUT_S)
    yield
    cosy_model.configure(join_timeout_s=saved)


def _text(fault: FaultCase | None) -> Any:
    return iter(["Streamed ", "text, ", "in pieces."]) if fault is not None and fault.pieces else "x"


def _call(cosy_tts: Any, fault: FaultCase | None, kw: dict[str, Any]) -> tuple[int, BaseException | None]:
    """Runs one request as the fault wants it; (chunks received, the error it ended with or None)."""
    n = 0
    try:
        if fault is not None and fault.call == "synthesize":
            return len(cosy_tts.synthesize("x", **kw).chunks), None
        it = cosy_tts.stream(_text(fault), **kw)
        for _ in it:
            n += 1
            if fault is not None and fault.component == "consumer":
                it.close()
                break
        return n, None
    except (Exception, WatchdogExpired) as e:  # noqa: BLE001 - judged by the caller
        return n, e


def _judge_error(fault: FaultCase, engine_is_ours: bool, got: BaseException | None, chunks: int,
                 rec: checks.Recording) -> list[str]:
    if isinstance(got, WatchdogExpired):  # the engine never gave up
        return [f"hang: {fault.what} and the engine never ended the call: {got}"]
    if not fault.expect_error:
        return [f"the closed stream raised {type(got).__name__}: {got}"] if got is not None else []
    if got is None:
        died = f"; meanwhile a thread died: {'; '.join(rec.thread_errors)}" if rec.thread_errors else ""
        return [f"silent result: {fault.what}, yet the {fault.call} call returned {chunks} chunk(s), "
                f"{rec.audio_s:.2f} s of audio, and no error{died}"]
    if engine_is_ours:
        allowed: tuple[type[BaseException], ...] = (StreamError,) if fault.component == "llm" \
            else (StreamError, InjectedFault)
        if not isinstance(got, allowed):
            return [f"{fault.what}: the runtime raised {type(got).__name__}: {got}; expected "
                    f"{' or '.join(c.__name__ for c in allowed)}"]
    return []


@pytest.mark.stall_timeout(STALL_TIMEOUT_S)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_engine_recovers_from_a_fault(fault: FaultCase, cosy_tts: Any, cosy_model: Any, cosy_prompt: Any,
                                      short_join: None) -> None:
    # Streamed text input needs a prompt (sft mode does not take it).
    kw = {"prompt_wav": cosy_prompt.wav, "prompt_text": cosy_prompt.text} if fault.pieces \
        else voice_kwargs(cosy_model, cosy_prompt)
    tokens = forced_tokens(cosy_model.version, TOKENS)
    ours = cosy_tts.engine is cosy_model
    if fault.pieces:
        if cosy_tts.version == 1:
            pytest.skip("streamed text input (inference_bistream) needs a v2/v3 model")
        try:
            with injected(cosy_model, tokens):
                list(cosy_tts.stream(_text(fault), **kw))
        except (InvalidInput, TypeError) as e:
            pytest.skip(f"the engine does not take text as an iterator of pieces: {type(e).__name__}: {e}")
    with injected(cosy_model, tokens):
        _call(cosy_tts, None, kw)  # warm: prompt caches and allocator, so what is left after is the fault's
    tensors = live_tensors()

    with injected(cosy_model, tokens, fault.fault):
        chunks, got = _call(cosy_tts, fault, kw)
    rec = cosy_tts.recordings[-1]
    problems = _judge_error(fault, ours, got, chunks, rec)
    # The message and class are all that is kept: the exception's frames would hold tensors.
    del got
    problems += [f"thread died: {err}" for err in rec.thread_errors]
    problems += [f"thread left: {p}" for p in checks.check_tidy(rec)]
    left = live_tensors() - tensors
    if left > 0:
        problems.append(f"state left: {left} more live tensors after the failed call than before it")
    active = getattr(cosy_tts.engine, "active_requests", None)
    if isinstance(active, int) and active:
        problems.append(f"state left: the engine still holds {active} request(s)")

    with injected(cosy_model, tokens):
        n, after = _call(cosy_tts, None, kw)
    nxt = cosy_tts.recordings[-1]
    if after is not None:
        problems.append(f"next request failed after {n} chunk(s): {type(after).__name__}: {after}")
    else:
        problems += [f"next request incomplete: {p}" for p in checks.check_complete(nxt)]
    if problems:
        pytest.fail(f"{fault.what} ({fault.call}):\n  " + "\n  ".join(problems), pytrace=False)
