"""A pytest plugin that injects slowdowns and defects through the loaded model's components
(`llm.inference`, `flow.inference`, `hift.inference`), which every engine shares. Used by
benchmarks/gate_truth.py: `PYTHONPATH=benchmarks pytest suites -p inject` with

    COSY_INJECT="slow:llm=0.2,flow=0.2,hift=0.2"   each component takes 20 % longer
    COSY_INJECT="defect:NAME"                      one of DEFECTS or QUALITY_DEFECTS below

DEFECTS break the stream (benchmarks/gate_truth.py); QUALITY_DEFECTS keep it fast and gap-free but
change the sound or the tokens (benchmarks/quality_truth.py, the quality gate of issue 18). Each is set
as instance attributes on the loaded components, which `apply_defect` returns a way to take out again.

Slowdowns wait for the given share of the component's own measured time (per LLM token, per flow
or vocoder call) after it returns: the call takes that much longer. A busy-wait was tried first and
dropped: a pure-Python spin holds the GIL, so "+10 %" on each component slowed the whole stream by
30-57 % (measured), mostly by starving the other thread, not by the stated amount.
"""
from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from cosyvoice_runtime.token2wav import CausalRenderer, OverlapRenderer
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
QUALITY_DEFECTS = {
    "vocoder-noise-20": "white noise at -20 dB of the vocoder output's RMS, added to each vocoder call's output",
    "vocoder-noise-30": "white noise at -30 dB of the vocoder output's RMS, added to each vocoder call's output",
    "joins-zeroed": "the last 20 ms before every chunk join of the emitted stream zeroed (v2/v3)",
    "joins-click": "a click at every chunk join: the emitted sample before the join moved by 0.5 full scale (v2/v3)",
    "flow-mel-perturbed": "gaussian noise of 0.1 x the mel's standard deviation added to the flow's output mel",
    "llm-top-k": "the LLM's sampling top_k changed (25 -> 5 on the default configs)",
    "speaker-swapped": "the flow (and v1's LLM) receive the negated speaker embedding",
    "flow-fp16": "the flow's output mel rounded through torch.float16",
}
NOISE_DB = {"vocoder-noise-20": 20.0, "vocoder-noise-30": 30.0}
MEL_NOISE = 0.1         # flow-mel-perturbed: noise std / the call's mel std
JOIN_ZEROS_S = 0.020    # joins-zeroed: seconds of exact zeros before each join
CLICK = 0.5             # joins-click: the step, in full scale
TOP_K = 5               # llm-top-k: the top_k put in place
NOISE_SEED = 18         # the defects' numpy generator: their own, never the global RNGs
KEPT: list[Any] = []   # the "tensor-kept" defect's leak


class Patches:
    """Instance attributes set on components, and how to take them out: `restore()` puts back what
    the instance itself held (or deletes the attribute, so the class's method shows through again)."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, bool, Any]] = []

    def set(self, obj: Any, attr: str, value: Any) -> None:
        own = attr in vars(obj)
        self._undo.append((obj, attr, own, vars(obj).get(attr)))
        setattr(obj, attr, value)

    def restore(self) -> None:
        for obj, attr, own, old in reversed(self._undo):
            if own:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)
        self._undo.clear()


def _tail_mel_frames(version: int) -> int:
    """Mel frames of vocoder output a streamed chunk holds back for the next chunk's cross-fade: the
    renderer's own default (token2wav), read so that a change there moves the joins here too. v3
    re-vocodes from the start and holds nothing back."""
    if version == 3:
        return 0
    cls = OverlapRenderer if version == 1 else CausalRenderer
    return int(inspect.signature(cls.__init__).parameters["mel_cache_len"].default)


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


def apply_defect(name: str, model: Any) -> Patches:
    """Injects the defect `name` (a key of DEFECTS or QUALITY_DEFECTS) into the loaded Runtime `model`'s
    components; the returned Patches' `restore()` takes it out. UsageError for an unknown name or one
    that this model cannot take."""
    if name in QUALITY_DEFECTS:
        return _quality_defect(name, model)
    patches = Patches()
    llm, flow, hift = model.llm, model.flow, model.hift
    hift_fn, flow_fn, llm_fn = hift.inference, flow.inference, llm.inference
    calls = {"n": 0}

    if name == "vocoder-nan":
        def hift_nan(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            speech = speech.clone()
            speech[..., speech.shape[-1] // 2] = float("nan")
            return speech, rest
        patches.set(hift, "inference", hift_nan)
    elif name == "vocoder-short":
        def hift_short(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            return speech[..., : speech.shape[-1] // 2], rest
        patches.set(hift, "inference", hift_short)
    elif name == "flow-futurewarning":
        def flow_warn(*a: Any, **k: Any) -> Any:
            warnings.warn("injected: flow.inference() argument 'x' is deprecated", FutureWarning, stacklevel=2)
            return flow_fn(*a, **k)
        patches.set(flow, "inference", flow_warn)
    elif name == "llm-stall":
        # The model's own tokens, with a stop before the 11th.
        patches.set(llm, "inference",
                    faulty_llm(llm_fn, Fault(at=10, stall_s=float(os.environ.get("COSY_INJECT_STALL_S", "6")))))
    elif name == "thread-left":
        def flow_thread(*a: Any, **k: Any) -> Any:
            threading.Thread(target=time.sleep, args=(4.0,), name="injected-leftover", daemon=True).start()
            return flow_fn(*a, **k)
        patches.set(flow, "inference", flow_thread)
    elif name == "tensor-kept":
        def hift_keep(*a: Any, **k: Any) -> Any:
            speech, rest = hift_fn(*a, **k)
            KEPT.append(speech.clone())
            return speech, rest
        patches.set(hift, "inference", hift_keep)
    elif name == "chunk-late":
        def hift_late(*a: Any, **k: Any) -> Any:
            # A request's first vocoder call has an empty source cache (v1/v2 HiFT): count from there.
            source = k.get("cache_source")
            calls["n"] = 0 if source is None or source.shape[-1] == 0 else calls["n"] + 1
            if calls["n"] == 1:
                time.sleep(5.0)
            return hift_fn(*a, **k)
        patches.set(hift, "inference", hift_late)
    else:
        raise pytest.UsageError(f"COSY_INJECT=defect:{name}: expected one of {', '.join([*DEFECTS, *QUALITY_DEFECTS])}")
    return patches


def _quality_defect(name: str, model: Any) -> Patches:
    """The QUALITY_DEFECTS: each changes the sound (or the tokens) and nothing of the timing."""
    llm, flow, hift = model.llm, model.flow, model.hift
    hift_fn, flow_fn, llm_fn = hift.inference, flow.inference, llm.inference
    version, sample_rate = int(model.version), int(model.sample_rate)
    patches = Patches()
    # One generator per injection, behind a lock: concurrent requests render in several threads.
    rng, rng_lock = np.random.default_rng(NOISE_SEED), threading.Lock()

    def gaussian(like: torch.Tensor, std: float) -> torch.Tensor:
        with rng_lock:
            draw = rng.standard_normal(tuple(like.shape))
        return torch.from_numpy(draw * std).to(device=like.device, dtype=like.dtype)

    if name in NOISE_DB:
        scale = 10.0 ** (-NOISE_DB[name] / 20.0)

        def hift_noise(*a: Any, **k: Any) -> Any:
            speech, *rest = hift_fn(*a, **k)
            rms = float(speech.double().pow(2).mean().sqrt())
            return (speech + gaussian(speech, rms * scale), *rest)
        patches.set(hift, "inference", hift_noise)
    elif name in ("joins-zeroed", "joins-click"):
        _join_defect(name, patches, flow, hift, version, sample_rate)
    elif name == "flow-mel-perturbed":
        def flow_perturbed(*a: Any, **k: Any) -> Any:
            mel, *rest = flow_fn(*a, **k)
            return (mel + gaussian(mel, MEL_NOISE * float(mel.double().std())), *rest)
        patches.set(flow, "inference", flow_perturbed)
    elif name == "flow-fp16":
        def flow_fp16(*a: Any, **k: Any) -> Any:
            mel, *rest = flow_fn(*a, **k)
            return (mel.to(torch.float16).to(mel.dtype), *rest)
        patches.set(flow, "inference", flow_fp16)
    elif name == "llm-top-k":
        sampling = getattr(llm, "sampling", None)
        if not isinstance(sampling, functools.partial) or "top_k" not in sampling.keywords:
            raise pytest.UsageError(f"COSY_INJECT=defect:{name}: the LLM's `sampling` is {sampling!r}; expected a "
                                    "functools.partial with a top_k keyword (upstream's ras_sampling)")
        if sampling.keywords["top_k"] == TOP_K:
            raise pytest.UsageError(f"COSY_INJECT=defect:{name}: the LLM already samples with top_k={TOP_K}")
        patches.set(llm, "sampling", functools.partial(sampling.func, *sampling.args,
                                                       **{**sampling.keywords, "top_k": TOP_K}))
    elif name == "speaker-swapped":
        def swapped(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
            def call(*a: Any, **k: Any) -> Any:
                if "embedding" not in k:
                    raise RuntimeError(f"injected speaker-swapped: {what}.inference was called without an "
                                       "`embedding=` keyword; cannot swap the speaker")
                return fn(*a, **{**k, "embedding": -k["embedding"]})
            return call
        patches.set(flow, "inference", swapped(flow_fn, "flow"))
        if version == 1:  # v2/v3's LLM takes no speaker embedding (the prompt carries the voice)
            patches.set(llm, "inference", swapped(llm_fn, "llm"))
    return patches


def _join_defect(name: str, patches: Patches, flow: Any, hift: Any, version: int, sample_rate: int) -> None:
    """joins-zeroed / joins-click at the joins of the emitted stream.

    Each streamed chunk is one vocoder call (v1, v2 and v3 alike; token2wav). v1/v2 hold the last
    `_tail_mel_frames` of each call's output back and cross-fade it into the next chunk's head, so the
    samples just before a join are those just before that held-back tail: changed there, they reach the
    stream as they are, and nothing else moves. v3 re-vocodes from the start and emits the new samples
    whole: the join is its output's end. Only a chunk that is not the stream's last has a join after it:
    v2 says so in the flow's `finalize=` (read here per thread, just before the vocoder call it feeds),
    v3 in the vocoder's. v1 says it nowhere, so it is refused."""
    if version not in (2, 3):
        raise pytest.UsageError(f"COSY_INJECT=defect:{name}: v2 and v3 models only (v1's calls do not say which "
                                f"chunk is the last); this model is v{version}")
    flow_fn, hift_fn = flow.inference, hift.inference
    tail_frames = _tail_mel_frames(version)
    zeros = round(JOIN_ZEROS_S * sample_rate)
    last = threading.local()    # this thread's latest flow call: finalize or not

    def flow_seen(*a: Any, **k: Any) -> Any:
        last.finalize = bool(k.get("finalize", True))
        return flow_fn(*a, **k)

    def hift_joined(*a: Any, **k: Any) -> Any:
        speech, *rest = hift_fn(*a, **k)
        final = bool(k.get("finalize", True)) if version == 3 else getattr(last, "finalize", True)
        if final:
            return (speech, *rest)
        mel = k["speech_feat"] if "speech_feat" in k else a[0]
        n, frames = speech.shape[-1], mel.shape[-1]
        if n % frames:
            raise RuntimeError(f"injected {name}: vocoder output of {n} samples for {frames} mel frames is not a "
                               "whole number of samples per frame")
        join = n - tail_frames * (n // frames)     # the index after the chunk's last emitted sample
        out = speech.clone()
        if name == "joins-zeroed":
            out[..., max(0, join - zeros): join] = 0.0
        else:
            v = out[..., join - 1]
            out[..., join - 1] = torch.where(v >= 0, v - CLICK, v + CLICK)   # moved by CLICK, never past full scale
        return (out, *rest)

    if version == 2:
        patches.set(flow, "inference", flow_seen)
    patches.set(hift, "inference", hift_joined)


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
        apply_defect(what, model)
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
