"""A listener's view of a stream: would a player fed these chunks at these times have to stop?

Model: playback starts `prebuffer_s` after the first chunk arrives. Chunk i is due when chunks
0..i-1 have finished playing. A chunk that arrives after its due time stalls the player for
(arrival - due); playback resumes on arrival, so every later due time moves by the stall.
Pure function, no pytest or numpy import: the plugin's gap-free check calls it per stream.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Float sums of arrival times and durations are off by ~1e-16 s; a "stall" below a nanosecond is
# arithmetic, not a gap a listener could hear, and counting it would make needed_prebuffer_s
# fail its own promise.
_EPS_S = 1e-9


@dataclass(frozen=True)
class Playback:
    due_s: list[float]          # when each chunk had to be there (same clock as arrivals_s)
    stalls_s: list[float]       # silence inserted before each chunk (0 when on time)
    worst_stall_s: float
    worst_chunk: int | None     # index of the chunk with the worst stall; None when no stall
    needed_prebuffer_s: float   # the smallest prebuffer with which no chunk would stall

    @property
    def stalled_chunks(self) -> list[int]:
        return [i for i, s in enumerate(self.stalls_s) if s > 0.0]


def simulate_playback(chunk_samples: Sequence[int], arrivals_s: Sequence[float],
                      sample_rate: int, prebuffer_s: float = 0.0) -> Playback:
    """Replay the stream against a real-time player; see the module docstring for the model."""
    if len(chunk_samples) != len(arrivals_s):
        raise ValueError(f"{len(chunk_samples)} chunk lengths but {len(arrivals_s)} arrival times")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if prebuffer_s < 0:
        raise ValueError(f"prebuffer_s must be >= 0, got {prebuffer_s}")
    if not arrivals_s:
        return Playback([], [], 0.0, None, 0.0)

    first = float(arrivals_s[0])
    due: list[float] = []
    stalls: list[float] = []
    played_samples = 0          # integer, so durations do not accumulate rounding error
    shift = 0.0                 # total stall so far
    needed = 0.0
    for n, arrival in zip(chunk_samples, arrivals_s, strict=True):
        audio_before = played_samples / sample_rate
        due_i = first + prebuffer_s + audio_before + shift
        stall = float(arrival) - due_i
        stall = stall if stall > _EPS_S else 0.0
        due.append(due_i)
        stalls.append(stall)
        shift += stall
        # Without any stall chunk i is due at first + P + audio_before; it is on time iff
        # P >= arrival - first - audio_before.
        needed = max(needed, float(arrival) - first - audio_before)
        played_samples += int(n)

    worst = max(stalls)
    worst_chunk = stalls.index(worst) if worst > 0.0 else None
    return Playback(due, stalls, worst, worst_chunk, needed if needed > _EPS_S else 0.0)

