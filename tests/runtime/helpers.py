"""Shared helpers for the runtime tests: a prompt recording and the live producer threads (forced tokens and
faults come from pytest_cosyvoice.faults)."""
from __future__ import annotations

import threading
from pathlib import Path

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


def llm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cosyvoice-llm-") and t.is_alive()]
