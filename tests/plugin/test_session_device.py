"""Which device the session's figures are keyed by (`CosySession.device_used`, read by finish.py): the
loaded model's, on the xdist controller the one a worker reported over the wire, and only where no
model was loaded anywhere the setting's own resolution. No model is loaded here."""
from __future__ import annotations

import pytest

from pytest_cosyvoice.session import CosySession
from pytest_cosyvoice.settings import Settings


def test_the_controller_takes_the_device_a_worker_loaded_on(pytestconfig: pytest.Config) -> None:
    worker = CosySession(pytestconfig, Settings(device="auto", fp16=False))
    worker.host.loaded_on = ("cuda:1", True)   # as its host's runtime() sets it after a load
    wire = worker.to_wire()
    controller = CosySession(pytestconfig, Settings(device="cpu", fp16=False))
    controller.merge_wire(wire)
    assert controller.device_used() == ("cuda:1", True)


@pytest.mark.parametrize("device", ["cpu", "cuda:3"])
def test_without_a_load_the_setting_is_used(pytestconfig: pytest.Config, device: str) -> None:
    assert CosySession(pytestconfig, Settings(device=device, fp16=False)).device_used() == (device, False)


def test_a_wire_without_a_device_changes_nothing(pytestconfig: pytest.Config) -> None:
    controller = CosySession(pytestconfig, Settings(device="cpu"))
    wire = CosySession(pytestconfig, Settings(device="cpu")).to_wire()
    controller.merge_wire(wire)
    assert controller.device_used() == ("cpu", False)


def test_auto_is_resolved_in_one_place(pytestconfig: pytest.Config) -> None:
    # The runtime loads, and the plugin keys figures without a load, where resolve_auto says.
    torch = pytest.importorskip("torch")
    from cosyvoice_runtime import InvalidInput, resolve_auto
    from cosyvoice_runtime.runtime import resolve_device

    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_auto("auto") == where and str(resolve_device("auto")) == where
    assert CosySession(pytestconfig, Settings(device="auto")).device_used() == (where, False)
    assert [resolve_auto(d) for d in ("cpu", "cuda", "cuda:3")] == ["cpu", "cuda", "cuda:3"]
    with pytest.raises(InvalidInput, match="device='gpu': expected"):
        resolve_auto("gpu")
