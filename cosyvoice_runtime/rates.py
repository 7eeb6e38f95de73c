"""Speech tokens per second, the rate every length in tokens converts by (the runtime's length cap,
the v1 renderer's hop and overlap, the plugin's samples per token)."""
from __future__ import annotations

from typing import Any

# Upstream's v1 flow classes default `input_frame_rate` to 50 and its v1 models use that; the v2/v3
# yaml set it to 25 (`token_frame_rate`). A flow without the attribute is taken at its generation's rate.
V1_TOKEN_RATE = 50
TOKEN_RATE = 25


def token_rate(version: int, flow: Any) -> float:
    """Speech tokens per second of a model: its flow's `input_frame_rate` where the flow has one, else
    50 for v1 and 25 for v2/v3."""
    rate = getattr(flow, "input_frame_rate", None)
    return float(rate or (V1_TOKEN_RATE if version == 1 else TOKEN_RATE))
