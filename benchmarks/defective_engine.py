"""The speaking engine with a quality defect in what it emits, for benchmarks/quality_truth.py.

The speaking engine drives none of the model's components, so benchmarks/inject.py's defects (set on
`llm`/`flow`/`hift`) never reach it. This factory builds it and applies COSY_INJECT="defect:NAME" to
the chunks it emits instead, with the same meaning at its own chunk boundaries:

    COSY_INJECT=defect:joins-click python -m pytest suites --cosy-engine benchmarks.defective_engine:build

Without COSY_INJECT it is the plain speaking engine. A defect name that needs the model's components
(flow, LLM) is refused with the names that apply.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.speaking_engine import SpeakingEngine

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

# The names and meanings of benchmarks/inject.py's QUALITY_DEFECTS, at the emitted chunks.
DEFECTS = {
    "vocoder-noise-20": "white noise at -20 dB of each emitted chunk's RMS",
    "vocoder-noise-30": "white noise at -30 dB of each emitted chunk's RMS",
    "joins-zeroed": "the last 20 ms before every chunk join zeroed",
    "joins-click": "a click at every chunk join: the sample before the join moved by 0.5 full scale",
    "speaker-swapped": "espeak-ng speaks with another voice (variant f3: another speaker, same words)",
}
NOISE_DB = {"vocoder-noise-20": 20.0, "vocoder-noise-30": 30.0}
JOIN_ZEROS_S = 0.020
CLICK = 0.5
SWAPPED_VARIANT = "f3"
NOISE_SEED = 18


class DefectiveEngine(SpeakingEngine):
    """The speaking engine whose emitted chunks carry `defect` (a key of DEFECTS)."""

    def __init__(self, runtime: Runtime, defect: str) -> None:
        if defect not in DEFECTS:
            raise ValueError(f"defect {defect!r} does not apply to the speaking engine (it drives none of the "
                             f"model's components); expected one of {', '.join(DEFECTS)}")
        super().__init__(runtime, variant=SWAPPED_VARIANT if defect == "speaker-swapped" else None)
        self.defect = defect
        # Its own generator, never the global RNG; requests may run in several threads.
        self._rng, self._rng_lock = np.random.default_rng(NOISE_SEED), threading.Lock()

    def split(self, audio: np.ndarray, *, speed: float = 1.0, streaming: bool = True) -> list[tuple[np.ndarray, int]]:
        """The speaking engine's chunks with the defect applied; a join follows every chunk but the last."""
        pieces = super().split(audio, speed=speed, streaming=streaming)
        out = []
        for i, (piece, tokens) in enumerate(pieces):
            joined = i < len(pieces) - 1
            out.append((self._damaged(piece, joined), tokens))
        return out

    def _damaged(self, piece: np.ndarray, joined: bool) -> np.ndarray:
        x = piece.astype(np.float64)
        if self.defect in NOISE_DB:
            rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
            with self._rng_lock:
                noise = self._rng.standard_normal(x.size)
            # Clipped to full scale as a vocoder's output is: the defect is noise, not clipping.
            x = np.clip(x + noise * rms * 10.0 ** (-NOISE_DB[self.defect] / 20.0), -1.0, 1.0)
        elif self.defect == "joins-zeroed" and joined:
            x[-round(JOIN_ZEROS_S * self.sample_rate):] = 0.0
        elif self.defect == "joins-click" and joined and x.size:
            x[-1] = x[-1] - CLICK if x[-1] >= 0 else x[-1] + CLICK   # moved by CLICK, never past full scale
        return x.astype(np.float32)


def defect_from_env() -> str | None:
    """The defect COSY_INJECT names ("defect:NAME"), None when it is unset or empty; ValueError otherwise."""
    spec = os.environ.get("COSY_INJECT", "")
    if not spec:
        return None
    kind, _, name = spec.partition(":")
    if kind != "defect" or not name:
        raise ValueError(f"COSY_INJECT={spec!r}: the defective engine takes defect:NAME, NAME one of "
                         f"{', '.join(DEFECTS)}")
    return name


def build(runtime: Runtime) -> SpeakingEngine:
    """The `--cosy-engine benchmarks.defective_engine:build` factory: COSY_INJECT's defect, or none."""
    defect = defect_from_env()
    return SpeakingEngine(runtime) if defect is None else DefectiveEngine(runtime, defect)
