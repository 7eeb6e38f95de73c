"""Plain result objects handed to callers."""
from __future__ import annotations

import time
from collections.abc import Sequence
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
    # The speech token ids the request rendered, every sentence's in order, where the engine holds them
    # (the Runtime, the upstream engine); None where it does not. Two runs that sampled alike have the
    # same ids: what an A/B session compares besides the audio.
    speech_tokens: tuple[int, ...] | None = None

    def add_speech_tokens(self, tokens: Sequence[int]) -> None:
        """One sentence's token ids, after those of the sentences before it."""
        self.speech_tokens = (self.speech_tokens or ()) + tuple(int(t) for t in tokens)

    @property
    def rtf(self) -> float | None:
        return self.wall_s / self.audio_seconds if self.audio_seconds > 0 else None


class ChunkTally:
    """Numbers one request's chunks and keeps its ``StreamStats`` as they are handed out: the
    bookkeeping both orchestrations share (the Runtime's own and ``upstream.UpstreamEngine``'s), so a
    chunk's index, tokens and timings mean the same whichever engine made it. The clock starts when the
    tally is made: inside the request's generator, at the caller's first ``next``."""

    def __init__(self, sample_rate: int, stats: StreamStats) -> None:
        self.sample_rate = sample_rate
        self.stats = stats
        self.t0 = time.perf_counter()
        self._index = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def chunk(self, audio: np.ndarray, tokens: int) -> Chunk:
        """The next chunk, counted in the stats: ``tokens`` the speech tokens it newly covers."""
        chunk = Chunk(audio=audio, sample_rate=self.sample_rate, index=self._index, tokens=tokens)
        self._index += 1
        now = self.elapsed()
        s = self.stats
        if s.first_chunk_s is None:
            s.first_chunk_s = now
        s.chunks += 1
        s.tokens += tokens
        s.audio_seconds += chunk.seconds
        s.wall_s = now
        return chunk


@dataclass
class Synthesis:
    audio: np.ndarray
    sample_rate: int
    chunks: list[Chunk] = field(default_factory=list)
    stats: StreamStats = field(default_factory=StreamStats)

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk], sample_rate: int, stats: StreamStats) -> Synthesis:
        """The whole request: its chunks' audio joined (empty float32 audio when there is none)."""
        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
        return cls(audio=audio, sample_rate=sample_rate, chunks=list(chunks), stats=stats)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate
