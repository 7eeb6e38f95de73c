"""The plugin's state: one `CosySession` per pytest session (built in pytest_configure, kept in
`config.stash`), one `TestRun` per test (kept in `item.stash`).

`CosySession.results()` gives what the session recorded, `(figures, streams)`, for the report and
baseline modules; under xdist the controller's session holds every worker's results.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cosyvoice_runtime import resolve_auto

from .judging import junit
from .judging.checks import Recording, WarningRecord
from .judging.measurements import TestFigures
from .judging.specs import FirstChunkSpec, NoDeprecationsSpec, RtfSpec, StallTimeoutSpec, StreamingSpec
from .judging.verdict import Verdict, judge, spec_of
from .markers import specs_for
from .recording.capture import WarningCapture
from .report.model import StreamRecord
from .settings import Settings
from .tracking.health import Health, HealthMonitor

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

    from .engine import Engine

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
        self._runtime: Runtime | None = None
        self._engine: Engine | None = None
        self._device_used: tuple[str, bool] | None = None   # (device, fp16) of the model loaded here or on a worker
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
                "device": None if self._device_used is None else list(self._device_used),
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
        if data.get("device") and self._device_used is None:
            device, fp16 = data["device"]
            self._device_used = (str(device), bool(fp16))

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
        if not self.worker_id or resolve_auto(dev) != "cuda":
            return dev
        import torch

        count = torch.cuda.device_count()
        if not count:  # "cuda" where torch sees no GPU: the load refuses it with the runtime's message
            return dev
        k = int(re.sub(r"\D", "", self.worker_id) or 0)
        return f"cuda:{k % count}"

    def runtime(self) -> Runtime:
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
                    self._device_used = (str(self._runtime.device), bool(self._runtime.fp16))
                    # The machine's speed and contention are watched from the load on.
                    self.monitor = HealthMonitor(str(self._runtime.device))
                    self.monitor.calibrate()
        if self._load_error is not None:
            pytest.fail(self._load_error, pytrace=False)
        assert self._runtime is not None
        return self._runtime

    def device_used(self) -> tuple[str, bool]:
        """(device, fp16) of the loaded model: this process's, or (the xdist controller) the one a
        worker reported; the settings' resolution where no model was loaded anywhere."""
        if self._device_used is not None:
            return self._device_used
        return resolve_auto(self.settings.device), self.settings.fp16

    def engine(self) -> Engine:
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
        assert self._engine is not None
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
    def start_test(self, item: pytest.Item) -> TestRun:
        return TestRun(self, item, specs_for(item))

    @staticmethod
    def rtf_repeat(item: pytest.Item) -> int:
        """How many RTF rounds the test's marker asks for (1: none after the main pass)."""
        spec = spec_of(specs_for(item), RtfSpec)
        return spec.repeat if spec is not None else 1


class TestRun:
    """One test: its marker specs and what its call captured (the recordings of its `cosy_tts`, its
    warnings); `evaluate` asks `verdict.judge` and records the figures on the session."""

    __test__ = False  # not a test class, whatever pytest's collection thinks of the name

    def __init__(self, session: CosySession, item: pytest.Item, specs: tuple[Any, ...]) -> None:
        self.session = session
        self.item = item
        self.specs = specs
        self.streaming = spec_of(specs, StreamingSpec)
        self.rtf = spec_of(specs, RtfSpec)
        stall = spec_of(specs, StallTimeoutSpec)
        self.settings = session.settings.with_stall_timeout(stall.seconds) if stall else session.settings
        self.round = session.round
        self.recordings: list[Recording] = []
        self.warnings: list[WarningRecord] = []

    @property
    def checks_warnings(self) -> bool:
        return self.streaming is not None or spec_of(self.specs, NoDeprecationsSpec) is not None

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Around the test's call: its warnings, from any thread (see `capture.WarningCapture`)."""
        if not self.checks_warnings:
            yield
            return
        with WarningCapture() as cap:
            self.warnings = cap.records
            yield

    # -- verdict ------------------------------------------------------------------------------------
    def evaluate(self) -> list[str]:
        """The failed checks as '<check>: <problem>' lines; records figures and streams on the session."""
        verdict = judge(self.specs, self.recordings, self.warnings,
                        allowed_warnings=self.session.settings.allowed_warnings, round=self.round)
        if self.recordings or self.streaming or self.rtf or spec_of(self.specs, FirstChunkSpec):
            if self.round:
                self._record_round(verdict)
            else:
                self._record(verdict)
        return verdict.lines()

    def _record(self, verdict: Verdict) -> None:
        fig = TestFigures(nodeid=self.item.nodeid, rtf=list(verdict.rtf), first_chunk_ms=list(verdict.first_chunk_ms),
                          worst_gap_ms=list(verdict.worst_gap_ms),
                          audio_s=sum(r.audio_s for r in self.recordings if r.round == 0),
                          cold=any(r.cold for r in self.recordings), engine=self.session.settings.engine,
                          failed_checks=verdict.failed_checks)
        self.session.figures[self.item.nodeid] = fig
        prebuffer_s = (self.streaming.prebuffer_ms / 1000.0) if self.streaming else 0.0
        # The report draws every stream that failed a check and one sample of the others (the test's
        # first): keeping all of them would grow with rtf repeats, in memory and on the xdist wire.
        sampled = False
        for s in verdict.streams:
            if not s.failed:
                if sampled:
                    continue
                sampled = True
            self.session.streams.append(StreamRecord(self.item.nodeid, s.trace, s.recording.audio, prebuffer_s,
                                                     s.failed))
        self.item.user_properties.extend(junit.properties(verdict))

    def _record_round(self, verdict: Verdict) -> None:
        """A later RTF round (rounds.py): its samples join the test's figures; a failure becomes a note."""
        fig = self.session.figures.get(self.item.nodeid)
        if fig is None:
            return
        label = f"round {self.round + 1}"
        # A failed check is noted, but the sample stays: dropping slow rounds would hide slowdowns.
        fig.round_notes += [f"{label}: {line}" for line in verdict.lines()]
        if not verdict.rtf:
            fig.round_notes.append(f"{label}: no complete cosy_tts call to time")
            return
        fig.rtf += verdict.rtf
        fig.first_chunk_ms += verdict.first_chunk_ms
        fig.worst_gap_ms += verdict.worst_gap_ms


def report_text(problems: list[str]) -> str:
    return "cosyvoice checks failed:\n" + "\n".join(f"  {p}" for p in problems)
