"""`cosy_tts`: calls the engine like a user would and records every call (`CosyTTS`).

`CosyTTS` is what the test sees: the engine's `stream`/`synthesize`, each call labelled ("stream 0"),
warmed up under @rtf, given its seed by one policy (`CosyTTS.call_seed`) and, in A/B mode, paired with
the base side's call (`pairing.py`). Running and recording one call behind the watchdog is
`recorder.Recorder`'s.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..engine import Engine
from ..judging.checks import Recording
from ..judging.specs import RtfSpec
from .attribution import EngineAttribution, Takes
from .recorder import WATCHDOG_MARGIN_S, AfterCall, Recorder, WatchdogExpired

if TYPE_CHECKING:
    from cosyvoice_runtime import Chunk, Runtime, Synthesis

# Named here too, where the suites and the base side have always imported them from.
__all__ = ["WATCHDOG_MARGIN_S", "CallPairing", "CosyTTS", "WatchdogExpired", "quality_seed"]


class CallPairing(Protocol):
    """What `CosyTTS` asks of an A/B pairing (`pairing.Pairing`; named here, as base_side.py imports this
    module): the base's warm-up, a call's pair seed, and around each measured call `begin`, whose
    result is called with the head's recording and whether another call is still in flight once the
    head's call has ended; and whether the head gets the call's seed per request."""

    def warm_up(self, kind: str, text: str, kwargs: dict[str, Any], n: int) -> None: ...

    def seed(self, label: str) -> int: ...

    def begin(self, kind: str, label: str, text: Any, kwargs: dict[str, Any], *, busy: bool, seed: int | None,
              head: Takes, fixed: bool) -> tuple[Callable[[Recording, bool], None], bool]: ...

class CosyTTS:
    """The `cosy_tts` fixture's object: `stream(...)` and `synthesize(...)` with the engine's
    signature, plus `recordings` (one `Recording` per call, replays included). With `pairing` (A/B
    mode, an RTF test) each measured call also runs on the base side (see `pairing.py`)."""

    def __init__(self, engine: Engine, runtime: Runtime, attribution: EngineAttribution, *, stall_timeout_s: float,
                 rtf: RtfSpec | None = None, first_use: Callable[[], bool] = lambda: False, round: int = 0,
                 pairing: CallPairing | None = None, quality_seeds: Callable[[str], int] | None = None) -> None:
        self.engine = engine
        self.runtime = runtime
        self.attribution = attribution
        self.stall_timeout_s = stall_timeout_s
        self.rtf = rtf
        self.round = round      # the RTF round this test run records (0: the main pass; see rounds.py)
        self.recordings: list[Recording] = []
        self.pairing = pairing
        self.quality_seeds = quality_seeds      # @quality: a call's label -> its seed (see quality_seed)
        self._warmed = False
        self._n = {"stream": 0, "synthesize": 0}
        self._lock = threading.Lock()
        self._calls = Recorder(engine, runtime, attribution, self.recordings, stall_timeout_s=stall_timeout_s,
                               first_use=first_use, on_refused=self._unlabel)
        self.samples_per_token = self._calls.samples_per_token

    @property
    def watchdog_s(self) -> float:
        """Seconds without a chunk or a token after which a call fails."""
        return self._calls.watchdog_s

    # -- what the test sees ------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.engine.sample_rate)

    @property
    def speakers(self) -> list[str]:
        return list(self.runtime.speakers)

    @property
    def version(self) -> int:
        return int(self.engine.version)

    def stream(self, text: Any, **kwargs: Any) -> Iterator[Chunk]:
        """`engine.stream(text, **kwargs)`, recorded. Argument errors raise here, as from the engine."""
        self._warmup("stream", text, kwargs)
        label = self._label("stream")
        after, kwargs = self._seed_and_pair("stream", label, text, kwargs)
        return self._calls.stream(label, text, kwargs, round_=self.round, measured=True, after=after)

    def synthesize(self, text: Any, **kwargs: Any) -> Synthesis:
        self._warmup("synthesize", text, kwargs)
        label = self._label("synthesize")
        after, kwargs = self._seed_and_pair("synthesize", label, text, kwargs)
        return self._calls.synthesize(label, text, kwargs, round_=self.round, measured=True, after=after)

    def record(self, kind: str, text: Any, kwargs: dict[str, Any], *, label: str, measured: bool = True) -> Recording:
        """One complete call run to its end (a stream drained, or a synthesize) outside a test's own
        calls: the base side of an A/B pair. Its recording is returned (and kept in `recordings` when
        measured); an engine error is kept in the recording, not raised; a hang still raises
        `WatchdogExpired`."""
        try:
            if kind == "stream":
                for _ in self._calls.stream(label, text, kwargs, round_=self.round, measured=measured):
                    pass
            elif kind == "synthesize":
                self._calls.synthesize(label, text, kwargs, round_=self.round, measured=measured)
            else:
                raise ValueError(f"kind {kind!r} is not 'stream' or 'synthesize'")
        except Exception:  # recorded in the call's recording (outcome, error); re-raised if not
            if not self._calls.last or self._calls.last.outcome == "ok":
                raise
        assert self._calls.last is not None
        return self._calls.last

    # -- rtf rounds and warm-up ----------------------------------------------------------------------
    def _label(self, kind: str) -> str:
        with self._lock:  # calls may come from several threads at once
            n = self._n[kind]
            self._n[kind] += 1
        return f"{kind} {n}" + (f" (round {self.round + 1})" if self.round else "")

    def _unlabel(self, kind: str) -> None:
        """A call refused for its arguments gives its number back (it recorded nothing)."""
        with self._lock:
            self._n[kind] -= 1

    def _warmup(self, kind: str, text: Any, kwargs: dict[str, Any]) -> None:
        """Under @rtf, the test's first call is run `warmup` times untimed and unrecorded first."""
        if not self.rtf or not isinstance(text, str):
            return
        with self._lock:
            if self._warmed:
                return
            self._warmed = True
        for k in range(self.rtf.warmup):
            label = f"{kind} warm-up {k + 1}"
            if kind == "stream":
                for _ in self._calls.stream(label, text, kwargs, round_=-1, measured=False):
                    pass
            else:
                self._calls.synthesize(label, text, kwargs, round_=-1, measured=False)
        if self.pairing is not None:
            self.pairing.warm_up(kind, text, kwargs, self.rtf.warmup)

    def _busy(self) -> bool:
        return self._calls.busy()

    def call_seed(self, label: str, kwargs: dict[str, Any]) -> tuple[int | None, bool]:
        """The call's seed, by the one policy every path uses: the test's own `seed=`, else the quality
        marker's (`quality_seed(nodeid, label)`, so a call seeds alike in and outside A/B mode and its
        tokens can match goldens saved either way), else the A/B pair's, else none. And whether it is
        fixed (the test's or the marker's: the head takes it per request whatever the base takes)."""
        if "seed" in kwargs:
            return kwargs["seed"], True
        if self.quality_seeds is not None:
            return self.quality_seeds(label), True
        if self.pairing is not None:
            return self.pairing.seed(label), False
        return None, False

    def _seed_and_pair(self, kind: str, label: str, text: Any,
                       kwargs: dict[str, Any]) -> tuple[AfterCall | None, dict[str, Any]]:
        """The head call's arguments, with the call's seed (`call_seed`) as `seed=` where it goes per
        request; in A/B mode also the base's call before the head's (order "BA") or the hook that runs
        it after (order "AB"), never while another head call is in flight (its timing would include the
        base's). The pairing says whether the seed goes per request: only where both sides take `seed=`
        (or the seed is fixed); otherwise it seeds torch's global generator before each side's call."""
        seed, fixed = self.call_seed(label, kwargs)
        takes = self.attribution.takes[kind]
        per_request = takes.seed and fixed
        after: AfterCall | None = None
        if self.pairing is not None:
            end, per_request = self.pairing.begin(kind, label, text, kwargs, busy=self._busy(), seed=seed,
                                                  head=takes, fixed=fixed)
            after = functools.partial(self._base_turn, end)
        if per_request and seed is not None and "seed" not in kwargs:
            kwargs = {**kwargs, "seed": seed}
        return after, kwargs

    def _base_turn(self, end: Callable[[Recording, bool], None], rec: Recording) -> None:
        """The head's call has ended (its recording complete): the pairing's turn."""
        end(rec, self._busy())


def quality_seed(nodeid: str, label: str) -> int:
    """The seed a @quality test's call gets when the test passes none: stable across processes,
    machines and sessions (a digest, not Python's salted hash), so a rerun repeats the golden's draws."""
    digest = hashlib.blake2b(f"{nodeid}::{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1      # < 2**63, the runtime's seed range
