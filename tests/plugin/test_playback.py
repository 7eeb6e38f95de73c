"""The playback simulation the gap-free check and the stream pictures are built on."""
from __future__ import annotations

import pytest

from pytest_cosyvoice.judging.playback import simulate_playback

SR = 1000           # 1 kHz: chunk lengths in samples read as milliseconds
CHUNK = [500] * 6   # six 0.5 s chunks


def test_on_time_stream_never_stalls() -> None:
    arrivals = [0.3 + 0.4 * i for i in range(6)]      # faster than real time
    pb = simulate_playback(CHUNK, arrivals, SR, prebuffer_s=0.0)
    assert pb.stalls_s == [0.0] * 6 and pb.worst_stall_s == 0.0 and pb.worst_chunk is None
    assert pb.due_s == pytest.approx([0.3, 0.8, 1.3, 1.8, 2.3, 2.8])
    assert pb.needed_prebuffer_s == 0.0


def test_exactly_real_time_is_not_a_stall() -> None:
    # Arrivals equal to due times, built from float sums: rounding must not invent stalls.
    arrivals = [0.1 + sum([0.1] * i) * 5 for i in range(6)]
    pb = simulate_playback(CHUNK, arrivals, SR)
    assert pb.worst_stall_s == 0.0 and pb.needed_prebuffer_s == 0.0


def test_one_late_chunk_stalls_exactly_and_shifts_later_dues() -> None:
    arrivals = [0.2, 0.6, 1.0, 1.9, 2.0, 2.4]        # chunk 3 due at 1.7, arrives 1.9
    pb = simulate_playback(CHUNK, arrivals, SR, prebuffer_s=0.0)
    assert pb.stalls_s == pytest.approx([0, 0, 0, 0.2, 0, 0])
    assert pb.worst_stall_s == pytest.approx(0.2) and pb.worst_chunk == 3
    assert pb.stalled_chunks == [3]
    # Before the stall: 0.2 + 0.5 i; after it everything is 0.2 s later.
    assert pb.due_s == pytest.approx([0.2, 0.7, 1.2, 1.7, 2.4, 2.9])
    assert pb.needed_prebuffer_s == pytest.approx(0.2)


def test_later_stall_is_measured_against_the_shifted_schedule() -> None:
    # After chunk 3's 0.2 s stall, chunk 4 is due at 2.4 (not 2.2): arriving at 2.5 it stalls
    # 0.1 s more, not 0.3 s.
    arrivals = [0.2, 0.6, 1.0, 1.9, 2.5, 2.6]
    pb = simulate_playback(CHUNK, arrivals, SR)
    assert pb.stalls_s == pytest.approx([0, 0, 0, 0.2, 0.1, 0])
    assert sum(pb.stalls_s) == pytest.approx(0.3)
    assert pb.due_s[5] == pytest.approx(3.0)
    assert pb.worst_chunk == 3
    # Without the shift chunk 4 would count 0.3 late; the prebuffer that avoids both is 0.3.
    assert pb.needed_prebuffer_s == pytest.approx(0.3)


def test_prebuffer_hides_a_late_chunk() -> None:
    arrivals = [0.2, 0.6, 1.0, 1.9, 2.0, 2.4]
    assert simulate_playback(CHUNK, arrivals, SR, prebuffer_s=0.15).worst_stall_s \
        == pytest.approx(0.05)
    assert simulate_playback(CHUNK, arrivals, SR, prebuffer_s=0.25).worst_stall_s == 0.0


@pytest.mark.parametrize("arrivals, chunks", [
    ([0.2, 0.6, 1.0, 1.9, 2.5, 2.6], CHUNK),
    ([0.05, 0.9, 0.95, 3.0, 3.1, 3.15, 6.0], [480] * 7),
    ([0.5, 0.51, 0.52, 2.0], [2400, 2400, 123, 7]),
    ([0.1 * i ** 1.7 for i in range(1, 40)], [97 + (i * 37) % 211 for i in range(39)]),
])
def test_needed_prebuffer_removes_every_stall(arrivals: list[float], chunks: list[int]) -> None:
    need = simulate_playback(chunks, arrivals, SR).needed_prebuffer_s
    assert simulate_playback(chunks, arrivals, SR, need).worst_stall_s == 0.0
    if need > 0:  # and it is the smallest: a millisecond less stalls again
        assert simulate_playback(chunks, arrivals, SR, max(need - 1e-3, 0)).worst_stall_s > 0


def test_first_chunk_never_stalls_and_empty_stream() -> None:
    pb = simulate_playback([100], [5.0], SR)
    assert pb.stalls_s == [0.0] and pb.due_s == [5.0]
    empty = simulate_playback([], [], SR, 0.1)
    assert empty.due_s == [] and empty.worst_chunk is None and empty.needed_prebuffer_s == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="arrival"):
        simulate_playback([1, 2], [0.1], SR)
    with pytest.raises(ValueError, match="sample_rate"):
        simulate_playback([1], [0.1], 0)
    with pytest.raises(ValueError, match="prebuffer"):
        simulate_playback([1], [0.1], SR, -0.1)

