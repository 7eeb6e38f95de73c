"""Bounded-context flow on v2 (``configure(flow_context_tokens=K)``): the flow sees the prompt plus
about the last K tokens before the new ones instead of every token since the start.

Same forced tokens, same zero-shot prompt, through exact mode and bounded mode on the tiny v2 model.
A K at least the number of tokens must change nothing; a small K must keep the chunk schedule, the
sample counts and the chunks rendered before the bound takes effect, and really bound the flow's input.
HiFT's sine source draws random numbers, so every stream starts from the same torch seed.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import Chunk, InvalidInput, Runtime
from pytest_cosyvoice.faults import forced_llm, forced_tokens

TOKENS = forced_tokens(2, 300, seed=11)
SMALL_K = 50
PROMPT_TEXT = "A short prompt sentence."


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Iterator[Runtime]:
    # One intra-op thread for this module (exact and bounded streams alike): on a 2-core machine shared
    # with other test processes, two threads made this module about 5x slower (160 s instead of 30 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    finally:
        torch.set_num_threads(threads)


def run(rt: Runtime, voice: Path, context: int | None) -> tuple[list[Chunk], list[int]]:
    """The streamed chunks and the token count of every flow call (prompt tokens not included)."""
    flow_tokens: list[int] = []
    inference: Callable[..., Any] = rt.flow.inference

    def recording(**kw: Any) -> Any:
        flow_tokens.append(int(kw["token"].shape[1]))
        return inference(**kw)

    rt.configure(flow_context_tokens=context)
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    rt.flow.inference = recording  # type: ignore[method-assign]
    try:
        torch.manual_seed(0)
        chunks = list(rt.stream("x", prompt_wav=voice, prompt_text=PROMPT_TEXT))
    finally:
        del rt.llm.inference, rt.flow.inference
        rt.configure(flow_context_tokens=None)
    return chunks, flow_tokens


@pytest.fixture(scope="module")
def exact(rt: Runtime, voice: Path) -> tuple[list[Chunk], list[int]]:
    return run(rt, voice, None)


def test_context_covering_all_tokens_is_exact(rt: Runtime, voice: Path, exact: tuple[list[Chunk], list[int]]) -> None:
    ref, ref_flow = exact
    chunks, flow_tokens = run(rt, voice, len(TOKENS))
    assert len(ref) >= 4 and sum(c.tokens for c in ref) == len(TOKENS)
    assert [c.tokens for c in chunks] == [c.tokens for c in ref]
    assert flow_tokens == ref_flow and ref_flow[-1] == len(TOKENS)
    for c, r in zip(chunks, ref, strict=True):
        assert c.audio.dtype == r.audio.dtype and c.audio.shape == r.audio.shape, f"chunk {c.index}"
        assert np.array_equal(c.audio, r.audio), f"chunk {c.index} differs from exact mode"


def test_small_context(rt: Runtime, voice: Path, exact: tuple[list[Chunk], list[int]]) -> None:
    ref, ref_flow = exact
    chunks, flow_tokens = run(rt, voice, SMALL_K)

    # Same schedule and lengths: every token rendered once, each chunk as long as in exact mode.
    assert [c.tokens for c in chunks] == [c.tokens for c in ref]
    assert sum(c.tokens for c in chunks) == len(TOKENS)
    assert [c.audio.size for c in chunks] == [r.audio.size for r in ref]
    for c in chunks:
        assert c.audio.dtype == np.float32 and np.isfinite(c.audio).all(), f"chunk {c.index}"
        assert np.abs(c.audio).max() <= 1.0, f"chunk {c.index}"

    # A chunk is rendered from the tokens before its offset; up to an offset of K the flow sees them all.
    offsets = np.cumsum([0] + [c.tokens for c in ref[:-1]])
    before = [i for i, off in enumerate(offsets) if off <= SMALL_K]
    after = [i for i, off in enumerate(offsets) if off > SMALL_K]
    assert len(before) >= 2 and len(after) >= 2, offsets  # the schedule exercises both sides
    for i in before:
        assert np.array_equal(chunks[i].audio, ref[i].audio), f"chunk {i} (offset {offsets[i]}) differs from exact"
    assert flow_tokens[:len(before)] == ref_flow[:len(before)]

    # The bound holds: context (K plus less than one 25-token encoder chunk) + a hop of at most 100 + lookahead 3.
    lookahead = int(rt.flow.pre_lookahead_len)
    assert max(ref_flow) == len(TOKENS)
    assert max(flow_tokens) <= SMALL_K + 24 + rt.settings.token_max_hop_len + lookahead, flow_tokens
    later = zip(flow_tokens[len(before):], ref_flow[len(before):], strict=False)
    assert all(n < r for n, r in later), (flow_tokens, ref_flow)

    # Later chunks differ from exact (less context, and the decoder's fixed noise is taken from frame 0
    # of the shorter input). How much is not checked here: the tiny model's audio hardly depends on the
    # tokens (another random token sequence lands about 2 % RMS from these chunks, bounded mode about
    # 5 %), so a mis-cut mel would pass a deviation bound; test_bounded_windows_and_cuts checks the cut.
    for i in after:
        assert not np.array_equal(chunks[i].audio, ref[i].audio), f"chunk {i}: bound had no effect"


@pytest.mark.parametrize("hop", [25, 30])
def test_bounded_windows_and_cuts(rt: Runtime, voice: Path, hop: int) -> None:
    """With a stand-in flow whose mel frames carry the token ids, the mel handed to HiFT for each chunk
    must be exactly that chunk's tokens, and every flow window must start on a chunk boundary of the
    causal encoder (so its chunk mask splits the tokens as in exact mode) at least K tokens back,
    also with a hop that is not the encoder's chunk size."""
    lookahead, ratio = int(rt.flow.pre_lookahead_len), int(rt.flow.token_mel_ratio)
    chunk = int(rt.flow.encoder.static_chunk_size)
    windows: list[list[int]] = []
    feats: list[torch.Tensor] = []
    vocode = rt.hift.inference

    def flow(*, token: torch.Tensor, finalize: bool, **kw: Any) -> tuple[torch.Tensor, None]:
        ids = token[0].tolist()
        windows.append(ids)
        kept = ids if finalize else ids[:-lookahead]  # the streaming flow holds the lookahead back
        mel = torch.tensor(kept, dtype=torch.float32).div(1000).repeat_interleave(ratio)
        return mel.expand(1, 80, -1).clone(), None

    def hift(*, speech_feat: torch.Tensor, **kw: Any) -> Any:
        feats.append(speech_feat.clone())
        return vocode(speech_feat=speech_feat, **kw)

    saved = rt.settings
    rt.configure(flow_context_tokens=SMALL_K, token_hop_len=hop)
    rt.llm.inference = forced_llm(TOKENS)  # type: ignore[method-assign]
    rt.flow.inference, rt.hift.inference = flow, hift  # type: ignore[method-assign]
    try:
        chunks = list(rt.stream("x", prompt_wav=voice, prompt_text=PROMPT_TEXT))
    finally:
        del rt.llm.inference, rt.flow.inference, rt.hift.inference
        rt.settings = saved

    sizes = [c.tokens for c in chunks]
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    assert len(windows) == len(feats) == len(chunks) and sum(sizes) == len(TOKENS)
    bounded = 0
    for i, (off, n, win, feat) in enumerate(zip(offsets, sizes, windows, feats, strict=True)):
        last = i == len(chunks) - 1
        end = len(TOKENS) if last else off + n + lookahead
        start = end - len(win)
        assert win == TOKENS[start:end], f"chunk {i}: flow window is not the tokens {start}..{end}"
        if off <= SMALL_K:
            assert start == 0, f"chunk {i}: offset {off} <= K, expected every token"
        else:
            bounded += 1
            assert start % chunk == 0, f"chunk {i}: window starts at token {start}, not on a {chunk}-token chunk"
            assert SMALL_K <= off - start < SMALL_K + chunk, f"chunk {i}: {off - start} context tokens for K={SMALL_K}"
        new = feat[0, 0, -n * ratio:]  # HiFT gets its cached mel frames first, then this chunk's
        got = new.mul(1000).round().long().view(n, ratio)
        assert (got == got[:, :1]).all() and got[:, 0].tolist() == TOKENS[off:off + n], f"chunk {i}: mel cut"
    assert bounded >= 2


@pytest.mark.parametrize("value", [0, -3, "a", True, 2.5])
def test_invalid_context_refused(rt: Runtime, value: object) -> None:
    before = rt.settings
    with pytest.raises(InvalidInput, match=re.escape(f"flow_context_tokens={value!r}")):
        rt.configure(flow_context_tokens=value)
    assert rt.settings == before  # nothing half-applied


def test_valid_context_accepted(rt: Runtime) -> None:
    try:
        assert rt.configure(flow_context_tokens=1).flow_context_tokens == 1
        assert rt.configure(flow_context_tokens=None).flow_context_tokens is None
    finally:
        rt.configure(flow_context_tokens=None)
