"""The plugin's state: one `CosySession` per pytest session (built in pytest_configure, kept in
`config.stash`), one `TestRun` per test (kept in `item.stash`).

`CosySession.results()` gives what the session recorded, `(figures, streams)`, for the report and
baseline modules; under xdist the controller's session holds every worker's results.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import checks
from .calibration import Health, HealthMonitor
from .checks import CLEAN_CATEGORIES, Recording, WarningRecord
from .measurements import StreamTrace, TestFigures
from .markers import FirstChunkSpec, NoDeprecationsSpec, RtfSpec, StallTimeoutSpec, StreamingSpec, specs_for
from .report_model import StreamRecord
from .settings import Settings

log = logging.getLogger("pytest_cosyvoice")
DATA_DIR = Path(__file__).parent / "data"
WIRE_KEY = "cosyvoice"       # key of the worker -> controller payload in xdist's workeroutput
WIRE_SCHEMA = 1


@dataclass(frozen=True)
class Prompt:
    """A zero-shot prompt: a 16 kHz mono recording and its transcript."""

    wav: Path
    text: str


def default_prompt() -> Prompt:
    return Prompt(DATA_DIR / "prompt.wav", (DATA_DIR / "prompt.txt").read_text(encoding="utf-8").strip())


class CosySession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.worker_id = os.environ.get("PYTEST_XDIST_WORKER", "")
        self.figures: dict[str, TestFigures] = {}
        self.streams: list[StreamRecord] = []
        self._runtime: Any = None
        self._engine: Any = None
        self._engine_skip: str | None = None
        self._load_error: str | None = None
        self._used = False
        self._lock = threading.Lock()
        self.round = 0                   # the RTF round being recorded (0: the main pass; rounds.py)
        self.monitor: HealthMonitor | None = None
        self.worker_health: list[Health] = []   # xdist controller: what each worker measured

    # -- results ------------------------------------------------------------------------------------
    def results(self) -> tuple[list[TestFigures], list[StreamRecord]]:
        """Every test's figures and every recorded stream (with its audio) of the session."""
        return list(self.figures.values()), list(self.streams)

    def to_wire(self) -> dict[str, Any]:
        health = self.health()
        return {"schema": WIRE_SCHEMA, "worker": self.worker_id,
                "figures": [f.to_json() for f in self.figures.values()],
                "streams": [s.to_wire() for s in self.streams],
                "health": None if health is None else health.to_json()}

    def merge_wire(self, data: dict[str, Any] | None) -> None:
        if not data or data.get("schema") != WIRE_SCHEMA:
            return
        for f in data["figures"]:
            fig = TestFigures.from_json(f)
            self.figures[fig.nodeid] = fig
        self.streams.extend(StreamRecord.from_wire(s) for s in data["streams"])
        if data.get("health"):
            self.worker_health.append(Health.from_json(data["health"]))

    def health(self) -> Health | None:
        """The machine's health over the session (calibration and contention); None when no model ran.
        Under xdist the controller pools the workers' calibration samples and keeps the worst contention."""
        if self.monitor is not None:
            return self.monitor.finish()
        if not self.worker_health:
            return None
        pooled = Health(calibration=[c for h in self.worker_health for c in h.calibration])
        for name in ("others_cpu", "steal"):
            values = [getattr(h, name) for h in self.worker_health if getattr(h, name) is not None]
            setattr(pooled, name, max(values) if values else None)
        pooled.gpu = next((h.gpu for h in self.worker_health if h.gpu), {})
        return pooled

    def calibrate(self) -> None:
        """Time the calibration workload now (between RTF rounds; never during a test's timed calls)."""
        if self.monitor is not None:
            self.monitor.calibrate()

    def set_outcome(self, nodeid: str, outcome: str) -> None:
        if nodeid in self.figures and self.round == 0:
            self.figures[nodeid].outcome = outcome

    # -- model and engine ---------------------------------------------------------------------------
    def model_dir(self) -> Path:
        if self.settings.model is not None:
            return self.settings.model
        from cosyvoice_runtime.tiny import default_model_dir

        return default_model_dir()

    def device(self) -> str:
        """The device to load on: with xdist on CUDA, worker k takes GPU k modulo the visible GPUs."""
        dev = self.settings.device
        if not self.worker_id or dev not in ("auto", "cuda"):
            return dev
        import torch

        if not torch.cuda.is_available():
            return dev
        k = int(re.sub(r"\D", "", self.worker_id) or 0)
        return f"cuda:{k % torch.cuda.device_count()}"

    def runtime(self) -> Any:
        """The loaded Runtime, once per process."""
        with self._lock:
            if self._runtime is None and self._load_error is None:
                import cosyvoice_runtime

                model_dir: Path | str = "the embedded tiny model"
                try:
                    model_dir = self.model_dir()  # builds the embedded model on first use (MissingExtra: no onnx)
                    self._runtime = cosyvoice_runtime.load(model_dir, device=self.device(), fp16=self.settings.fp16,
                                                           stall_timeout_s=self.settings.stall_timeout_s)
                except cosyvoice_runtime.CosyVoiceError as e:
                    self._load_error = f"cannot load the model {str(model_dir)!r}: {type(e).__name__}: {e}"
                else:
                    # The machine's speed and contention are watched from the load on.
                    self.monitor = HealthMonitor(str(self._runtime.device))
                    self.monitor.calibrate()
        if self._load_error is not None:
            pytest.fail(self._load_error, pytrace=False)
        return self._runtime

    def device_used(self) -> tuple[str, bool]:
        """(device, fp16) of the loaded model; the settings' resolution where this process loaded none
        (the xdist controller)."""
        if self._runtime is not None:
            return str(self._runtime.device), bool(self._runtime.fp16)
        from cosyvoice_runtime.runtime import resolve_device

        return str(resolve_device(self.settings.device)), self.settings.fp16

    def engine(self) -> Any:
        """What cosy_tts calls: the Runtime, upstream's orchestration class driving its components, or
        the engine a `package.module:factory` builds from it (see `pytest_cosyvoice.engine`)."""
        from .engine import EngineError, EngineUnavailable, build

        rt = self.runtime()
        value = self.settings.engine
        with self._lock:
            if self._engine is None and self._engine_skip is None:
                try:
                    self._engine = build(value, rt)
                except EngineUnavailable as e:
                    self._engine_skip = str(e)
                except EngineError as e:
                    where = self.settings.sources.get("engine", "--cosy-engine")
                    raise pytest.UsageError(f"{where}={value!r}: {e}") from None
        if self._engine_skip is not None:
            pytest.skip(self._engine_skip)
        return self._engine

    def check_engine(self, items: list[pytest.Item]) -> None:
        """Builds a `package.module:factory` engine before any test runs, when a collected test uses
        `cosy_tts`: a factory that raises or an object missing protocol members is a UsageError now,
        not an error of every test. A model that does not load is left to the tests (they fail with
        the loader's message); the built-in engines are built on first use."""
        from .engine import BUILTIN

        if self.settings.engine in BUILTIN or not any("cosy_tts" in getattr(i, "fixturenames", ()) for i in items):
            return
        try:
            self.runtime()
        except (Exception, pytest.fail.Exception):  # noqa: BLE001 - the tests report a model that does not load
            return
        self.engine()

    def first_use(self) -> bool:
        """True once: for the first call on the model in this process (the cold one)."""
        with self._lock:
            cold, self._used = not self._used, True
        return cold

    # -- per test -----------------------------------------------------------------------------------
    def start_test(self, item: pytest.Item) -> "TestRun":
        return TestRun(self, item, specs_for(item))

    @staticmethod
    def rtf_repeat(item: pytest.Item) -> int:
        """How many RTF rounds the test's marker asks for (1: none after the main pass)."""
        spec = specs_for(item).get("rtf")
        return spec.repeat if spec is not None else 1


class TestRun:
    """One test: its marker specs, the recordings of its `cosy_tts`, its warnings, its verdict."""

    __test__ = False  # not a test class, whatever pytest's collection thinks of the name

    def __init__(self, session: CosySession, item: pytest.Item, specs: dict[str, Any]) -> None:
        self.session = session
        self.item = item
        self.streaming: StreamingSpec | None = specs.get("streaming")
        self.rtf: RtfSpec | None = specs.get("rtf")
        self.first_chunk: FirstChunkSpec | None = specs.get("first_chunk")
        self.no_deprecations: NoDeprecationsSpec | None = specs.get("no_deprecations")
        stall: StallTimeoutSpec | None = specs.get("stall_timeout")
        self.settings = session.settings.with_stall_timeout(stall.seconds) if stall else session.settings
        self.round = session.round
        self.recordings: list[Recording] = []
        self.warnings: list[WarningRecord] = []
        self._catcher: Any = None

    @property
    def checks_warnings(self) -> bool:
        return self.streaming is not None or self.no_deprecations is not None

    # -- warnings: a process-wide capture, so warnings from the engine's threads count too ------------
    def start_call(self) -> None:
        if not self.checks_warnings:
            return
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        for cat in CLEAN_CATEGORIES:
            # "always" beats "once"/"default" and makes __warningregistry__ entries irrelevant, so a
            # warning already shown by an earlier test is seen again.
            warnings.filterwarnings("always", category=cat)
        warnings.showwarning = self._show

    def _show(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: Any = None, line: str | None = None) -> None:
        self.warnings.append(WarningRecord(category, str(message), filename, lineno, threading.current_thread().name))

    def stop_call(self) -> None:
        if self._catcher is None:
            return
        self._catcher.__exit__(None, None, None)
        self._catcher = None
        for w in self.warnings:
            # Hand them on to pytest's own capture, so its warnings summary still lists them.
            try:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            except Warning:  # a -W error filter: the clean check reports them already
                pass

    # -- verdict ------------------------------------------------------------------------------------
    def evaluate(self) -> list[str]:
        """The failed checks as '<check>: <problem>' lines; records figures and streams on the session."""
        problems: list[tuple[str, str]] = []
        spec = self.streaming
        prebuffer_ms = spec.prebuffer_ms if spec else 0.0
        traces: list[tuple[Recording, StreamTrace, bool]] = []
        gaps: dict[int, float] = {}
        for rec in self.recordings:
            pb, gap_p = checks.check_gap_free(rec, prebuffer_ms, spec.max_gap_ms if spec else float("inf"))
            clicks, sound_p = checks.check_sound(rec, spec.max_click_ratio if spec else float("inf"))
            mine: list[tuple[str, str]] = []
            if spec:
                mine += [(checks.GAP_FREE, p) for p in gap_p]
                mine += [(checks.COMPLETE, p) for p in checks.check_complete(rec)]
                mine += [(checks.SOUND, p) for p in sound_p]
                mine += [(checks.TIDY, p) for p in checks.check_tidy(rec)]
            problems += mine
            traces.append((rec, rec.to_trace(pb, clicks), bool(mine)))
            gaps[id(rec)] = pb.worst_stall_s * 1000.0
        if self.checks_warnings:
            allow = list(self.session.settings.allowed_warnings)
            allow += list(spec.allow_warnings) if spec else []
            allow += list(self.no_deprecations.allow) if self.no_deprecations else []
            problems += [(checks.CLEAN, p) for p in checks.check_clean(self.warnings, allow)]

        rounds = checks.rtf_rounds(self.recordings)
        # Later RTF rounds (rounds.py) only add samples for the drift rule: the test's rtf(max) and
        # first_chunk(max_ms) verdicts are those of its own (first) round.
        if self.rtf is not None and not self.round:
            if not rounds:
                problems.append(("rtf", "the test made no complete cosy_tts call to time"))
            elif checks.median(rounds) > self.rtf.max:
                problems.append(("rtf", f"real-time factor {checks.median(rounds):.3f} > max {self.rtf.max:g} "
                                        f"(rounds: {', '.join(f'{r:.3f}' for r in rounds)}; wall time / audio seconds "
                                        f"after {self.rtf.warmup} warm-up run(s))"))
        streams = [r for r in self.recordings if r.kind == "stream" and r.arrivals_s]
        if self.first_chunk is not None and not self.round:
            if not streams:
                problems.append(("first_chunk", "the test made no cosy_tts.stream call that produced a chunk"))
            for r in streams:
                ms = r.arrivals_s[0] * 1000.0
                if ms > self.first_chunk.max_ms:
                    problems.append(("first_chunk", f"{r.label}: first chunk after {ms:.0f} ms > max_ms "
                                                    f"{self.first_chunk.max_ms:g}"))
        self._record(traces, gaps, rounds, problems)
        return [f"{check}: {text}" for check, text in problems]

    def _record(self, traces: list[tuple[Recording, StreamTrace, bool]], gaps: dict[int, float],
                rounds: list[float], problems: list[tuple[str, str]]) -> None:
        if not self.recordings and not (self.streaming or self.rtf or self.first_chunk):
            return
        if self.round:
            self._record_round(gaps, rounds, problems)
            return
        by_round: dict[int, list[Recording]] = {}
        for r in self.recordings:
            by_round.setdefault(r.round, []).append(r)
        first: list[float] = []
        worst: list[float] = []
        for k in sorted(by_round):
            st = [r for r in by_round[k] if r.kind == "stream" and r.arrivals_s]
            if st:
                first.append(max(r.arrivals_s[0] * 1000.0 for r in st))
                worst.append(max(gaps[id(r)] for r in st))
        failed = sorted({c for c, _ in problems}, key=lambda c: (c not in checks.CHECKS, c))
        fig = TestFigures(nodeid=self.item.nodeid, rtf=rounds, first_chunk_ms=first, worst_gap_ms=worst,
                          audio_s=sum(r.audio_s for r in self.recordings if r.round == 0),
                          cold=any(r.cold for r in self.recordings), engine=self.session.settings.engine,
                          failed_checks=failed)
        self.session.figures[self.item.nodeid] = fig
        prebuffer_s = (self.streaming.prebuffer_ms / 1000.0) if self.streaming else 0.0
        # The report draws every stream that failed a check and one sample of the others (the test's
        # first): keeping all of them would grow with rtf repeats, in memory and on the xdist wire.
        sampled = False
        for rec, trace, bad in traces:
            if not bad:
                if sampled:
                    continue
                sampled = True
            self.session.streams.append(StreamRecord(self.item.nodeid, trace, rec.audio, prebuffer_s, bad))
        # JUnit XML carries these (one value per test: the median round, the worst gap).
        props = self.item.user_properties
        if rounds:
            props.append(("rtf", round(checks.median(rounds), 4)))
        if first:
            props.append(("first_chunk_ms", round(checks.median(first), 1)))
        if worst:
            props.append(("worst_gap_ms", round(max(worst), 1)))


    def _record_round(self, gaps: dict[int, float], rounds: list[float], problems: list[tuple[str, str]]) -> None:
        """A later RTF round (rounds.py): its samples join the test's figures; a failure becomes a note."""
        fig = self.session.figures.get(self.item.nodeid)
        if fig is None:
            return
        label = f"round {self.round + 1}"
        # A failed check is noted, but the sample stays: dropping slow rounds would hide slowdowns.
        fig.round_notes += [f"{label}: {check}: {text}" for check, text in problems]
        if not rounds:
            fig.round_notes.append(f"{label}: no complete cosy_tts call to time")
            return
        fig.rtf += rounds
        streams = [r for r in self.recordings if r.kind == "stream" and r.arrivals_s and r.measured]
        if streams:
            fig.first_chunk_ms.append(max(r.arrivals_s[0] * 1000.0 for r in streams))
            fig.worst_gap_ms.append(max(gaps[id(r)] for r in streams))


def report_text(problems: list[str]) -> str:
    return "cosyvoice checks failed:\n" + "\n".join(f"  {p}" for p in problems)
