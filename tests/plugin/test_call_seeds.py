"""One seed policy per `cosy_tts` call (issue #23): the test's own `seed=`, else the quality marker's
`quality_seed(nodeid, label)`, else the A/B pair's seed, else none; and an A/B pair driven alike on
both sides (seeded per request only where both sides take `seed=`, never observed one way on one side
and another on the other). In process, on a stand-in engine that takes what the Runtime takes."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cosyvoice_runtime import Chunk, StreamObserver, StreamStats, Synthesis
from pytest_cosyvoice.judging.checks import Recording
from pytest_cosyvoice.judging.specs import RtfSpec
from pytest_cosyvoice.recording.attribution import EngineAttribution, Takes
from pytest_cosyvoice.recording.calls import CosyTTS, quality_seed
from pytest_cosyvoice.recording.pairing import Pairing, call_seed

NODE = "test_q.py::test_marked_quality_and_rtf"
RATE = 24000
ALIKE = Takes(observer=True, stall_timeout_s=True, seed=True)


class Seeded:
    """Takes seed= and observer= (declared, as the Runtime does); writes down the seed of every call."""

    cosy_abilities = MappingProxyType({"seed": True, "observer": True, "stall_timeout": True})
    sample_rate, version = RATE, 2

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def _chunks(self, seed: int | None, observer: StreamObserver | None) -> list[Chunk]:
        self.seeds.append(seed)
        if observer is not None:
            observer.on_tokens(25, 25)
        return [Chunk(audio=np.zeros(RATE, np.float32), sample_rate=RATE, index=0, tokens=25)]

    def stream(self, text: str, *, seed: int | None = None, observer: StreamObserver | None = None,
               **kwargs: Any) -> Iterator[Chunk]:
        return iter(self._chunks(seed, observer))

    def synthesize(self, text: str, *, seed: int | None = None, observer: StreamObserver | None = None,
                   **kwargs: Any) -> Synthesis:
        return Synthesis.from_chunks(self._chunks(seed, observer), RATE, StreamStats(tokens=25))


class Base:
    """A base side that records how each measured call was seeded; `takes` is what its engine takes."""

    description, versions = "a stand-in base", {"python": "3"}

    def __init__(self, takes: Takes | None = ALIKE) -> None:
        self._takes = takes
        self.calls: list[tuple[int | None, bool]] = []

    def takes(self, kind: str) -> Takes | None:
        return self._takes

    def call(self, kind: str, text: str, kwargs: dict[str, Any], *, label: str, round: int, measured: bool,
             seed: int | None, stall_timeout_s: float, seed_per_request: bool = True) -> Recording:
        if measured:
            self.calls.append((seed, seed_per_request))
        rec = Recording(label=label, kind=kind, sample_rate=RATE, chunks=[np.zeros(RATE, np.float32)],
                        seed=seed if seed_per_request else None)
        rec.outcome = "ok"
        return rec

    def close(self) -> None:
        pass


def _tts(engine: Any, *, pairing: Pairing | None = None, quality: bool = True) -> CosyTTS:
    runtime: Any = SimpleNamespace(version=2, speakers=["spk"], llm=SimpleNamespace())
    return CosyTTS(engine, runtime, EngineAttribution(engine, runtime), stall_timeout_s=5.0,
                   rtf=RtfSpec(max=1000.0, warmup=0), pairing=pairing,
                   quality_seeds=partial(quality_seed, NODE) if quality else None)


def _pairing(base: Base, order: str = "AB") -> Pairing:
    return Pairing(base, nodeid=NODE, round=0, order=order, stall_timeout_s=5.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_a_quality_test_gets_its_quality_seed_in_ab_mode_too(order: str) -> None:
    # Marked quality and rtf: the call's seed is the quality marker's, with or without a base side, so
    # its tokens can match goldens saved outside A/B mode; the base side gets that same seed.
    alone, paired = Seeded(), Seeded()
    _tts(alone).synthesize("Hello.")
    list(_tts(alone).stream("Hello."))
    base = Base()
    tts = _tts(paired, pairing=_pairing(base, order))
    tts.synthesize("Hello.")
    list(tts.stream("Hello."))
    wanted = [quality_seed(NODE, "synthesize 0"), quality_seed(NODE, "stream 0")]
    assert alone.seeds == paired.seeds == wanted
    assert base.calls == [(s, True) for s in wanted]
    assert [r.seed for r in tts.recordings] == wanted


def test_the_tests_own_seed_comes_first_then_the_pairs() -> None:
    engine, base = Seeded(), Base()
    tts = _tts(engine, pairing=_pairing(base), quality=False)
    tts.synthesize("Hello.", seed=7)       # the test's own
    tts.synthesize("Hello.")               # no quality marker: the pair's
    assert engine.seeds == [7, call_seed(NODE, 0, "synthesize 1")]
    assert base.calls == [(7, True), (call_seed(NODE, 0, "synthesize 1"), True)]
    plain = Seeded()
    _tts(plain, quality=False).synthesize("Hello.")   # neither: none
    assert plain.seeds == [None]


def test_a_pair_is_seeded_per_request_only_where_both_sides_take_seed() -> None:
    # The base engine takes no seed=: both sides draw from torch's global generator, seeded alike
    # before each side's call (not one side per request and the other globally).
    engine, base = Seeded(), Base(Takes(observer=True, stall_timeout_s=True, seed=False))
    _tts(engine, pairing=_pairing(base), quality=False).synthesize("Hello.")
    assert engine.seeds == [None]
    assert base.calls == [(call_seed(NODE, 0, "synthesize 0"), False)]


def test_a_pair_observed_differently_on_each_side_is_not_made_and_says_why() -> None:
    # One side's tokens heard from its observer, the other's counted by the foreign adapter (patches on
    # the process the other side does not pay): their times are not comparable, so no pair.
    engine, base = Seeded(), Base(Takes(observer=False, stall_timeout_s=False, seed=False))
    pairing = _pairing(base)
    _tts(engine, pairing=pairing, quality=False).synthesize("Hello.")
    assert base.calls == [] and engine.seeds == [None]
    sample = pairing.sample(1)
    assert sample == ("no A/B pair: synthesize 0: the two sides are observed differently (the head's tokens "
                      "come from its observer, the base's are counted by the foreign adapter's process-wide "
                      "patches): their times are not comparable; give both engines observer= (or declare it "
                      "in cosy_abilities)"), sample
