"""Machine probes: what `health.HealthMonitor` measures of the machine. The calibration workload
(`measure`: a fixed-shape matmul and 1-D convolution on the test's device and a pure-Python loop,
best of `REPEATS`), CPU-time snapshots (`snapshot`) and the contention between two of them
(`Contention.between`: other processes' CPU share, the hypervisor's steal), and the GPU's state
through NVML (`gpu_state`, optional `nvidia-ml-py`). How they are judged is `health.py`'s.

No pytest import here; torch, psutil and pynvml are imported where used.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Shapes are fixed so that a measurement means the same on every run; about 20-30 ms each on a
# 2-core CPU, a few ms on a GPU.
MATMUL_N = 192
MATMUL_STEPS = 24
CONV_SHAPE = (1, 64, 8192)       # batch, channels, frames
CONV_KERNEL = 7
PY_LOOP = 200_000
REPEATS = 3                       # per measurement; the minimum is kept (noise only adds time)
NVML_HINT = "install nvidia-ml-py (`pip install nvidia-ml-py`) to check GPU clocks and other GPU processes"


@dataclass(frozen=True)
class CalibrationSample:
    """One timing of the fixed workload, in seconds."""

    device_s: float
    python_s: float

    @property
    def total_s(self) -> float:
        return self.device_s + self.python_s


def measure(device: str = "cpu") -> CalibrationSample:
    """Time the fixed workload once (best of REPEATS) on `device` ("cpu", "cuda", "cuda:N")."""
    import torch

    dev = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen).to(dev)
    x = torch.randn(*CONV_SHAPE, generator=gen).to(dev)
    w = torch.randn(CONV_SHAPE[1], CONV_SHAPE[1], CONV_KERNEL, generator=gen).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def device_work() -> None:
        with torch.inference_mode():
            b = a
            for _ in range(MATMUL_STEPS):
                b = torch.tanh(b @ a)
            torch.nn.functional.conv1d(x, w, padding=CONV_KERNEL // 2)
        sync()

    def python_work() -> int:
        acc = 0
        for i in range(PY_LOOP):
            acc = (acc + i * i) % 1_000_003
        return acc

    device_work()  # first call: kernel selection and allocation, not the machine's speed
    best_dev = best_py = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        device_work()
        best_dev = min(best_dev, time.perf_counter() - t)
        t = time.perf_counter()
        python_work()
        best_py = min(best_py, time.perf_counter() - t)
    return CalibrationSample(best_dev, best_py)


# -- contention -----------------------------------------------------------------------------------

def _proc_stat() -> tuple[float, float] | None:
    """(all CPU jiffies, steal jiffies) from /proc/stat, or None where there is none."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [float(v) for v in first[1:]]
    steal = values[7] if len(values) > 7 else 0.0
    # guest times are already counted in user/nice
    return sum(values[:8]), steal


@dataclass
class Snapshot:
    wall: float
    system_busy_s: float | None
    own_cpu_s: float
    stat: tuple[float, float] | None


def snapshot() -> Snapshot:
    try:
        import psutil
    except ImportError:  # psutil is a core dependency; keep the gate running without it anyway
        psutil = None
    busy = None
    own = time.process_time()
    if psutil is not None:
        t = psutil.cpu_times()
        busy = float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                     + getattr(t, "softirq", 0.0))
        p = psutil.Process().cpu_times()
        own = float(p.user + p.system + p.children_user + p.children_system)
    return Snapshot(time.monotonic(), busy, own, _proc_stat())


@dataclass(frozen=True)
class Contention:
    """What other work shared the machine between two snapshots."""

    seconds: float
    others_cpu: float | None       # share of all cores' time other processes used
    steal: float | None            # share of CPU time stolen by the hypervisor

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Contention:
        wall = max(b.wall - a.wall, 1e-9)
        cores = os.cpu_count() or 1
        others = None
        if a.system_busy_s is not None and b.system_busy_s is not None:
            others = max(0.0, (b.system_busy_s - a.system_busy_s) - (b.own_cpu_s - a.own_cpu_s)) / (wall * cores)
        steal = None
        if a.stat is not None and b.stat is not None and b.stat[0] > a.stat[0]:
            steal = (b.stat[1] - a.stat[1]) / (b.stat[0] - a.stat[0])
        return cls(wall, others, steal)


# -- GPU state (optional NVML) --------------------------------------------------------------------

def gpu_state(device: str) -> dict[str, Any]:
    """SM clock vs its maximum, throttle reasons, other processes on the GPU; `{"error": why}` when
    NVML cannot be asked (not installed, no driver). Never raises."""
    try:
        import pynvml
    except ImportError:
        return {"error": NVML_HINT}
    try:
        import torch

        index = torch.device(device).index or 0
        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            sm = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
            sm_max = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
            reasons = int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
                          if hasattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons")
                          else pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
            others = sorted({int(p.pid) for p in procs} - {os.getpid()})
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # noqa: BLE001 - NVML errors come as many types; health then says why
        return {"error": f"NVML: {type(e).__name__}: {e}"}
    # Idle (0x1) and application-clock settings (0x2) are not slowdowns; the rest are.
    slowing = reasons & ~0x3
    return {"sm_clock_ratio": (sm / sm_max) if sm_max else None, "throttle_reasons": hex(slowing),
            "other_processes": others}
