"""Speech tokens per second, one fact in one place (`cosyvoice_runtime.token_rate`): the flow's
`input_frame_rate` where it has one, else the generation's rate (v1 50 Hz, v2/v3 25 Hz, as upstream's
v1 flow classes default and the v2/v3 yaml set). The runtime's length cap is counted in seconds of
speech at that rate, so a v1 flow without the attribute must be capped at 50 tokens a second."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cosyvoice_runtime
from cosyvoice_runtime import TokenLimitExceeded, token_rate


@pytest.mark.parametrize("version, flow, rate", [
    (1, object(), 50.0), (2, object(), 25.0), (3, None, 25.0),
    (1, SimpleNamespace(input_frame_rate=25), 25.0), (2, SimpleNamespace(input_frame_rate=50), 50.0),
])
def test_token_rate(version: int, flow: Any, rate: float) -> None:
    assert token_rate(version, flow) == rate


class NoFrameRate:
    """The loaded v1 flow as an older or custom flow class may be: everything but `input_frame_rate`."""

    def __init__(self, flow: Any) -> None:
        self._flow = flow

    def __getattr__(self, name: str) -> Any:
        if name == "input_frame_rate":
            raise AttributeError(name)
        return getattr(self._flow, name)


def test_v1_cap_without_input_frame_rate_counts_50_tokens_a_second(tiny_v1_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rt = cosyvoice_runtime.load(tiny_v1_dir, device="cpu")
    rt.configure(token_hop_len=200, token_max_hop_len=400)   # few flow runs before the cap

    def endless(*args: Any, **kwargs: Any) -> Iterator[int]:
        yield from itertools.cycle(range(0, 4096, 7))   # never ends the utterance

    monkeypatch.setattr(rt.llm, "inference", endless)
    monkeypatch.setattr(rt, "flow", NoFrameRate(rt.flow))
    # A one-word text: the cap is its floor, 20 s of speech = 1000 v1 tokens (500 would be v2's rate).
    with pytest.raises(TokenLimitExceeded, match=r"generated more than 1000 speech tokens for \d+ text tokens"):
        rt.synthesize("Hi.", speaker=rt.speakers[0], text_frontend=False)
