"""Machine health (calibration workload, contention) and the plan of RTF rounds spread over a session."""
from __future__ import annotations

from typing import Any

import pytest

from pytest_cosyvoice import rounds
from pytest_cosyvoice.report.model import machine_facts
from pytest_cosyvoice.tracking import health as health_module
from pytest_cosyvoice.tracking import probes
from pytest_cosyvoice.tracking.health import Health, HealthMonitor
from pytest_cosyvoice.tracking.probes import CalibrationSample, Contention, Snapshot

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
    monkeypatch.setattr(probes.os, "cpu_count", lambda: 2)
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
    assert probes.gpu_state("cuda")["error"] == probes.NVML_HINT


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
    assert [e.check for e in health.errors] == ["calibration"]
    assert health.errors[0].message.startswith("calibration on cuda:7 failed: ")


# -- the model reference ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_runtime(tiny_v2_dir: Any) -> Any:
    import cosyvoice_runtime

    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


def test_the_model_reference_is_timed_beside_the_calibration(tiny_runtime: Any) -> None:
    from pytest_cosyvoice.host import monitor_for
    from pytest_cosyvoice.tracking.drift import Machine

    mon = monitor_for(tiny_runtime)          # what the host builds at the load
    mon.calibrate()
    mon.calibrate()
    health = mon.finish()
    assert len(health.calibration) == 2 and len(health.reference) == 2 and not health.errors
    assert all(s > 0 for s in health.reference)
    assert set(health.reference_parts) == {"llm", "flow", "hift"}
    for i, total in enumerate(health.reference):
        assert total == pytest.approx(sum(v[i] for v in health.reference_parts.values()))
    assert health.reference_s == pytest.approx(sum(health.reference) / 2)
    again = Health.from_json(health.to_json())
    assert again == health and again.reference_s == health.reference_s
    facts = dict(machine_facts(health, Machine(1.0, reference_ratio=1.01)))
    assert facts["model reference"].startswith(f"{1000 * health.reference_s:.1f} ms (median of 2; llm ")
    assert facts["against the baseline's machine"].endswith("(calibration x1.00); model reference x1.01")


def test_a_reference_that_fails_is_noted_once_and_the_calibration_goes_on() -> None:
    runs: list[int] = []

    def broken() -> dict[str, float]:
        runs.append(1)
        raise RuntimeError("flow shapes do not match")
    mon = HealthMonitor("cpu", reference=broken)
    assert mon.calibrate() is not None and mon.calibrate() is not None
    health = mon.finish()
    assert runs == [1] and health.reference == [] and health.reference_s is None and len(health.calibration) == 2
    failed = "model reference on cpu failed: RuntimeError: flow shapes do not match"
    assert health.errors == [health_module.HealthError("model reference", failed)]
    assert Health.from_json(health.to_json()) == health
    facts = dict(machine_facts(health, None))
    assert "calibration error" not in facts and "model reference" not in facts
    assert facts["model reference error"] == health.errors[0].message


def test_health_saved_before_the_reference_loads_without_one() -> None:
    old = {"calibration": [{"device_s": 0.01, "python_s": 0.02}], "calibration_s": 0.03, "others_cpu": 0.01,
           "steal": 0.0, "gpu": {}, "errors": []}
    health = Health.from_json(old)
    assert health.reference == [] and health.reference_parts == {} and health.reference_s is None
    # Errors stored as plain text before they were typed: which check each is comes from its words.
    old["errors"] = ["calibration on cuda failed: OSError: x", "model reference on cuda failed: KeyError: 'flow'"]
    assert [e.check for e in Health.from_json(old).errors] == ["calibration", "model reference"]
    assert health.calibration_s == pytest.approx(0.03)
    with pytest.raises(ValueError, match="health.reference must be a list"):
        Health.from_json({**old, "reference": 0.2})
    with pytest.raises(ValueError, match="reference_parts an object of lists"):
        Health.from_json({**old, "reference": [0.2], "reference_parts": {"llm": 0.1}})
