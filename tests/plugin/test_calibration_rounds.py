"""Machine health (calibration workload, contention) and the plan of RTF rounds spread over a session."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_cosyvoice import rounds
from pytest_cosyvoice.tracking import health as health_module
from pytest_cosyvoice.tracking.health import CalibrationSample, Contention, Health, HealthMonitor, Snapshot

# Imported at collection: an inline pytester run that imports torch first drops it from sys.modules
# afterwards, and a second import of torch in one process fails (see tests/fixtures.py warm_tiny).
pytest.importorskip("torch")


def test_the_workload_runs_and_is_recorded() -> None:
    mon = HealthMonitor("cpu")
    mon.start()
    s = mon.calibrate()
    assert s.device_s > 0 and s.python_s > 0 and s.total_s == s.device_s + s.python_s
    health = mon.finish()
    assert health.calibration == [s] and health.calibration_s == s.total_s
    assert health.others_cpu is not None and 0 <= health.others_cpu <= 1
    assert Health.from_json(health.to_json()) == health


def test_contention_is_other_processes_share_of_all_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module.os, "cpu_count", lambda: 2)
    # 10 s of wall time on 2 cores; the system was busy 14 s, 4 s of it this process: others 50 %.
    a = Snapshot(wall=100.0, system_busy_s=1000.0, own_cpu_s=50.0, stat=(10_000.0, 0.0))
    b = Snapshot(wall=110.0, system_busy_s=1014.0, own_cpu_s=54.0, stat=(12_000.0, 200.0))
    c = Contention.between(a, b)
    assert c.others_cpu == pytest.approx(0.5) and c.steal == pytest.approx(0.1)


@pytest.mark.parametrize("health, why", [
    (Health(others_cpu=0.5), "other processes used 50% of the CPU"),
    (Health(steal=0.2), "hypervisor steal 20%"),
    (Health(gpu={"sm_clock_ratio": 0.5}), "GPU clock at 50% of its maximum"),
    (Health(gpu={"throttle_reasons": "0x20"}), "GPU throttled"),
    (Health(gpu={"other_processes": [123]}), "other processes on the GPU"),
])
def test_health_problems_say_why(health: Health, why: str) -> None:
    assert any(why in p for p in health.problems())
    assert Health(others_cpu=0.02, steal=0.0, gpu={"sm_clock_ratio": 0.98, "throttle_reasons": "0x0"}).problems() == []


def test_gpu_state_without_nvml_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_nvml(name: str, *a: Any, **k: Any) -> Any:
        if name == "pynvml":
            raise ImportError("no pynvml")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_nvml)
    assert health_module.gpu_state("cuda")["error"] == health_module.NVML_HINT


def test_health_from_bad_json_names_the_field() -> None:
    with pytest.raises(ValueError, match="calibration must be a list"):
        Health.from_json({"calibration": "fast"})
    with pytest.raises(ValueError, match="health must be an object"):
        Health.from_json([1])
    assert Health.from_json({"calibration": [{"device_s": 0.01, "python_s": 0.02}]}).calibration == [
        CalibrationSample(0.01, 0.02)]


class _Item:
    def __init__(self, name: str, repeat: int) -> None:
        self.nodeid, self.repeat = name, repeat


def test_rounds_cover_each_test_once_per_round_in_shuffled_orders() -> None:
    items = [_Item(f"t{i}", 5) for i in range(8)] + [_Item("short", 2), _Item("once", 1)]
    plan = rounds.plan(items, lambda it: it.repeat, seed=3)  # type: ignore[arg-type, attr-defined]
    assert len(plan.rounds) == 4                      # rounds 2..5
    assert [len(r) for r in plan.rounds] == [9, 8, 8, 8]
    assert "short" in [it.nodeid for it in plan.rounds[0]] and all(
        "short" not in [it.nodeid for it in r] for r in plan.rounds[1:])
    assert all("once" not in [it.nodeid for it in r] for r in plan.rounds)
    orders = {tuple(it.nodeid for it in r if it.nodeid != "short") for r in plan.rounds}
    assert len(orders) > 1, "each round gets its own order"
    again = rounds.plan(items, lambda it: it.repeat, seed=3)  # type: ignore[arg-type, attr-defined]
    assert [[it.nodeid for it in r] for r in again.rounds] == [[it.nodeid for it in r] for r in plan.rounds]
    assert rounds.plan(items[-1:], lambda it: it.repeat, seed=0).rounds == []  # type: ignore[arg-type, attr-defined]


def test_a_calibration_that_cannot_run_is_noted_not_raised() -> None:
    mon = HealthMonitor("cuda:7")       # no such device here: torch refuses it
    assert mon.calibrate() is None
    health = mon.finish()
    assert health.calibration_s is None
    assert health.errors and health.errors[0].startswith("calibration on cuda:7 failed: ")
