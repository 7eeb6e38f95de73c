"""A pytest plugin that injects slowdowns and defects through the loaded model's components
(`llm.inference`, `flow.inference`, `hift.inference`), which every engine shares. Used by
benchmarks/gate_truth.py: `PYTHONPATH=benchmarks pytest suites -p inject` with

    COSY_INJECT="slow:llm=0.2,flow=0.2,hift=0.2"   each component takes 20 % longer
    COSY_INJECT="defect:NAME"                      one of DEFECTS below

Slowdowns wait for the given share of the component's own measured time (per LLM token, per flow
or vocoder call) after it returns: the call takes that much longer. A busy-wait was tried first and
dropped: a pure-Python spin holds the GIL, so "+10 %" on each component slowed the whole stream by
30-57 % (measured), mostly by starving the other thread, not by the stated amount.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_cosyvoice.faults import Fault, faulty_llm

DEFECTS = {
    "vocoder-nan": "NaN in the vocoder's output",
    "vocoder-short": "vocoder output cut to half its length",
    "flow-futurewarning": "the flow raises a FutureWarning",
    "llm-stall": "the LLM stalls past the stall timeout",
    "thread-left": "the flow starts a thread that outlives the request",
    "tensor-kept": "the vocoder keeps a tensor per request",
    "chunk-late": "the vocoder delivers each request's second chunk 5 s late",
}
KEPT: list[Any] = []   # the "tensor-kept" defect's leak


def _slow_call(fn: Callable[..., Any], share: float) -> Callable[..., Any]:
    def slowed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        time.sleep(share * (time.perf_counter() - t))
        return out
    return slowed


def _slow_tokens(fn: Callable[..., Iterator[int]], share: float) -> Callable[..., Iterator[int]]:
    def slowed(*args: Any, **kwargs: Any) -> Iterator[int]:
        it = iter(fn(*args, **kwargs))
        while True:
            t = time.perf_counter()
            try:
                tok = next(it)
            except StopIteration:
                return
            time.sleep(share * (time.perf_counter() - t))
            yield tok
    return slowed


def _defect(name: str, model: Any) -> None:
    llm, flow, hift = model.llm, model.flow, model.hift
    hift_fn, flow_fn, llm_fn = hift.inference, flow.inference, llm.inference
    calls = {"n": 0}

    if name == "vocoder-nan":
        def hift_nan(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            speech = speech.clone()
            speech[..., speech.shape[-1] // 2] = float("nan")
            return speech, rest
        hift.inference = hift_nan
    elif name == "vocoder-short":
        def hift_short(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            return speech[..., : speech.shape[-1] // 2], rest
        hift.inference = hift_short
    elif name == "flow-futurewarning":
        def flow_warn(*a: Any, **k: Any) -> Any:
            warnings.warn("injected: flow.inference() argument 'x' is deprecated", FutureWarning, stacklevel=2)
            return flow_fn(*a, **k)
        flow.inference = flow_warn
    elif name == "llm-stall":
        # The model's own tokens, with a stop before the 11th.
        llm.inference = faulty_llm(llm_fn, Fault(at=10, stall_s=float(os.environ.get("COSY_INJECT_STALL_S", "6"))))
    elif name == "thread-left":
        def flow_thread(*a: Any, **k: Any) -> Any:
            threading.Thread(target=time.sleep, args=(4.0,), name="injected-leftover", daemon=True).start()
            return flow_fn(*a, **k)
        flow.inference = flow_thread
    elif name == "tensor-kept":
        def hift_keep(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            KEPT.append(speech.clone())
            return speech, rest
        hift.inference = hift_keep
    elif name == "chunk-late":
        def hift_late(*a: Any, **k: Any) -> Any:
            # A request's first vocoder call has an empty source cache (v1/v2 HiFT): count from there.
            source = k.get("cache_source")
            calls["n"] = 0 if source is None or source.shape[-1] == 0 else calls["n"] + 1
            if calls["n"] == 1:
                time.sleep(5.0)
            return hift_fn(*a, **k)
        hift.inference = hift_late
    else:
        raise pytest.UsageError(f"COSY_INJECT=defect:{name}: expected one of {', '.join(DEFECTS)}")


@pytest.fixture(scope="session", autouse=True)
def _cosy_inject(request: pytest.FixtureRequest) -> None:
    spec = os.environ.get("COSY_INJECT", "")
    if not spec:
        return
    model = request.getfixturevalue("cosy_model")
    if getattr(model, "_cosy_injected", False):
        return      # once per loaded model, however often the fixture is set up again
    model._cosy_injected = True
    kind, _, what = spec.partition(":")
    if kind == "defect":
        _defect(what, model)
        return
    if kind != "slow":
        raise pytest.UsageError(f"COSY_INJECT={spec!r}: expected slow:... or defect:NAME")
    for part in what.split(","):
        name, _, share_text = part.partition("=")
        share = float(share_text)
        if name == "llm":
            model.llm.inference = _slow_tokens(model.llm.inference, share)
        elif name in ("flow", "hift"):
            comp = getattr(model, name)
            comp.inference = _slow_call(comp.inference, share)
        else:
            raise pytest.UsageError(f"COSY_INJECT={spec!r}: unknown component {name!r} (llm, flow, hift)")
