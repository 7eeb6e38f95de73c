"""Plain result objects handed to callers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """One piece of streamed audio.

    ``tokens`` is the number of speech tokens this chunk newly covers (hop tokens; the last chunk
    covers the remainder), so ``sum(c.tokens)`` equals the tokens the producer generated.
    """

    audio: np.ndarray  # float32, 1-D
    sample_rate: int
    index: int
    tokens: int

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass
class StreamStats:
    """What one request did; filled while it runs, final once the stream is exhausted."""

    tokens: int = 0
    chunks: int = 0
    audio_seconds: float = 0.0
    first_chunk_s: float | None = None
    wall_s: float = 0.0
    sentences: int = 0

    @property
    def rtf(self) -> float | None:
        return self.wall_s / self.audio_seconds if self.audio_seconds > 0 else None


@dataclass
class Synthesis:
    audio: np.ndarray
    sample_rate: int
    chunks: list[Chunk] = field(default_factory=list)
    stats: StreamStats = field(default_factory=StreamStats)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate
