"""Hostile but realistic inputs through the public API on the embedded tiny models: each is refused
where it enters, with an error naming the value and what was expected (no traceback from torch,
numpy, threading or soundfile), and no generation runs without end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime

TIMEOUT_MSG = r"expected a positive number of seconds, finite and at most 86400"


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


# -- timeouts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -2.0, 1e12])
def test_load_refuses_bad_stall_timeout(tiny_v2_dir: Path, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"^stall_timeout_s={value!r}: {TIMEOUT_MSG}$"):
        cosyvoice_runtime.load(tiny_v2_dir, device="cpu", stall_timeout_s=value)


@pytest.mark.parametrize("name", ["stall_timeout_s", "join_timeout_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1])
def test_configure_refuses_bad_timeouts(rt: Runtime, name: str, value: float) -> None:
    before = rt.settings
    with pytest.raises(InvalidInput, match=rf"^{name}={value!r}: {TIMEOUT_MSG}$"):
        rt.configure(**{name: value})
    assert rt.settings == before


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.5, True])
def test_configure_refuses_bad_scale_factor(rt: Runtime, value: float) -> None:
    with pytest.raises(InvalidInput, match=rf"stream_scale_factor={value!r}: expected a finite number >= 1"):
        rt.configure(stream_scale_factor=value)
