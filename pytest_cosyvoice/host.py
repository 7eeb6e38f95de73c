"""The model and engine of one process (the pytest session, or one xdist worker): which model
directory and device, the loaded `cosyvoice_runtime.Runtime`, the engine `cosy_tts` calls, and the
machine-health monitor that starts with the load. One `EngineHost` per process, held by the
`CosySession` (session.py), which keeps what the tests recorded.

Also the plugin's default inputs: the zero-shot prompt the `cosy_prompt` fixture gives.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cosyvoice_runtime import resolve_auto

from .settings import Settings
from .tracking.health import HealthError, HealthMonitor

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

    from .engine import Engine
    from .recording.base_side import BaseSide

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Prompt:
    """A zero-shot prompt: a 16 kHz mono recording and its transcript."""

    wav: Path
    text: str


def default_prompt() -> Prompt:
    return Prompt(DATA_DIR / "prompt.wav", (DATA_DIR / "prompt.txt").read_text(encoding="utf-8").strip())


def monitor_for(runtime: Runtime) -> HealthMonitor:
    """The health monitor of a loaded Runtime, with its model reference
    (`cosyvoice_runtime.reference.ReferenceWork`, built here: fixed inputs and one warm-up run). A
    model whose components the reference cannot drive still gets its calibration; the health notes why
    there is no reference."""
    from cosyvoice_runtime.reference import ReferenceWork

    device = str(runtime.device)
    try:
        work = ReferenceWork(runtime)
    except Exception as e:  # noqa: BLE001 - any model part may fail on fixed inputs: noted, not raised
        monitor = HealthMonitor(device)
        monitor.health.errors.append(HealthError.failed("model reference", device, e))
        return monitor
    return HealthMonitor(device, reference=work)


class EngineHost:
    def __init__(self, settings: Settings, worker_id: str = "") -> None:
        self.settings = settings
        self.worker_id = worker_id           # xdist's "gw0", ...; "" outside xdist
        # (device, fp16) of the model loaded in this process; None until a load succeeds.
        self.loaded_on: tuple[str, bool] | None = None
        self.monitor: HealthMonitor | None = None   # the machine's health, watched from the load on
        self._runtime: Runtime | None = None
        self._engine: Engine | None = None
        self._engine_skip: str | None = None
        self._load_error: str | None = None
        self._used = False
        self._base: BaseSide | None = None
        self._lock = threading.Lock()

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
                    self.loaded_on = (str(self._runtime.device), bool(self._runtime.fp16))
                    # The machine's speed and contention are watched from the load on, with the
                    # model's own components on fixed inputs beside the calibration.
                    self.monitor = monitor_for(self._runtime)
                    self.monitor.calibrate()
        if self._load_error is not None:
            pytest.fail(self._load_error, pytrace=False)
        assert self._runtime is not None
        return self._runtime

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

    def base_side(self) -> BaseSide | None:
        """A/B mode: the base side (built once; see `recording.base_side`); None when no base option is given.
        Built before any test runs (`check_engine`): a base that cannot be built is a UsageError there."""
        if not self.settings.ab_mode:
            return None
        rt = self.runtime()
        with self._lock:
            if self._base is None:
                self._base = self._build_base(rt)
        return self._base

    def _build_base(self, head: Runtime) -> BaseSide:
        import cosyvoice_runtime

        from .engine import EngineError, EngineUnavailable, build
        from .recording.base_side import InProcessBase
        from .tracking.stack import interpreter_versions

        s = self.settings
        spec = s.base_engine_spec
        if s.base_python is not None:
            return self._start_worker(head)
        where_engine = s.sources.get("base_engine", "--cosy-engine") if s.base_engine else \
            s.sources.get("engine", "--cosy-engine")
        runtime = head
        if s.base_model is not None:
            try:
                runtime = cosyvoice_runtime.load(s.base_model, device=str(head.device), fp16=bool(head.fp16),
                                                 stall_timeout_s=s.stall_timeout_s)
            except cosyvoice_runtime.CosyVoiceError as e:
                raise pytest.UsageError(f"{s.sources['base_model']}={str(s.base_model)!r}: the base model does not "
                                        f"load: {type(e).__name__}: {e}") from None
        try:
            engine = build(spec, runtime)
        except (EngineError, EngineUnavailable) as e:
            raise pytest.UsageError(f"{where_engine}={spec!r}: the base engine cannot be built: {e}") from None
        model = s.base_model if s.base_model is not None else self.model_dir()
        return InProcessBase(engine, runtime, f"engine {spec}, model {model}, this interpreter",
                             interpreter_versions())

    def _start_worker(self, head: Runtime) -> BaseSide:
        """--cosy-base-python: the base side in a worker process of that interpreter, on the head's
        device and precision. On CUDA both sides then hold the model on the test's device; they never
        run at the same time, as the pairing code calls one side after the other."""
        from .recording.other_interpreter import BaseStartError, WorkerBase

        s = self.settings
        python, spec = s.base_python, s.base_engine_spec
        assert python is not None
        model = s.base_model if s.base_model is not None else self.model_dir()
        try:
            base = WorkerBase.start(python, model=model, engine=spec, device=str(head.device), fp16=bool(head.fp16),
                                    stall_timeout_s=s.stall_timeout_s)
        except BaseStartError as e:
            # The option at fault: a base engine or model that the worker cannot use; anything else (the
            # interpreter, its packages, the head's engine or model there) is the interpreter's.
            where_python = f"{s.sources['base_python']}={python!r}"
            if e.stage == "engine" and s.base_engine is not None:
                raise pytest.UsageError(f"{s.sources['base_engine']}={spec!r}: the base engine cannot be built in "
                                        f"the base interpreter ({where_python}): {e}") from None
            if e.stage == "model" and s.base_model is not None:
                raise pytest.UsageError(f"{s.sources['base_model']}={str(s.base_model)!r}: the base model does not "
                                        f"load in the base interpreter ({where_python}): {e}") from None
            what = {"engine": f"the engine {spec!r} cannot be built there: ",
                    "model": f"the model {str(model)!r} does not load there: "}.get(e.stage, "")
            raise pytest.UsageError(f"{where_python}: the base worker cannot start: {what}{e}") from None
        base.description = f"engine {spec}, model {model}, python {python} (torch {base.versions.get('torch', '?')})"
        return base

    def close(self) -> None:
        """The end of the session: the base side is let go (its worker stopped)."""
        with self._lock:
            base, self._base = self._base, None
        if base is not None:
            base.close()

    def check_engine(self, items: list[pytest.Item]) -> None:
        """Builds a `package.module:factory` engine before any test runs, when a collected test uses
        `cosy_tts`: a factory that raises or an object missing protocol members is a UsageError now,
        not an error of every test. A model that does not load is left to the tests (they fail with
        the loader's message); the built-in engines are built on first use. In A/B mode the base side is
        built here too, so a base option naming nothing usable stops the session (exit 4) before any test."""
        from .engine import BUILTIN

        if not any("cosy_tts" in getattr(i, "fixturenames", ()) for i in items):
            return
        if self.settings.engine in BUILTIN and not self.settings.ab_mode:
            return
        try:
            self.runtime()
        except (Exception, pytest.fail.Exception):  # noqa: BLE001 - the tests report a model that does not load
            return
        if self.settings.engine not in BUILTIN:
            self.engine()
        self.base_side()

    def first_use(self) -> bool:
        """True once: for the first call on the model in this process (the cold one)."""
        with self._lock:
            cold, self._used = not self._used, True
        return cold
