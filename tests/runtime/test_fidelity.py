"""Same forced tokens through our runtime and the installed upstream orchestration class: the audio
must match chunk for chunk (upstream's token2wav and chunk loop are upstream's even in the packaged
copy). The packaged v2 class keeps its hop at 25 tokens, so the runtime is set to that schedule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import Runtime
from cosyvoice_runtime.upstream import UpstreamEngine
from pytest_cosyvoice.faults import forced_llm, forced_tokens, injected

TOKENS_V2 = forced_tokens(2, 120, seed=5)
TOKENS_V1 = forced_tokens(1, 260, seed=6)


def both(rt: Runtime, tokens: list[int], stream: bool, **kw: object) -> tuple[list[np.ndarray], list[np.ndarray]]:
    up = UpstreamEngine(rt)
    with injected(rt, tokens):
        torch.manual_seed(0)
        ours = [c.audio for c in (rt.stream("x", **kw) if stream else rt.synthesize("x", **kw).chunks)]
        torch.manual_seed(0)
        theirs = [c.audio for c in (up.stream("x", **kw) if stream else up.synthesize("x", **kw).chunks)]
    return ours, theirs


def assert_same(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert [a.size for a in ours] == [b.size for b in theirs]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=0, err_msg=f"chunk {i}")


@pytest.fixture(scope="module")
def v2(tiny_v2_dir: Path) -> Runtime:
    rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    rt.configure(token_max_hop_len=25, stream_scale_factor=1.0)  # the packaged upstream class's schedule
    return rt


@pytest.fixture(scope="module")
def v1(tiny_v1_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v1_dir, device="cpu")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_v2_matches_upstream(v2: Runtime, voice: Path, stream: bool) -> None:
    ours, theirs = both(v2, TOKENS_V2, stream, prompt_wav=voice, prompt_text="A short prompt sentence.")
    if stream:
        assert len(ours) >= 4
    assert_same(ours, theirs)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_v1_matches_upstream(v1: Runtime, stream: bool) -> None:
    ours, theirs = both(v1, TOKENS_V1, stream, speaker=v1.speakers[0])
    if stream:
        assert len(ours) >= 2
    assert_same(ours, theirs)


@pytest.mark.parametrize("version", [1, 2])
def test_streamed_and_non_streamed_durations_agree(request: pytest.FixtureRequest, version: int) -> None:
    rt: Runtime = request.getfixturevalue(f"v{version}")
    tokens = TOKENS_V1 if version == 1 else TOKENS_V2
    with injected(rt, tokens):
        streamed = sum(c.audio.size for c in rt.stream("x", speaker=rt.speakers[0]))
        whole = rt.synthesize("x", speaker=rt.speakers[0]).audio.size
    # v1 rounds mel frames per chunk window (22050/256 per 50 tokens): allow one mel frame per chunk.
    assert abs(streamed - whole) <= 256 * 8


def test_default_schedule_grows_per_request_not_shared(tiny_v2_dir: Path) -> None:
    """Upstream HEAD doubles a shared hop (25 -> 100) and keeps it for later requests; ours restarts."""
    rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    rt.llm.inference = forced_llm(TOKENS_V2 * 2)  # type: ignore[method-assign]
    spk = rt.speakers[0]
    first = [c.tokens for c in rt.stream("x", speaker=spk)]
    second = [c.tokens for c in rt.stream("x", speaker=spk)]
    assert first == second
    assert first[:3] == [25, 50, 100]
