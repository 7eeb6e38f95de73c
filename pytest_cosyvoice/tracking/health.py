"""Machine health: is this machine, right now, comparable with the one that saved the baseline?

Two kinds of evidence, both measured during the session and stored with a baseline:

* **Calibration**: a small fixed workload, timed between RTF rounds: a fixed-shape matmul and a
  1-D convolution on the test's device (the kinds of kernels the LM, flow and vocoder spend their
  time in) and a pure-Python loop (the orchestration's share). Its median time over the session,
  divided by the baseline's, says how much slower the machine is; it does not change when the
  model's code does, so a slower model on a healthy machine stays a regression.
* **Model reference**: the loaded model's own components (LLM, flow, vocoder) on fixed inputs,
  outside the engine under test (`cosyvoice_runtime.reference.ReferenceWork`, handed in by the
  host), timed beside the calibration. It follows the machine *and* the components' kernels (the
  installed torch, the model code), not the orchestration: a reference that moved beyond the
  machine tolerance makes a drift verdict inconclusive (tracking.drift.Machine).
* **Contention**: CPU time other processes used while the session ran (a busy neighbour on the
  same cores), the hypervisor's steal time, and on CUDA (with `nvidia-ml-py`, optional) clock
  throttling and other processes on the GPU.

The probes themselves (the workload, the CPU-time snapshots, NVML) are `probes.py`'s; this module
keeps what a session's health is, how it is judged and stored, and the monitor that collects it.
No pytest import here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ..stats import median
from .probes import CalibrationSample, Contention, Snapshot, gpu_state, measure, snapshot

# Contention thresholds: beyond these the machine is not the quiet one a baseline assumes.
OTHERS_CPU_LIMIT = 0.15           # share of all cores' time used by other processes
STEAL_LIMIT = 0.05                # share of CPU time the hypervisor gave to other guests
GPU_CLOCK_LIMIT = 0.75            # SM clock below 75 % of its maximum: throttled (as nvbench)


# -- the session's health -------------------------------------------------------------------------

Check = Literal["calibration", "model reference"]


@dataclass(frozen=True)
class HealthError:
    """A machine check that could not run: which one, and the message that says why."""

    check: Check
    message: str

    @classmethod
    def failed(cls, check: Check, device: str, e: Exception) -> HealthError:
        return cls(check, f"{check} on {device} failed: {type(e).__name__}: {e}")

    @classmethod
    def from_json(cls, data: Any) -> HealthError:
        if isinstance(data, dict):
            if data.get("check") not in get_args(Check):
                raise ValueError(f"health.errors: check {data.get('check')!r} is not one of {get_args(Check)}")
            return cls(data["check"], str(data.get("message", "")))
        # Stored as plain text before the check was a field: a reference's began with its name.
        text = str(data)
        return cls("model reference" if text.startswith("model reference") else "calibration", text)


@dataclass
class Health:
    """Calibration samples and contention of one session (or of the session that saved a baseline)."""

    calibration: list[CalibrationSample] = field(default_factory=list)
    others_cpu: float | None = None
    steal: float | None = None
    gpu: dict[str, Any] = field(default_factory=dict)
    errors: list[HealthError] = field(default_factory=list)   # checks that could not run, and why
    # The model reference's runs, in seconds (all components), and per component ("llm", "flow",
    # "hift") the same runs' shares; empty where no reference ran (an old baseline, no model).
    reference: list[float] = field(default_factory=list)
    reference_parts: dict[str, list[float]] = field(default_factory=dict)

    @property
    def calibration_s(self) -> float | None:
        """The median workload time: the machine's speed during the session."""
        if not self.calibration:
            return None
        return median(s.total_s for s in self.calibration)

    @property
    def reference_s(self) -> float | None:
        """The model reference's median time: the machine and the components' kernels together."""
        return median(self.reference) if self.reference else None

    def reference_part_s(self) -> dict[str, float]:
        """Each component's median share of the reference, in seconds."""
        return {name: median(values) for name, values in self.reference_parts.items() if values}

    def problems(self) -> list[str]:
        """Why this session's machine is busy or throttled (empty: quiet)."""
        out = []
        if self.others_cpu is not None and self.others_cpu > OTHERS_CPU_LIMIT:
            out.append(f"other processes used {self.others_cpu:.0%} of the CPU")
        if self.steal is not None and self.steal > STEAL_LIMIT:
            out.append(f"hypervisor steal {self.steal:.0%}")
        ratio = self.gpu.get("sm_clock_ratio")
        if ratio is not None and ratio < GPU_CLOCK_LIMIT:
            out.append(f"GPU clock at {ratio:.0%} of its maximum")
        if self.gpu.get("throttle_reasons") not in (None, "0x0"):
            out.append(f"GPU throttled (reasons {self.gpu['throttle_reasons']})")
        if self.gpu.get("other_processes"):
            out.append(f"other processes on the GPU (pids {', '.join(map(str, self.gpu['other_processes']))})")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"calibration": [asdict(s) for s in self.calibration], "calibration_s": self.calibration_s,
                "reference": list(self.reference), "reference_s": self.reference_s,
                "reference_parts": {k: list(v) for k, v in self.reference_parts.items()},
                "others_cpu": self.others_cpu, "steal": self.steal, "gpu": self.gpu,
                "errors": [asdict(e) for e in self.errors]}

    @classmethod
    def from_json(cls, data: Any) -> Health:
        """From a stored baseline or history line; raises ValueError on a malformed entry."""
        if not isinstance(data, dict):
            raise ValueError("health must be an object")
        cal = data.get("calibration", [])
        if not isinstance(cal, list):
            raise ValueError("health.calibration must be a list")
        samples = [CalibrationSample(float(s["device_s"]), float(s["python_s"])) for s in cal]
        def opt(name: str) -> float | None:
            v = data.get(name)
            return None if v is None else float(v)
        gpu = data.get("gpu") or {}
        if not isinstance(gpu, dict):
            raise ValueError("health.gpu must be an object")
        # Saved before the model reference existed: no "reference" keys, no reference to compare.
        ref = data.get("reference") or []
        parts = data.get("reference_parts") or {}
        if not isinstance(ref, list) or not isinstance(parts, dict) or not all(
                isinstance(v, list) for v in parts.values()):
            raise ValueError("health.reference must be a list and health.reference_parts an object of lists")
        errors = [HealthError.from_json(e) for e in data.get("errors", [])]
        return cls(samples, opt("others_cpu"), opt("steal"), gpu, errors, [float(v) for v in ref],
                   {str(k): [float(x) for x in v] for k, v in parts.items()})


# What the host hands the monitor as the model reference: one run of fixed work, returning the
# seconds each component took (cosyvoice_runtime.reference.ReferenceWork is one).
Reference = Callable[[], Mapping[str, float]]


class HealthMonitor:
    """Collects a session's health: `start()` once, `calibrate()` between rounds, `finish()` at the end.
    With a `reference`, every calibration also runs it (see the module docstring)."""

    def __init__(self, device: str, reference: Reference | None = None) -> None:
        self.device = device
        self.reference = reference
        self.health = Health()
        self._start: Snapshot | None = None

    def start(self) -> None:
        if self._start is None:
            self._start = snapshot()

    def calibrate(self) -> CalibrationSample | None:
        """One measurement; a workload that cannot run (a broken device) is noted, never raised:
        the machine then counts as not calibrated and verdicts say so."""
        self.start()
        self.run_reference()
        try:
            s = measure(self.device)
        except Exception as e:  # noqa: BLE001 - any failure of the workload is reported the same way
            self.health.errors.append(HealthError.failed("calibration", self.device, e))
            return None
        self.health.calibration.append(s)
        return s

    def run_reference(self) -> float | None:
        """One run of the model reference, if there is one; its total seconds. A reference that fails
        is noted in `health.errors` and not run again (the verdicts then say it was not compared)."""
        if self.reference is None:
            return None
        try:
            parts = {str(k): float(v) for k, v in self.reference().items()}
        except Exception as e:  # noqa: BLE001 - as for the calibration: noted, never raised
            self.health.errors.append(HealthError.failed("model reference", self.device, e))
            self.reference = None
            return None
        total = sum(parts.values())
        self.health.reference.append(total)
        for name, seconds in parts.items():
            self.health.reference_parts.setdefault(name, []).append(seconds)
        return total

    def finish(self) -> Health:
        if self._start is not None:
            c = Contention.between(self._start, snapshot())
            self.health.others_cpu, self.health.steal = c.others_cpu, c.steal
        if str(self.device).startswith("cuda"):
            self.health.gpu = gpu_state(self.device)
        return self.health
