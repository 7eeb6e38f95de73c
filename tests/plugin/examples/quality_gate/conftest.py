"""The inner sessions of tests/plugin/test_quality_gate.py: QUALITY_DEFECT=noise adds white noise at
-20 dB to the vocoder's output, injected at the loaded component (as the suites inject faults)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _defect(cosy_model: Any) -> Iterator[None]:
    if os.environ.get("QUALITY_DEFECT") != "noise":
        yield
        return
    hift = cosy_model.hift
    clean = hift.inference
    rng = np.random.default_rng(0)

    def noisy(*args: Any, **kwargs: Any) -> Any:
        speech, source = clean(*args, **kwargs)
        rms = float(speech.float().pow(2).mean().sqrt())
        noise = torch.from_numpy(rng.standard_normal(tuple(speech.shape)).astype(np.float32))
        return speech + (0.1 * rms * noise).to(speech.dtype), source     # -20 dB

    hift.inference = noisy
    try:
        yield
    finally:
        del hift.inference
