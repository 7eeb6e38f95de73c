"""Stand-ins for CosyVoice3's DiT flow (``CausalMaskedDiffWithDiT``) and causal vocoder
(``CausalHiFTGenerator``), which the packaged upstream components lack.

They have the interfaces the v3 path calls and the streaming behaviour that matters to it, and are
built by hyperpyyaml from a ``cosyvoice3.yaml`` (``!new:tests.runtime.v3_standins.FlowStandIn``) and loaded
from ``flow.pt`` / ``hift.pt`` with strict keys, like the real classes:

- ``FlowStandIn.inference(token, ..., streaming, finalize)`` returns the mel of ``token`` only (not of the
  prompt), ``token_mel_ratio`` frames per token; with ``finalize=False`` the last ``pre_lookahead_len``
  tokens are look-ahead context and get no mel, as upstream's flow. Each token's frames depend only on
  that token and the speaker embedding, so the mel of a run of tokens is the same whether it is computed
  in streamed pieces or at once.
- ``CausalHiFTStandIn.inference(speech_feat, finalize)`` returns ``samples_per_frame`` samples per mel
  frame; each frame's samples depend on that frame and the ``look_right`` frames after it (zeros past the
  end). With ``finalize=False`` the samples of the last ``look_right`` frames are held back, as the real
  causal vocoder holds back its right context, so re-vocoding a growing mel and cutting at the samples
  already sent gives exactly the whole-utterance audio.

The weights are real parameters with a seeded init, so their state dicts round-trip through torch.save.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _seeded_init(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


class FlowStandIn(nn.Module):
    """Tokens -> mel [1, output_size, T * token_mel_ratio]: an embedding lookup per token, a linear
    projection to ``token_mel_ratio`` frames, plus a per-utterance speaker offset."""

    def __init__(self, vocab_size: int = 6561, output_size: int = 80, spk_embed_dim: int = 192,
                 token_mel_ratio: int = 2, pre_lookahead_len: int = 3, input_frame_rate: int = 25,
                 hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.output_size = output_size
        self.token_mel_ratio = token_mel_ratio
        self.pre_lookahead_len = pre_lookahead_len
        self.input_frame_rate = input_frame_rate
        self.input_embedding = nn.Embedding(vocab_size, hidden)
        self.proj = nn.Linear(hidden, output_size * token_mel_ratio)
        self.spk_embed_affine_layer = nn.Linear(spk_embed_dim, output_size)
        _seeded_init(self, seed)

    def inference(self, token: torch.Tensor, token_len: torch.Tensor, prompt_token: torch.Tensor,
                  prompt_token_len: torch.Tensor, prompt_feat: torch.Tensor, prompt_feat_len: torch.Tensor,
                  embedding: torch.Tensor, streaming: bool, finalize: bool) -> tuple[torch.Tensor, None]:
        assert token.shape[0] == 1, "batch 1, as upstream"
        assert int(token_len[0]) == token.shape[1] and int(prompt_token_len[0]) == prompt_token.shape[1]
        assert int(prompt_feat_len[0]) == prompt_feat.shape[1]
        # Upstream splits the conditioning at prompt_feat frames: the prompt must give exactly
        # token_mel_ratio frames per prompt token.
        assert prompt_feat.shape[1] == self.token_mel_ratio * prompt_token.shape[1], \
            (tuple(prompt_feat.shape), tuple(prompt_token.shape))
        assert isinstance(streaming, bool) and isinstance(finalize, bool)
        assert token.numel() == 0 or (int(token.min()) >= 0 and int(token.max()) < self.vocab_size)
        if not finalize:
            assert token.shape[1] > self.pre_lookahead_len, "a non-final call needs look-ahead tokens"
            token = token[:, :-self.pre_lookahead_len]  # look-ahead context only, no mel
        n = token.shape[1]
        h = self.proj(self.input_embedding(token.long()))                       # [1, n, C * ratio]
        mel = h.reshape(1, n * self.token_mel_ratio, self.output_size).transpose(1, 2)  # [1, C, n * ratio]
        spk = self.spk_embed_affine_layer(F.normalize(embedding.float(), dim=1))       # [1, C]
        return (mel + spk[:, :, None]).float(), None


class CausalHiFTStandIn(nn.Module):
    """Mel [1, C, F] -> speech [1, F * samples_per_frame]; frame i's samples depend on mel frames
    i .. i + look_right. ``finalize=False`` holds back the last ``look_right`` frames' samples."""

    def __init__(self, in_channels: int = 80, samples_per_frame: int = 480, look_right: int = 3,
                 sampling_rate: int = 24000, seed: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.samples_per_frame = samples_per_frame
        self.look_right = look_right
        self.sampling_rate = sampling_rate
        self.proj = nn.Linear(in_channels * (look_right + 1), samples_per_frame)
        _seeded_init(self, seed)

    def inference(self, speech_feat: torch.Tensor, finalize: bool = True) -> tuple[torch.Tensor, None]:
        assert speech_feat.dim() == 3 and speech_feat.shape[0] == 1 and speech_feat.shape[1] == self.in_channels
        assert isinstance(finalize, bool)
        frames = speech_feat.shape[2]
        x = F.pad(speech_feat.float(), (0, self.look_right)).transpose(1, 2)      # [1, F + r, C]
        ctx = torch.cat([x[:, k:k + frames] for k in range(self.look_right + 1)], dim=2)  # [1, F, C * (r + 1)]
        speech = torch.tanh(self.proj(ctx) / 16)                                    # [1, F, samples]
        if not finalize:
            speech = speech[:, :max(frames - self.look_right, 0)]
        return speech.reshape(1, -1), None
