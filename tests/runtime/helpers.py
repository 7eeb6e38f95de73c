"""Shared helpers for the runtime tests: a prompt recording, forced token sources, fault wrappers."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


def write_voice(path: Path, seconds: float = 2.5, rate: int = 16000, seed: int = 0) -> Path:
    """A voiced-speech-like signal: a gliding harmonic tone with syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t)) ** 2
    x = 0.3 * x * env / np.max(np.abs(x)) + 0.003 * rng.standard_normal(t.size)
    sf.write(path, x.astype(np.float32), rate)
    return path


def forced(tokens: list[int], delay_s: float = 0.0) -> Callable[..., Iterator[int]]:
    """An LLM inference stand-in that yields exactly ``tokens`` (the real flow/HiFT render them)."""

    def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
        for tok in tokens:
            if delay_s:
                time.sleep(delay_s)
            yield tok

    return inference


def raising_after(n: int, tokens: list[int]) -> Callable[..., Iterator[int]]:
    def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
        yield from tokens[:n]
        raise RuntimeError(f"injected LLM failure after {n} tokens")

    return inference


def stalling_after(n: int, tokens: list[int], stall_s: float) -> Callable[..., Iterator[int]]:
    def inference(*args: Any, **kwargs: Any) -> Iterator[int]:
        yield from tokens[:n]
        time.sleep(stall_s)  # a stuck decode step; it ends, so the thread can be joined afterwards
        yield from tokens[n:]

    return inference


def failing_on_call(fn: Callable[..., Any], k: int, exc: Exception) -> Callable[..., Any]:
    """Wraps a bound method so that its k-th call (1-based) raises ``exc``."""
    calls = {"n": 0}
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == k:
            raise exc
        return fn(*args, **kwargs)

    return wrapper


def llm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cosyvoice-llm-") and t.is_alive()]
