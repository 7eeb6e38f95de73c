"""The plugin's results: one `CosySession` per pytest session (built in pytest_configure, kept in
`config.stash`), one `TestRun` per test (kept in `item.stash`). The model and engine a session
hosts are host.py's `EngineHost` (`CosySession.host`).

`CosySession.results()` gives what the session recorded, `(figures, streams)`, for the report and
baseline modules; under xdist the controller's session holds every worker's results.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cosyvoice_runtime import resolve_auto

from .host import EngineHost
from .judging import junit
from .judging.checks import Recording, WarningRecord
from .judging.measurements import PairSample, TestFigures
from .judging.quality_results import TestQuality
from .judging.specs import FirstChunkSpec, QualitySpec, RtfSpec, StallTimeoutSpec, StreamingSpec
from .judging.verdict import Verdict, checks_warnings, judge, spec_of
from .markers import specs_for
from .quality_gate import QualityGate
from .recording.capture import WarningCapture
from .recording.pairing import Pairing, draw_order
from .report.model import StreamRecord
from .settings import Settings
from .tracking.health import Health
from .tracking.runkey import RunKey

WIRE_KEY = "cosyvoice"       # key of the worker -> controller payload in xdist's workeroutput
WIRE_SCHEMA = 3              # 2: the A/B base side's description and versions; 3: quality results


class CosySession:
    """What the session recorded: every test's figures and the streams the report draws, the RTF
    round being recorded, the machine's health (pooled over xdist workers on the controller), and
    the xdist wire format that carries them from a worker. The model and engine live in `host`."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.worker_id = os.environ.get("PYTEST_XDIST_WORKER", "")
        self.host = EngineHost(settings, self.worker_id)
        self.figures: dict[str, TestFigures] = {}
        self.streams: list[StreamRecord] = []
        self.round = 0                   # the RTF round being recorded (0: the main pass; rounds.py)
        # Seeds the shuffles of this process's RTF rounds and the A/B orders (printed with the rounds).
        self.seed = int(time.time())
        # A/B mode: the base side's description and stack, once a test used it (from the workers under xdist).
        self.ab_base = ""
        self.ab_versions: dict[str, str] = {}
        self.worker_health: list[Health] = []   # xdist controller: what each worker measured
        # @pytest.mark.quality: goldens, scorers and each quality test's result (see quality_gate.py).
        self.quality = QualityGate(settings, config.invocation_params.dir)
        self._worker_device: tuple[str, bool] | None = None   # xdist controller: where a worker loaded

    # -- results ------------------------------------------------------------------------------------
    def results(self) -> tuple[list[TestFigures], list[StreamRecord]]:
        """Every test's figures and every recorded stream (with its audio) of the session."""
        return list(self.figures.values()), list(self.streams)

    def to_wire(self) -> dict[str, Any]:
        health = self.health()
        device = self.host.loaded_on
        return {"schema": WIRE_SCHEMA, "worker": self.worker_id,
                "device": None if device is None else list(device),
                "figures": [f.to_json() for f in self.figures.values()],
                "streams": [s.to_wire() for s in self.streams],
                "health": None if health is None else health.to_json(),
                "ab_base": self.ab_base, "ab_versions": dict(self.ab_versions),
                "quality": [q.to_wire() for q in self.quality.results.values()]}

    def merge_wire(self, data: dict[str, Any] | None) -> None:
        if not data or data.get("schema") != WIRE_SCHEMA:
            return
        for f in data["figures"]:
            fig = TestFigures.from_json(f)
            self.figures[fig.nodeid] = fig
        self.streams.extend(StreamRecord.from_wire(s) for s in data["streams"])
        if data.get("health"):
            self.worker_health.append(Health.from_json(data["health"]))
        if data.get("device") and self._worker_device is None:
            device, fp16 = data["device"]
            self._worker_device = (str(device), bool(fp16))
        for q in data.get("quality") or []:
            tq = TestQuality.from_wire(q)
            self.quality.results[tq.nodeid] = tq
        if data.get("ab_base") and not self.ab_base:
            self.ab_base, self.ab_versions = str(data["ab_base"]), dict(data.get("ab_versions") or {})

    def device_used(self) -> tuple[str, bool]:
        """(device, fp16) of the loaded model: this process's, or (the xdist controller) the one a
        worker reported; the settings' resolution where no model was loaded anywhere."""
        return self.host.loaded_on or self._worker_device or (resolve_auto(self.settings.device), self.settings.fp16)

    def run_key(self) -> tuple[RunKey, str]:
        """The run key of what this session ran (runner, model, device kind, dtype, engine) and its device."""
        device, fp16 = self.device_used()
        key = RunKey.detect(self.host.model_dir(), device=device, dtype="fp16" if fp16 else "fp32",
                            engine=self.settings.engine, runner=self.settings.runner)
        return key, device

    def health(self) -> Health | None:
        """The machine's health over the session (calibration and contention); None when no model ran.
        Under xdist the controller pools the workers' calibration and model-reference samples (and
        their errors) and keeps the worst contention."""
        if self.host.monitor is not None:
            return self.host.monitor.finish()
        if not self.worker_health:
            return None
        pooled = Health(calibration=[c for h in self.worker_health for c in h.calibration],
                        reference=[r for h in self.worker_health for r in h.reference])
        for h in self.worker_health:
            for name, values in h.reference_parts.items():
                pooled.reference_parts.setdefault(name, []).extend(values)
        pooled.errors = [e for h in self.worker_health for e in h.errors]
        for name in ("others_cpu", "steal"):
            values = [getattr(h, name) for h in self.worker_health if getattr(h, name) is not None]
            setattr(pooled, name, max(values) if values else None)
        pooled.gpu = next((h.gpu for h in self.worker_health if h.gpu), {})
        return pooled

    def calibrate(self) -> None:
        """Time the calibration workload now (between RTF rounds; never during a test's timed calls)."""
        if self.host.monitor is not None:
            self.host.monitor.calibrate()

    def set_outcome(self, nodeid: str, outcome: str) -> None:
        if nodeid in self.figures and self.round == 0:
            self.figures[nodeid].outcome = outcome

    # -- per test -----------------------------------------------------------------------------------
    def start_test(self, item: pytest.Item) -> TestRun:
        return TestRun(self, item, specs_for(item))

    def pairing(self, run: TestRun) -> Pairing | None:
        """A/B mode, an RTF test: the base side for this test's round (the order drawn for it), kept on
        `run` for the verdict; None otherwise. Builds the base side on first use (see `EngineHost`)."""
        if run.rtf is None:
            return None
        base = self.host.base_side()
        if base is None:
            return None
        if not self.ab_base:
            self.ab_base, self.ab_versions = base.description, dict(base.versions)
        nodeid = run.item.nodeid
        run.pairing = Pairing(base, nodeid=nodeid, round=run.round, order=draw_order(self.seed, nodeid, run.round),
                              stall_timeout_s=run.settings.stall_timeout_s)
        return run.pairing

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
        self.pairing: Pairing | None = None     # A/B mode: the base side's calls of this round
        self.quality = spec_of(specs, QualitySpec)

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Around the test's call: its warnings, from any thread (see `capture.WarningCapture`), when
        the verdict will check them."""
        if not checks_warnings(self.specs):
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
        problems = verdict.lines()
        if self.quality is not None and self.round == 0 and self.recordings:
            problems += self._judge_quality()
        if self.recordings or self.streaming or self.rtf or spec_of(self.specs, FirstChunkSpec):
            if self.round:
                self._record_round(verdict)
            else:
                self._record(verdict)
        return problems

    def _judge_quality(self) -> list[str]:
        """@quality: the calls judged against the goldens (quality_gate.py); the failed checks' lines."""
        assert self.quality is not None
        host = self.session.host
        tq = self.session.quality.judge(self.item.nodeid, self.quality, self.recordings, host.engine(),
                                        host.runtime(), self.session.run_key()[0], base=host.base_side(),
                                        stall_timeout_s=self.settings.stall_timeout_s)
        self.item.user_properties.extend(junit.quality_properties(tq))
        return [f"quality {c.name}{f' ({c.call})' if c.call else ''}: {c.text}" for c in tq.failed]

    def _record(self, verdict: Verdict) -> None:
        fig = TestFigures(nodeid=self.item.nodeid, rtf=list(verdict.rtf), first_chunk_ms=list(verdict.first_chunk_ms),
                          worst_gap_ms=list(verdict.worst_gap_ms),
                          audio_s=sum(r.audio_s for r in self.recordings if r.round == 0),
                          cold=any(r.cold for r in self.recordings), engine=self.session.settings.engine,
                          failed_checks=verdict.failed_checks)
        self._record_pair(fig)
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
        self._record_pair(fig)
        if not verdict.rtf:
            fig.round_notes.append(f"{label}: no complete cosy_tts call to time")
            return
        fig.rtf += verdict.rtf
        fig.first_chunk_ms += verdict.first_chunk_ms
        fig.worst_gap_ms += verdict.worst_gap_ms

    def _record_pair(self, fig: TestFigures) -> None:
        """A/B mode: the round's pair joins the test's figures, or a note says why there is none."""
        if self.pairing is None:
            return
        pair = self.pairing.sample(self.round + 1)
        if isinstance(pair, PairSample):
            fig.pairs.append(pair)
        else:
            fig.round_notes.append(f"round {self.round + 1}: {pair}")


def report_text(problems: list[str]) -> str:
    return "cosyvoice checks failed:\n" + "\n".join(f"  {p}" for p in problems)
