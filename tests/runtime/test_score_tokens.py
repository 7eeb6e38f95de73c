"""`Runtime.score_tokens` (issue #18): teacher forcing of the loaded LLM, the rank of each given token.

Alignment is checked exactly: the log-probabilities of the forced pass over the tokens a seeded
synthesis sampled are those the LLM's own `inference` handed its sampler at each step (recorded by a
pass-through wrapper around the real sampler), bit for bit; a prefix one position off would compare
other rows. On the tiny models the top-25 candidates change almost completely from one step to the
next (the decoder's logits are near-flat but context-dependent), so the ranks tell the LLM's own
tokens (all within top_k) from random ones (about 25/vocab of them) and from the right tokens scored
one row off (none within top_k)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cosyvoice_runtime
from cosyvoice_runtime import InvalidInput, Runtime, TokenScores
from cosyvoice_runtime.scoring import forced_logp, ranks_of
from cosyvoice_runtime.tiny.spec import SPEAKER, SPEECH_VOCAB, TOP_K
from pytest_cosyvoice.faults import forced_tokens

TEXT = "Hello there, this is one sentence to score."
PROMPT_TEXT = "A short prompt sentence."


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def rt(request: pytest.FixtureRequest, tiny_v1_dir: Path, tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v1_dir if request.param == 1 else tiny_v2_dir, device="cpu")


def voices(rt: Runtime, voice: Path) -> list[dict[str, Any]]:
    """Zero-shot (prompt text and speech tokens in the LLM input) and, on v1, sft (the speaker
    embedding in the LLM input; v2's LLM takes none)."""
    zero_shot = dict(prompt_wav=str(voice), prompt_text=PROMPT_TEXT)
    return [dict(speaker=SPEAKER), zero_shot] if rt.version == 1 else [zero_shot]


class Recorder:
    """Wraps the LLM's real sampler on one Runtime instance and keeps the scores of each step's first
    call (the step is the number of tokens decoded before it)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sampler = rt.llm.sampling
        self.steps: dict[int, torch.Tensor] = {}

    def __call__(self, scores: torch.Tensor, decoded: list[int], sampling: int) -> Any:
        self.steps.setdefault(len(decoded), scores.detach().clone())
        return self.sampler(scores, decoded, sampling)


@pytest.fixture
def recorded(rt: Runtime) -> Iterator[Recorder]:
    rec = Recorder(rt)
    rt.llm.sampling = rec
    try:
        yield rec
    finally:
        rt.llm.sampling = rec.sampler


def test_the_forced_pass_gives_the_logits_the_sampler_saw(rt: Runtime, voice: Path, recorded: Recorder) -> None:
    for kw in voices(rt, voice):
        recorded.steps.clear()
        syn = rt.synthesize(TEXT, seed=31, **kw)
        tokens = list(syn.stats.speech_tokens or ())
        assert len(tokens) > 10
        seen = torch.stack([recorded.steps[i].float() for i in range(len(tokens))])
        inp = rt.plan(TEXT, **kw).inputs[0]
        forced = forced_logp(rt.llm, inp, tokens, rt.device)  # fp32: no autocast
        assert forced.shape == seen.shape
        assert torch.equal(forced, seen), f"{kw}: max difference {(forced - seen).abs().nan_to_num().max()}"


def test_the_llms_own_tokens_rank_within_top_k_and_random_ones_do_not(rt: Runtime, voice: Path) -> None:
    for kw in voices(rt, voice):
        own = list(rt.synthesize(TEXT, seed=32, **kw).stats.speech_tokens or ())
        scores = rt.score_tokens(TEXT, own, **kw)
        assert isinstance(scores, TokenScores) and scores.top_k == TOP_K == rt.sampling_top_k
        assert len(scores.ranks) == len(own)
        # Measured: every own token of these seeds is within top_k (ras_sampling's repetition fallback,
        # which draws from the whole vocabulary, did not fire); >= 95 % leaves room for it.
        inside = 1 - len(scores.outside(TOP_K)) / len(own)
        assert inside >= 0.95, scores.ranks
        rand = forced_tokens(rt.version, len(own), seed=33)
        rscores = rt.score_tokens(TEXT, rand, **kw)
        assert len(rscores.outside(TOP_K)) / len(rand) >= 0.8, rscores.ranks
        assert np.median(rscores.ranks) > 20 * max(1.0, float(np.median(scores.ranks)))
        assert rscores.first_outside(TOP_K) is not None and rscores.first_outside(TOP_K) <= 5


def test_one_row_off_the_llms_own_tokens_rank_like_random_ones(rt: Runtime, voice: Path) -> None:
    """What an off-by-one in the prefix would give: the right tokens against the neighbouring rows."""
    kw = voices(rt, voice)[-1]
    own = list(rt.synthesize(TEXT, seed=34, **kw).stats.speech_tokens or ())
    logp = forced_logp(rt.llm, rt.plan(TEXT, **kw).inputs[0], own, rt.device)
    aligned = ranks_of(logp, own)
    early, late = ranks_of(logp[1:], own[:-1]), ranks_of(logp[:-1], own[1:])
    assert sum(r < TOP_K for r in aligned) / len(own) >= 0.95
    for off in (early, late):
        assert sum(r < TOP_K for r in off) / len(off) <= 0.2, off


def test_token_scores_outside_and_first_outside() -> None:
    s = TokenScores(ranks=(0, 3, 30, 2, 25, 24), top_k=25)
    assert s.outside(25) == [2, 4]
    assert s.first_outside(25) == 2
    assert s.outside(1) == [1, 2, 3, 4, 5]
    assert s.first_outside(31) is None and s.outside(31) == []
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(InvalidInput, match="expected a positive whole number"):
            s.outside(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="expected a positive whole number"):
            s.first_outside(bad)  # type: ignore[arg-type]


def test_several_sentences_and_bad_tokens_are_refused(rt: Runtime, voice: Path) -> None:
    kw = voices(rt, voice)[-1]
    # The text frontend merges short sentences (upstream's split by text tokens): long ones stay apart.
    long = " ".join(f"Sentence number {i} goes on for a good while, with words enough to stand on its own, "
                    "so that the text frontend keeps it apart from the others around it." for i in range(4))
    n = len(rt.plan(long, **kw).inputs)
    assert n >= 2
    with pytest.raises(InvalidInput, match=f"score_tokens takes one sentence; the text has {n}"):
        rt.score_tokens(long, [1, 2, 3], **kw)
    vocab = SPEECH_VOCAB[rt.version]
    with pytest.raises(InvalidInput, match=rf"tokens\[1\]={vocab}: outside the speech vocabulary.*0 to {vocab - 1}"):
        rt.score_tokens(TEXT, [1, vocab], **kw)
    with pytest.raises(InvalidInput, match="empty"):
        rt.score_tokens(TEXT, [], **kw)
    with pytest.raises(InvalidInput, match=r"tokens\[0\]='a': not a whole number"):
        rt.score_tokens(TEXT, ["a"], **kw)
    with pytest.raises(InvalidInput, match="takes the text as a str"):
        rt.score_tokens(iter(["Hello."]), [1, 2], **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="voice conversion"):
        rt.score_tokens(TEXT, [1, 2], prompt_wav=str(voice), source_wav=str(voice))
