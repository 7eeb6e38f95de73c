"""What the golden store keeps of a quality test (issue 18): each call's outputs (`GoldenCall`), a test's
calls and clean-run scores (`GoldenTest`), a run key's goldens as loaded (`Goldens`), and the bounds
a test is cut to before it is stored (`bounded`). The files are goldens.py's. No pytest import here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..judging.quality_results import TestQuality
from .runkey import RunKey
from .store import StoreError

MAX_CALL_SECONDS = 30
MAX_CALLS_PER_TEST = 8
MAX_SCORES = 20


class GoldenError(StoreError):
    """A golden file exists but cannot be used (missing, corrupt, truncated, foreign, another schema or key,
    over the size bound): the message names the file. Never overwritten silently."""


@dataclass
class GoldenCall:
    """One call's stored outputs. `rendered` is the saving stack's offline token -> wav of `tokens`
    (`engine.render(text, tokens, streamed=False, seed=seed)`); `audio` is None (and `note` says why) when
    the call was longer than MAX_CALL_SECONDS."""
    label: str
    kind: str
    seed: int | None
    sample_rate: int
    tokens: list[int] | None
    audio: np.ndarray | None
    rendered: np.ndarray | None = None
    text: str | None = None
    note: str = ""
    # SNR of `rendered` against the saving stack's float64 CPU reference render of the same tokens
    # (`render(..., reference=True)`): the saving stack's own error, for judging a later stack's.
    reference_snr: float | None = None


@dataclass
class GoldenTest:
    """One quality test's golden calls and its clean-run scores ("dnsmos", "plcmos", "wer", "sim": one
    sample per saved session, newest last)."""

    __test__ = False  # data, not a test class
    nodeid: str
    calls: list[GoldenCall] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def call(self, label: str) -> GoldenCall | None:
        return next((c for c in self.calls if c.label == label), None)

    @classmethod
    def from_quality(cls, tq: TestQuality) -> GoldenTest:
        """What a save stores of a test's result: each call's outputs, and its per-test mean scores as one
        sample each. A call's `rendered` is kept only when it renders the call's own tokens (in a session
        that had a golden, it renders the old golden's tokens: storing it beside new tokens would lie)."""
        calls = []
        for c in tq.calls:
            own = c.rendered_tokens is None or c.tokens is None or list(c.rendered_tokens) == list(c.tokens)
            calls.append(GoldenCall(label=c.label, kind=c.kind, seed=c.seed, sample_rate=c.sample_rate,
                                    tokens=None if c.tokens is None else [int(t) for t in c.tokens],
                                    audio=np.asarray(c.audio, dtype=np.float32),
                                    rendered=None if c.rendered is None or not own
                                    else np.asarray(c.rendered, dtype=np.float32),
                                    text=c.text, reference_snr=c.reference_snr if own else None))
        return cls(tq.nodeid, calls, {k: [float(v)] for k, v in tq.scores().items()})


@dataclass
class Goldens:
    key: RunKey
    tests: dict[str, GoldenTest]
    path: Path
    updated_at: str = ""
    stack: dict[str, str] = field(default_factory=dict)     # the saving session's stack (tracking.stack)


def bounded(t: GoldenTest) -> GoldenTest:
    """`t` within the size bounds: at most MAX_CALLS_PER_TEST calls, no audio over MAX_CALL_SECONDS (its
    tokens kept); each cut named in the test's or the call's note."""
    notes = [n for n in t.notes if not n.startswith("calls ")]
    calls = t.calls
    if len(calls) > MAX_CALLS_PER_TEST:
        notes.append(f"calls {len(calls)}: only the first {MAX_CALLS_PER_TEST} stored (MAX_CALLS_PER_TEST)")
        calls = calls[:MAX_CALLS_PER_TEST]
    out = []
    for c in calls:
        audio, rendered, note = c.audio, c.rendered, c.note
        longest = max((a.size for a in (audio, rendered) if a is not None), default=0)
        if c.sample_rate > 0 and longest > MAX_CALL_SECONDS * c.sample_rate:
            note = (f"audio {longest / c.sample_rate:.1f} s, over the {MAX_CALL_SECONDS} s bound "
                    f"(MAX_CALL_SECONDS): not stored, tokens kept")
            audio = rendered = None
        out.append(GoldenCall(c.label, c.kind, c.seed, c.sample_rate, c.tokens, audio, rendered, c.text, note,
                              c.reference_snr if rendered is not None else None))
    return GoldenTest(t.nodeid, out, t.scores, notes)
