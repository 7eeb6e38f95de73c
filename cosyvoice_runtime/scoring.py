"""Teacher forcing of the loaded LLM: how probable the LLM finds a given speech token sequence.

``forced_logp`` runs the LLM on the input its ``inference`` builds (start token, v1 speaker
embedding, text, task token, prompt speech tokens) followed by the given tokens, and returns the
log-probabilities the sampler would have seen before each of them; ``TokenScores`` turns them into
ranks (0 = the most probable id). A quality gate uses the ranks to tell numeric drift (a golden
sequence still within the new LLM's top-k) from changed sampling or weights (it falls out).

The input layout follows upstream's ``TransformerLM.inference`` (v1) and ``Qwen2LM.inference`` (v2,
and v3 LLMs built on it); the code is ours. The pass is incremental, like those loops: the prefix in
one call, then one token per call with the key/value cache, so each step's logits are computed by the
same operations the sampler's were (a single full causal pass agrees only to rounding, and the tiny
models' near-flat logits would then swap neighbouring ranks).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from .errors import InvalidInput, shown
from .frontend import ModelInput


@dataclass(frozen=True)
class TokenScores:
    """The LLM's rank of each given token (0 = most probable) given the text, the voice and the tokens
    before it; ``top_k`` is the LLM's sampling top_k as loaded (None when not readable)."""

    ranks: tuple[int, ...]
    top_k: int | None

    def outside(self, k: int) -> list[int]:
        """The positions whose token is not among the ``k`` most probable (rank >= k)."""
        k = _check_k(k)
        return [i for i, r in enumerate(self.ranks) if r >= k]

    def first_outside(self, k: int) -> int | None:
        """The first position whose rank is >= ``k``; None when every token is within the top ``k``."""
        k = _check_k(k)
        return next((i for i, r in enumerate(self.ranks) if r >= k), None)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k={shown(k)}: expected a positive whole number of candidates")
    return k


def ranks_of(logp: torch.Tensor, tokens: Sequence[int]) -> tuple[int, ...]:
    """Per row i of ``logp`` [N, V], how many ids score strictly above ``tokens[i]`` (ties share the
    better rank, so a token the sampler could pick from a tie is never pushed out of a top-k)."""
    idx = torch.tensor(list(tokens), dtype=torch.long, device=logp.device)
    own = logp.gather(1, idx[:, None])
    return tuple(int(r) for r in (logp > own).sum(dim=1).tolist())


def _qwen2_class() -> type | None:
    try:
        from cosyvoice.llm.llm import Qwen2LM
    except ImportError:  # an upstream without the v2 LLM: only v1 can be scored
        return None
    cls: type = Qwen2LM
    return cls


def _transformer_class() -> type | None:
    try:
        from cosyvoice.llm.llm import TransformerLM
    except ImportError:
        return None
    cls: type = TransformerLM
    return cls


def llm_kind(llm: Any) -> str | None:
    """"qwen2" (v2/v3: Qwen2LM and its subclasses), "transformer" (v1: TransformerLM), or None for an
    LLM whose input layout this module does not know."""
    qwen2, transformer = _qwen2_class(), _transformer_class()
    if qwen2 is not None and isinstance(llm, qwen2):
        return "qwen2"
    if transformer is not None and isinstance(llm, transformer):
        return "transformer"
    return None


def forced_logp(llm: Any, inp: ModelInput, tokens: Sequence[int], device: torch.device,
                autocast: Callable[[], Any] = contextlib.nullcontext) -> torch.Tensor:
    """Log-probabilities [len(tokens), V] (float32, CPU) over the LLM decoder's ids before each given
    token, as the LLM's ``inference`` computes them for its sampler when it generated those tokens.
    v1's first row has end-of-speech at -inf, as upstream forbids ending before the first token.
    ``autocast``: the context the LLM runs in (the Runtime's: torch.autocast when fp16)."""
    kind = llm_kind(llm)
    if kind is None:
        raise NotImplementedError(f"score_tokens: the LLM class {type(llm).__name__} is not one whose input "
                                  "layout is known (TransformerLM for v1, Qwen2LM for v2/v3)")
    if inp.text is None:
        raise InvalidInput("score_tokens: voice conversion (source_wav) has no LLM run to score")
    text = torch.cat([inp.prompt_text, inp.text], dim=1).to(device)
    prompt = inp.llm_prompt_speech_token.to(device)
    with torch.inference_mode(), autocast():
        if kind == "qwen2":
            rows = _qwen2_rows(llm, text, prompt, tokens)
        else:
            rows = _transformer_rows(llm, text, prompt, inp.llm_embedding.to(device), tokens)
        # [1, H] rows through the decoder one by one, as upstream's loop does: the same matmul kernels.
        logp = torch.cat([llm.llm_decoder(h).log_softmax(dim=-1).float() for h in rows])
        if kind == "transformer":
            logp[0, int(llm.speech_token_size)] = -float("inf")
    return logp.cpu()


def _empty(llm: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(1, 0, int(llm.llm_input_size), dtype=like.dtype, device=like.device)


def _speech(llm: Any, token: int) -> torch.Tensor:
    emb: torch.Tensor = llm.speech_embedding.weight[token].reshape(1, 1, -1)
    return emb


def _causal(n: int, device: torch.device) -> torch.Tensor:
    return torch.tril(torch.ones((1, n, n), device=device)).to(torch.bool)


def _qwen2_rows(llm: Any, text: torch.Tensor, prompt: torch.Tensor, tokens: Sequence[int]) -> list[torch.Tensor]:
    """v2/v3: [sos, text, task, prompt speech], then each token; the decoder's input before each token."""
    emb = llm.llm.model.model.embed_tokens(text)
    sos = llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1)
    task = llm.llm_embedding.weight[llm.task_id].reshape(1, 1, -1)
    pst = llm.speech_embedding(prompt) if prompt.shape[1] else _empty(llm, emb)
    lm_input = torch.cat([sos, emb, task, pst], dim=1)
    rows: list[torch.Tensor] = []
    cache = None
    for i in range(len(tokens)):
        y, cache = llm.llm.forward_one_step(lm_input, masks=_causal(lm_input.shape[1], lm_input.device), cache=cache)
        rows.append(y[:, -1])
        lm_input = _speech(llm, tokens[i])
    return rows


def _transformer_rows(llm: Any, text: torch.Tensor, prompt: torch.Tensor, embedding: torch.Tensor,
                      tokens: Sequence[int]) -> list[torch.Tensor]:
    """v1: [sos, speaker embedding, encoded text, task, prompt speech], then each token."""
    text_len = torch.tensor([text.shape[1]], dtype=torch.int32, device=text.device)
    enc, _ = llm.encode(llm.text_embedding(text), text_len)
    if embedding.shape[0] != 0:
        spk = llm.spk_embed_affine_layer(F.normalize(embedding, dim=1)).unsqueeze(dim=1)
    else:
        spk = _empty(llm, enc)
    sos = llm.llm_embedding.weight[llm.sos_eos].reshape(1, 1, -1)
    task = llm.llm_embedding.weight[llm.task_id].reshape(1, 1, -1)
    pst = llm.speech_embedding(prompt) if prompt.shape[1] else _empty(llm, enc)
    lm_input = torch.cat([sos, spk, enc, task, pst], dim=1)
    rows: list[torch.Tensor] = []
    offset = 0
    dev = lm_input.device
    att_cache, cnn_cache = torch.zeros((0, 0, 0, 0), device=dev), torch.zeros((0, 0, 0, 0), device=dev)
    for i in range(len(tokens)):
        y, att_cache, cnn_cache = llm.llm.forward_chunk(lm_input, offset=offset, required_cache_size=-1,
                                                        att_cache=att_cache, cnn_cache=cnn_cache,
                                                        att_mask=_causal(lm_input.shape[1], dev))
        rows.append(y[:, -1])
        offset += lm_input.shape[1]
        lm_input = _speech(llm, tokens[i])
    return rows


def sampling_top_k(llm: Any) -> int | None:
    """The top_k the LLM samples with as loaded: hyperpyyaml's ``!name:...ras_sampling`` (or another
    sampler taking ``top_k``) builds ``llm.sampling`` as a functools.partial; its ``top_k`` keyword, else
    the function's default. None for a sampler that is not such a partial or takes no top_k."""
    fn = getattr(llm, "sampling", None)
    if not isinstance(fn, functools.partial):
        return None
    k = fn.keywords.get("top_k", inspect.Parameter.empty)
    if k is inspect.Parameter.empty:
        try:
            k = inspect.signature(fn.func).parameters["top_k"].default
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(k, bool) or not isinstance(k, int):
        return None
    return k
