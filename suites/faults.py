"""Faults injected at the loaded components, which every engine drives (`cosy_model.llm`, `.flow`,
`.hift`): never at a runtime's internals, so the same fault reaches our Runtime, upstream's class or a
team's own engine. Each injection is an instance attribute, removed afterwards."""
from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

TOKENS = 140          # forced speech tokens per request (speaker mode: 3+ chunks on any engine)
STALL_TIMEOUT_S = 1.0  # the fault tests' stall timeout (marker), kept short so a hang costs seconds
JOIN_TIMEOUT_S = 1.0   # the runtime's producer join, which the watchdog bound includes
STALL_S = 2.5         # how long the stalling LLM stops: past the stall timeout, within the watchdog


class InjectedFault(RuntimeError):
    """The exception a faulty component raises."""


@dataclass(frozen=True)
class Fault:
    id: str
    what: str                  # for messages: "the LLM raised after 70 of 140 tokens"
    call: str                  # "stream" or "synthesize"
    component: str = "llm"     # llm, flow, hift; "consumer" for a stream the caller closes
    at: int = 0                # llm: token index; flow/hift: 1-based call (chunk) number
    stall: bool = False
    expect_error: bool = True  # False: the call ends normally (the consumer closed it)
    pieces: bool = False       # text given as an iterator of pieces (the LLM's inference_bistream)


FAULTS = [
    Fault("llm-first-token-stream", "the LLM raised at its first token", "stream", at=0),
    Fault("llm-first-token-synthesize", "the LLM raised at its first token", "synthesize", at=0),
    Fault("llm-mid-stream", f"the LLM raised after {TOKENS // 2} of {TOKENS} tokens", "stream", at=TOKENS // 2),
    Fault("llm-mid-synthesize", f"the LLM raised after {TOKENS // 2} of {TOKENS} tokens", "synthesize",
          at=TOKENS // 2),
    Fault("llm-after-last-token-stream", "the LLM raised after its last token", "stream", at=TOKENS),
    Fault("llm-after-last-token-synthesize", "the LLM raised after its last token", "synthesize", at=TOKENS),
    Fault("llm-stall-stream", f"the LLM stalled {STALL_S:g} s after 40 tokens (stall timeout {STALL_TIMEOUT_S:g} s)",
          "stream", at=40, stall=True),
    Fault("llm-stall-synthesize", f"the LLM stalled {STALL_S:g} s after 40 tokens (stall timeout "
          f"{STALL_TIMEOUT_S:g} s)", "synthesize", at=40, stall=True),
    Fault("llm-bistream-mid-stream", f"the LLM (streamed text input) raised after {TOKENS // 2} of {TOKENS} tokens",
          "stream", at=TOKENS // 2, pieces=True),
    Fault("flow-chunk-2", "the flow raised on chunk 2", "stream", component="flow", at=2),
    Fault("vocoder-chunk-2", "the vocoder raised on chunk 2", "stream", component="hift", at=2),
    Fault("consumer-closes", "the consumer closed the stream after one chunk", "stream", component="consumer",
          expect_error=False),
]


def forced_tokens(version: int, n: int = TOKENS, seed: int = 0) -> list[int]:
    vocab = 4096 if version == 1 else 6561
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


def forced_llm(tokens: list[int], fault: Fault | None = None) -> Callable[..., Iterator[int]]:
    """An LLM stand-in yielding `tokens`; with an llm fault it raises (or stalls) at token `fault.at`."""
    def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
        for i, tok in enumerate(tokens):
            if fault is not None and fault.component == "llm" and i == fault.at:
                if fault.stall:
                    time.sleep(STALL_S)
                else:
                    raise InjectedFault(f"injected: {fault.what}")
            yield tok
        if fault is not None and fault.component == "llm" and not fault.stall and fault.at >= len(tokens):
            raise InjectedFault(f"injected: {fault.what}")
    return inference


def raising_on_call(fn: Callable[..., Any], k: int, what: str) -> Callable[..., Any]:
    """`fn`, except that its k-th call (1-based) raises InjectedFault."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == k:
            raise InjectedFault(f"injected: {what}")
        return fn(*args, **kwargs)
    return wrapper


@contextmanager
def injected(model: Any, fault: Fault | None, tokens: list[int]) -> Iterator[None]:
    """The model's LLM yields `tokens` (and the component of `fault` misbehaves) inside the block."""
    model.llm.inference = model.llm.inference_bistream = forced_llm(tokens, fault)
    target = getattr(model, fault.component, None) if fault is not None and fault.component in ("flow", "hift") \
        else None
    if target is not None:
        target.inference = raising_on_call(target.inference, fault.at, fault.what)
    try:
        yield
    finally:
        model.llm.__dict__.pop("inference", None)
        model.llm.__dict__.pop("inference_bistream", None)
        if target is not None:
            target.__dict__.pop("inference", None)


def live_tensors() -> int:
    import torch

    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which deprecated module proxies answer with a warning
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))
