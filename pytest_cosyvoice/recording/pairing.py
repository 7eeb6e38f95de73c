"""A/B pairs inside one test (issue #17): each measured `cosy_tts` call of an RTF test also runs on the
base side, back to back, with the same text, keyword arguments and torch seed, so both halves of a
pair share one moment of the machine.

The order comes in balanced blocks per test (`draw_order`): "AB" runs the head's call first and the base's
once the head's has ended (a stream: once the test drained it to its end), "BA" runs the base's first,
before the head's stream is created. Either way the base never runs while a head call is being timed:
a call that overlaps another of the test's calls is not paired.

`Pairing.sample()` turns a round's paired calls into one `PairSample` (RTF and first chunk of each
side, aggregated as `checks.rtf_rounds` and the verdict's first chunk are, over the calls that
completed on both sides) and `compare_outputs` says whether the two sides produced the same tokens and
audio.

Both sides are driven alike. The call's seed (`CosyTTS.call_seed`: the test's own, the quality
marker's, else the pair's) goes per request (`seed=`) where both sides' engines take it (the runtime's
do): the global generator is left alone, and both sides repeat exactly, streams too. Where either side
takes no `seed=`, both get torch's global generator seeded before their call instead (not one per
request and the other globally); a seeded stream is then not reproducible (the LLM's sampling and the
vocoder's noise draw from it in two threads): that difference is expected and said to be. Only a seed
the test or its quality marker fixed goes per request to a head that takes it whatever the base takes
(then the outputs are "not comparable", and said to be). Sides whose tokens are heard differently (one
engine's own observer, the other's counted by the foreign adapter's process-wide patches, which cost
the calls they watch) are not paired at all: each call's note says why, and the test gets no verdict.
"""
from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..judging.checks import Recording, rtf_rounds
from ..judging.measurements import NOT_REPRODUCIBLE, SEEDED_APART, PairOutputs, PairSample
from .attribution import Takes
from .base_side import BaseSide, BaseSideError, seed_torch

ORDERS = ("AB", "BA")   # "AB": head first; "BA": base first


def draw_order(session_seed: int, nodeid: str, round: int) -> str:
    """The round's order for one test, in balanced blocks: rounds 2k and 2k+1 (0-based: round 0 is the
    main pass, as `CallRecorder.round` counts) are one "AB" and one "BA", which first drawn per test
    and block, the same for a given session seed. Each look (an even number of pairs) then holds as
    many of each, so the crossover analysis (tracking.paired) can remove the order effect; a random
    order per round kept the level but lost power to it (issue #24)."""
    block = round // 2
    first = random.Random(f"{session_seed}|{nodeid}|block {block}").choice(ORDERS)
    return first if round % 2 == 0 else ORDERS[1 - ORDERS.index(first)]


def call_seed(nodeid: str, round: int, label: str) -> int:
    """The torch seed both sides of one call get: fixed by the test, the round and the call."""
    return zlib.crc32(f"{nodeid}|{round}|{label}".encode())


@dataclass(eq=False)
class PairedCall:
    """One measured call of the test and its base counterpart; `note` says why it is not a pair."""

    kind: str
    label: str
    text: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    head: Recording | None = None
    base: Recording | None = None
    note: str = ""
    seed: int | None = None          # the call's seed, for both sides
    per_request: bool = False        # passed as seed= (where a side takes it), else torch's global generator

    @property
    def complete(self) -> bool:
        return (self.head is not None and self.base is not None and self.head.outcome == "ok"
                and self.base.outcome == "ok" and self.head.audio_s > 0 and self.base.audio_s > 0)


class Pairing:
    """The base side of one test's round: `warm_up` on the test's first call, `begin` before each
    measured head call and what it returns once the call has ended (run by `CosyTTS`, whose
    `CallPairing` this is), `sample()` at the verdict."""

    def __init__(self, base: BaseSide, *, nodeid: str, round: int, order: str, stall_timeout_s: float) -> None:
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {ORDERS}")
        self.base = base
        self.nodeid = nodeid
        self.round = round
        self.order = order
        self.stall_timeout_s = stall_timeout_s
        self.calls: list[PairedCall] = []

    def warm_up(self, kind: str, text: str, kwargs: dict[str, Any], n: int) -> None:
        """The base's own unmeasured warm-up calls, as the head gets on the test's first call."""
        for k in range(n):
            self._call(PairedCall(kind, f"{kind} warm-up {k + 1}", text, kwargs))

    def seed(self, label: str) -> int:
        """The pair's seed of one call (`call_seed`): what both sides get where the test and its quality
        marker fix none."""
        return call_seed(self.nodeid, self.round, label)

    def begin(self, kind: str, label: str, text: Any, kwargs: dict[str, Any], *, busy: bool, seed: int | None,
              head: Takes, fixed: bool = False) -> tuple[Callable[[Recording, bool], None], bool]:
        """Before the head's call: in "BA" order the base's call now. `seed`: the call's (None: none);
        `head`: what the head's engine takes; `fixed`: the seed is the test's or its quality marker's
        (it goes per request to a head that takes it, whatever the base takes). `busy`: another of the
        test's calls is in flight (the base would run inside its timing). Returns `end` for this call,
        to be called with the head's recording once its call has ended, and whether the head gets the
        seed per request (`seed=`); where not, and the call is paired, torch's global generator has
        been seeded with it for the head's call."""
        pc = PairedCall(kind, label, text, dict(kwargs), seed=seed)
        self.calls.append(pc)
        end = functools.partial(self.end, pc)
        base = self.base.takes(kind)
        if not isinstance(text, str):
            pc.note = f"{label}: its text is not a str (an iterator cannot be replayed on the base)"
        elif busy:
            pc.note = f"{label}: overlaps another call of the test (the base would run inside its timing)"
        elif base is not None and base.observer != head.observer:
            pc.note = f"{label}: {observed_apart(head.observer)}"
        if pc.note:
            return end, head.seed and fixed
        pc.per_request = head.seed and (fixed or base is None or base.seed)
        if self.order == "BA":
            self._call(pc, measured=True)
        if not pc.per_request:
            seed_torch(seed)
        return end, pc.per_request

    def end(self, pc: PairedCall, head: Recording, busy: bool) -> None:
        """After the head's call has ended (and its recording is complete): in "AB" order the base's call."""
        pc.head = head
        if pc.note or self.order != "AB":
            return
        if head.outcome != "ok":
            pc.note = f"{pc.label}: ended {head.outcome}; the base was not run"
        elif busy:
            pc.note = f"{pc.label}: overlaps another call of the test (the base would run inside its timing)"
        else:
            self._call(pc, measured=True)

    def _call(self, pc: PairedCall, *, measured: bool = False) -> None:
        try:
            rec = self.base.call(pc.kind, pc.text, pc.kwargs, label=f"base {pc.label}", round=self.round,
                                 measured=measured, seed=pc.seed, stall_timeout_s=self.stall_timeout_s,
                                 seed_per_request=pc.per_request)
        except BaseSideError as e:
            pc.note = f"base {pc.label}: {e}"
            raise   # the base cannot serve: the test fails with its message
        except Exception as e:  # noqa: BLE001 - refused on the base (its arguments): no pair, the head still runs
            pc.note = f"base {pc.label}: {type(e).__name__}: {e}"
            return
        if measured:
            pc.base = rec
            if rec.outcome != "ok":
                pc.note = f"base {pc.label}: ended {rec.outcome}" + (f": {rec.error}" if rec.error else "")

    def sample(self, round_number: int) -> PairSample | str:
        """The round's pair over the calls complete on both sides, or why there is none."""
        done = [pc for pc in self.calls if pc.complete]
        if not done:
            why = next((pc.note for pc in self.calls if pc.note),
                       "no measured call completed on both sides" if self.calls else "no measured call")
            return f"no A/B pair: {why}"
        heads = [pc.head for pc in done if pc.head is not None]
        bases = [pc.base for pc in done if pc.base is not None]
        return PairSample(round=round_number, order=self.order, head_rtf=_rtf(heads), base_rtf=_rtf(bases),
                          head_first_chunk_ms=_first_chunk_ms(heads), base_first_chunk_ms=_first_chunk_ms(bases),
                          outputs=_outputs(done), head_tokens=_tokens(heads), base_tokens=_tokens(bases),
                          head_audio_s=sum(r.audio_s for r in heads), base_audio_s=sum(r.audio_s for r in bases))


def observed_apart(head_observer: bool) -> str:
    """Why a pair whose sides hear their tokens differently is not made."""
    own, adapter = "come from its observer", "are counted by the foreign adapter's process-wide patches"
    head, base = (own, adapter) if head_observer else (adapter, own)
    return (f"the two sides are observed differently (the head's tokens {head}, the base's {base}): their "
            "times are not comparable; give both engines observer= (or declare it in cosy_abilities)")


def _rtf(recs: Sequence[Recording]) -> float:
    # One round's complete measured calls: rtf_rounds aggregates them as the verdict does (wall / audio).
    [value] = rtf_rounds(recs)
    return value


def _tokens(recs: Sequence[Recording]) -> int | None:
    """The round's speech tokens over its calls; None where a call's were not counted."""
    counts = [len(r.speech_tokens) if r.speech_tokens is not None else None for r in recs]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


def _first_chunk_ms(recs: Sequence[Recording]) -> float | None:
    """The round's slowest first chunk over its streams (the verdict's `first_chunk_ms`); None without one."""
    firsts = [r.arrivals_s[0] * 1000.0 for r in recs if r.kind == "stream" and r.arrivals_s]
    return max(firsts) if firsts else None


def _outputs(calls: Sequence[PairedCall]) -> PairOutputs:
    compared = [(pc.label, compare_outputs(pc.head, pc.base)) for pc in calls if pc.head is not None
                and pc.base is not None]
    differ = [(label, o) for label, o in compared if o.status != "identical"]
    if not differ:
        return PairOutputs("identical")
    if len(compared) == 1:
        return differ[0][1]
    return PairOutputs("differs", "; ".join(f"{label}: {o.detail}" for label, o in differ),
                       any(o.finding for _, o in differ))


def compare_outputs(head: Recording, base: Recording) -> PairOutputs:
    """Identical, or what differs (the token ids, then the audio). A difference between sides that both
    took their seed per request is a finding, streamed or not; otherwise a stream's is expected
    (`NOT_REPRODUCIBLE`), and so is any between a side seeded per request and one seeded globally
    (`SEEDED_APART`); a synthesize's between two globally seeded sides is a finding."""
    parts: list[str] = []
    h, b = head.speech_tokens, base.speech_tokens
    if h is not None and b is not None and h != b:
        at = next((i for i, (x, y) in enumerate(zip(h, b, strict=False)) if x != y), None)
        if at is None:
            parts.append(f"{len(h)} vs {len(b)} tokens")
        elif len(h) == len(b):
            parts.append(f"tokens diverge at {at} of {len(h)}")
        else:
            parts.append(f"tokens diverge at {at} ({len(h)} vs {len(b)} tokens)")
    ha, ba = head.audio, base.audio
    if len(ha) != len(ba):
        parts.append(f"audio {len(ha) / head.sample_rate:.2f} s vs {len(ba) / base.sample_rate:.2f} s")
    elif not np.array_equal(ha, ba):
        parts.append("audio samples differ")
    if not parts:
        return PairOutputs("identical")
    what = ", ".join(parts)
    if (head.seed is None) != (base.seed is None):
        return PairOutputs("differs", f"{what} ({SEEDED_APART})")
    if head.kind == "stream" and head.seed is None:
        return PairOutputs("differs", f"{what} ({NOT_REPRODUCIBLE})")
    return PairOutputs("differs", what, finding=True)
