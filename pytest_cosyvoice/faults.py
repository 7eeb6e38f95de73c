"""Forced tokens and injected faults, for tests of a streaming engine (this project's tests, the gate
suites, the benchmarks, or a team's own suite).

The stand-ins replace methods of the loaded components (`model.llm.inference`, `.flow.inference`,
`.hift.inference`), which every engine drives, never a runtime's internals: the same fault reaches
this project's Runtime, upstream's class or a team's own engine. An injection is an instance
attribute; `injected` removes it afterwards, so the class's method shows through again.

    model.llm.inference = forced_llm(forced_tokens(model.version, 140))       # exactly these tokens
    model.llm.inference = forced_llm(tokens, fault=Fault(at=40))              # raises before token 40
    model.llm.inference = forced_llm(tokens, fault=Fault(at=30, stall_s=2))   # stops 2 s before token 30
    model.llm.inference = forced_llm(tokens, delay_s=0.001)                   # a slower LLM
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

COMPONENTS = ("llm", "flow", "hift")


class InjectedFault(RuntimeError):
    """The exception a faulty component raises."""


@dataclass(frozen=True)
class Fault:
    """One component misbehaving once.

    llm: at token index `at` (0: before the first; `len(tokens)` or more: after the last) it raises
    InjectedFault(message), or with `stall_s` > 0 stops that long (there, or after the last token)
    and then goes on.
    flow, hift: its `at`-th call (1-based) raises InjectedFault(message); `stall_s` does not apply.
    """

    component: str = "llm"
    at: int = 0
    stall_s: float = 0.0
    message: str = "injected fault"
    # Ends a stall early once set: a test can stall "until I say so" however slow the machine is.
    release: threading.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise ValueError(f"component={self.component!r}: expected one of {', '.join(COMPONENTS)}")
        if self.component != "llm" and self.at < 1:
            raise ValueError(f"at={self.at!r}: a {self.component} fault names its call, counted from 1")
        if self.stall_s and self.component != "llm":
            raise ValueError(f"stall_s={self.stall_s!r}: only the llm can stall (component={self.component!r})")


def forced_tokens(version: int, n: int, seed: int = 0) -> list[int]:
    """`n` seeded random speech tokens of a CosyVoice `version` model's vocabulary (v1: 4096, v2/v3: 6561)."""
    import numpy as np

    vocab = 4096 if version == 1 else 6561
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


def _misbehaving(tokens: Iterable[int], fault: Fault | None, delay_s: float) -> Iterator[int]:
    n = 0
    for n, tok in enumerate(tokens, 1):
        if fault is not None and n - 1 == fault.at:
            _misbehave(fault)
        if delay_s:
            time.sleep(delay_s)
        yield tok
    if fault is not None and fault.at >= n:
        _misbehave(fault)


def _misbehave(fault: Fault) -> None:
    if not fault.stall_s:
        raise InjectedFault(fault.message)
    # A stuck decode step; it ends, so the thread can be joined afterwards.
    if fault.release is not None:
        fault.release.wait(fault.stall_s)
    else:
        time.sleep(fault.stall_s)


def forced_llm(tokens: list[int], *, fault: Fault | None = None,
               delay_s: float = 0.0) -> Callable[..., Iterator[int]]:
    """An `llm.inference` (or `inference_bistream`) stand-in yielding exactly `tokens` (the real flow and
    vocoder render them), sleeping `delay_s` before each, misbehaving as the llm `fault` says."""
    if fault is not None and fault.component != "llm":
        raise ValueError(f"{fault!r}: forced_llm takes an llm fault; inject flow/hift faults with injected()")

    def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
        yield from _misbehaving(tokens, fault, delay_s)
    return inference


def faulty_llm(inference: Callable[..., Iterable[int]], fault: Fault) -> Callable[..., Iterator[int]]:
    """The model's own `inference`, misbehaving as the llm `fault` says (its tokens are not forced)."""
    if fault.component != "llm":
        raise ValueError(f"{fault!r}: faulty_llm takes an llm fault")

    def wrapped(*args: Any, **kwargs: Any) -> Iterator[int]:
        yield from _misbehaving(inference(*args, **kwargs), fault, 0.0)
    return wrapped


def raising_on_call(fn: Callable[..., Any], k: int, message: str) -> Callable[..., Any]:
    """`fn`, except that its k-th call (1-based, counted across threads) raises InjectedFault(message)."""
    calls = [0]
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == k:
            raise InjectedFault(message)
        return fn(*args, **kwargs)
    return wrapper


@contextmanager
def injected(model: Any, tokens: list[int], fault: Fault | None = None) -> Iterator[None]:
    """Inside the block the model's LLM yields `tokens` (text given as a string or as pieces) and the
    component of `fault` misbehaves; everything is put back afterwards."""
    llm_fault = fault if fault is not None and fault.component == "llm" else None
    model.llm.inference = model.llm.inference_bistream = forced_llm(tokens, fault=llm_fault)
    target = getattr(model, fault.component) if fault is not None and llm_fault is None else None
    if fault is not None and target is not None:
        target.inference = raising_on_call(target.inference, fault.at, fault.message)
    try:
        yield
    finally:
        model.llm.__dict__.pop("inference", None)
        model.llm.__dict__.pop("inference_bistream", None)
        if target is not None:
            target.__dict__.pop("inference", None)
