"""Speech tokens to audio, per request. One renderer object per request holds everything that
upstream keeps in shared dicts keyed by uuid (HiFT cache, mel overlap, flow cache, token offset,
hop length), so concurrent and later requests each get the schedule they would get alone.

The chunk boundaries, caches and cross-fades follow upstream's algorithms (v1 CosyVoiceModel,
v2 CosyVoice2Model at commit 6385656, v3 CosyVoice3Model), so that audio matches upstream's for the
same tokens; the code is ours.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .frontend import ModelInput
from .rates import token_rate
from .seeding import seeded


def hamming(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    # float64 like upstream's np.hamming, so the cross-fade rounds the same way.
    return torch.hamming_window(n, periodic=False, dtype=torch.float64, device=device)


def crossfade(fade_in: torch.Tensor, fade_out: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Blends the tail of ``fade_out`` into the head of ``fade_in`` over half the window."""
    n = window.shape[0] // 2
    out = fade_in.clone()
    w = window.to(fade_in.device)
    mixed = fade_in[..., :n].double() * w[:n] + fade_out[..., -n:].double() * w[n:]
    out[..., :n] = mixed.to(out.dtype)
    return out


# Tensor factories that make torch's default floating dtype (float32) when given no dtype.
_FLOAT_FACTORIES: frozenset[Any] = frozenset({
    torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.arange, torch.linspace})


class DefaultFloat(TorchFunctionMode):
    """While entered in a thread, that thread's tensor factories (``torch.zeros``, ``tensor``, ...)
    called without ``dtype=`` whose result would be torch's default floating dtype make ``dtype``
    instead: upstream's vocoders build some tensors that way (``SineGen``'s harmonics, ``torch.zeros``)
    and a float64 copy of them would otherwise mix float32 into its float64 arithmetic. Thread-local
    like ``SeededDraws``: torch's default dtype, a process-wide setting, is left alone. Random draws
    are not factories here (their dtype is ``SeededDraws``'s business)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _FLOAT_FACTORIES and kwargs.get("dtype") is None and kwargs.get("out") is None \
                and isinstance(out, torch.Tensor) and out.dtype == torch.get_default_dtype() != self.dtype:
            return func(*args, **{**kwargs, "dtype": self.dtype})
        return out


@dataclass(frozen=True)
class Schedule:
    """Streaming hop lengths (tokens). v2/v3 grow the hop per request: 25, 50, 100, 100, ..."""

    hop: int = 25
    max_hop: int = 100
    scale: float = 2.0


class Renderer:
    """Base: owns a request's streaming state; subclasses implement the version's algorithm.

    With a ``seed``, each vocoder call (and v1's flow, which draws its noise per call) draws from its
    own generator, named ``{draws_name}/hift-{k}`` for the k-th rendered piece: a piece's noise then
    does not depend on how many draws the pieces before it made.

    ``dtype`` (None: the flow's output as it is) is the floating dtype of the mel given to the vocoder
    and of the vocoder's source cache: float64 to vocode on a float64 copy of the vocoder.
    ``draw_dtype`` is ``SeededDraws``'s (the seeded draws made in that dtype and cast)."""

    def __init__(self, flow: Any, hift: Any, inputs: ModelInput, device: torch.device, autocast: Any, *,
                 seed: int | None = None, draws_name: str = "", dtype: torch.dtype | None = None,
                 draw_dtype: torch.dtype | None = None) -> None:
        self.flow, self.hift, self.inputs, self.device, self.autocast = flow, hift, inputs, device, autocast
        self.seed, self.draws_name = seed, draws_name
        self.dtype, self.draw_dtype = dtype, draw_dtype
        self.pieces = 0     # vocoder calls so far: the index of the piece being rendered
        self.prompt_token = inputs.flow_prompt_speech_token.to(device)
        self.prompt_feat = inputs.prompt_speech_feat.to(device)
        self.embedding = inputs.flow_embedding.to(device)

    def _draws(self, part: str) -> contextlib.AbstractContextManager[object]:
        """The seeded draws of this piece's ``part`` ("hift", "flow") made the thread's active draws (the
        vocoder's source module and v1's flow decoder enter them for their draws); nothing without a seed."""
        return seeded(self.seed, f"{self.draws_name}/{part}-{self.pieces}", draw_dtype=self.draw_dtype)

    def _factories(self) -> contextlib.AbstractContextManager[object]:
        """The vocoder's tensor factories in ``dtype`` (``DefaultFloat``); nothing without one."""
        return contextlib.nullcontext() if self.dtype is None else DefaultFloat(self.dtype)

    def _lens(self, t: torch.Tensor) -> torch.Tensor:
        return torch.tensor([t.shape[1]], dtype=torch.int32, device=self.device)

    def _setup_hift_cache(self, mel_cache_len: int, samples_per_frame: int) -> None:
        self.mel_cache_len = mel_cache_len
        self.source_cache_len = mel_cache_len * samples_per_frame
        self.window = hamming(2 * self.source_cache_len, self.device)
        self.cache: dict[str, torch.Tensor] | None = None

    def _vocode(self, mel: torch.Tensor, finalize: bool, speed: float = 1.0) -> torch.Tensor:
        """HiFT continuing from the previous chunk: cached mel and source prepended, speech cross-faded,
        the tail held back for the next chunk unless this is the last one."""
        mel = mel.to(self.dtype) if self.dtype is not None else mel
        if self.cache is not None:
            mel = torch.cat([self.cache["mel"], mel], dim=2)
            source = self.cache["source"]
        else:
            source = torch.zeros(1, 1, 0, device=self.device, dtype=self.dtype)
        if finalize and speed != 1.0:
            mel = F.interpolate(mel, size=int(mel.shape[2] / speed), mode="linear")
        speech: torch.Tensor  # hift is upstream's untyped module
        with self._factories(), self._draws("hift"):
            speech, new_source = self.hift.inference(speech_feat=mel, cache_source=source)
        self.pieces += 1
        if self.cache is not None:
            speech = crossfade(speech, self.cache["speech"], self.window)
        if not finalize:
            self.cache = {"mel": mel[:, :, -self.mel_cache_len:], "source": new_source[:, :, -self.source_cache_len:],
                          "speech": speech[:, -self.source_cache_len:]}
            speech = speech[:, :-self.source_cache_len]
        return speech

    # interface used by the runtime's consumer loop
    def tokens_needed(self) -> int:
        raise NotImplementedError

    def render_next(self, tokens: list[int]) -> tuple[torch.Tensor, int]:
        """Renders the next streaming chunk from all tokens so far; returns (speech [1,N], new tokens covered)."""
        raise NotImplementedError

    def render_last(self, tokens: list[int], speed: float = 1.0) -> tuple[torch.Tensor, int]:
        raise NotImplementedError


class CausalRenderer(Renderer):
    """v2/v3: causal flow called on all tokens since the start (``streaming``/``finalize``), the new
    mel cut at ``token_offset``; v2 HiFT continues its source from a cache and cross-fades."""

    def __init__(self, *args: Any, schedule: Schedule, mel_cache_len: int = 8, samples_per_frame: int = 480,
                 context_tokens: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.schedule = schedule
        self.hop = schedule.hop
        p = self.prompt_token.shape[1]
        # Upstream pads the first hop so prompt + first chunk fill whole hops of the flow's chunk mask.
        self.next_hop = schedule.hop + (math.ceil(p / schedule.hop) * schedule.hop - p)
        self.offset = 0
        self.lookahead = int(self.flow.pre_lookahead_len)
        self.ratio = int(self.flow.token_mel_ratio)
        self._setup_hift_cache(mel_cache_len, samples_per_frame)
        self.context_tokens = context_tokens  # bounded-context mode (None: exact, all tokens)
        # The causal encoder masks in chunks of this many tokens (upstream's yaml: chunk_size 25).
        chunk = getattr(getattr(self.flow, "encoder", None), "static_chunk_size", 0)
        self.encoder_chunk = int(chunk) if chunk else schedule.hop

    def tokens_needed(self) -> int:
        return self.offset + self.next_hop + self.lookahead

    def _flow(self, tokens: list[int], offset: int, streaming: bool, finalize: bool) -> torch.Tensor:
        start = 0
        if self.context_tokens is not None and offset > self.context_tokens:
            # Bounded context: the flow sees the prompt and the tokens from the last encoder-chunk
            # boundary at least K tokens before the new ones. Positions then differ from the exact
            # run's by whole chunks, so the causal chunk mask splits the tokens where exact mode does.
            c = self.encoder_chunk
            start = (offset - self.context_tokens) // c * c
        tok = torch.tensor([tokens[start:]], dtype=torch.int32, device=self.device)
        mel: torch.Tensor  # flow is upstream's untyped module
        with self.autocast():
            mel, _ = self.flow.inference(token=tok, token_len=self._lens(tok), prompt_token=self.prompt_token,
                                         prompt_token_len=self._lens(self.prompt_token), prompt_feat=self.prompt_feat,
                                         prompt_feat_len=self._lens(self.prompt_feat), embedding=self.embedding,
                                         streaming=streaming, finalize=finalize)
        return mel[:, :, (offset - start) * self.ratio:]

    def render_next(self, tokens: list[int]) -> tuple[torch.Tensor, int]:
        hop = self.next_hop
        mel = self._flow(tokens[: self.offset + hop + self.lookahead], self.offset, streaming=True, finalize=False)
        speech = self._vocode(mel, finalize=False)
        self.offset += hop
        self.hop = min(self.schedule.max_hop, int(self.hop * self.schedule.scale))
        self.next_hop = self.hop
        return speech, hop

    def render_last(self, tokens: list[int], speed: float = 1.0) -> tuple[torch.Tensor, int]:
        # Like upstream 6385656: the closing call runs the flow with streaming=False.
        mel = self._flow(tokens, self.offset, streaming=False, finalize=True)
        return self._vocode(mel, finalize=True, speed=speed), len(tokens) - self.offset


class CausalHiftRenderer(CausalRenderer):
    """v3: CausalHiFT re-vocodes the mel since the start and the new samples are cut at an offset."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.mel: torch.Tensor | None = None
        self.speech_offset = 0

    def _vocode(self, mel: torch.Tensor, finalize: bool, speed: float = 1.0) -> torch.Tensor:
        mel = mel.to(self.dtype) if self.dtype is not None else mel
        self.mel = mel if self.mel is None else torch.cat([self.mel, mel], dim=2)
        full = self.mel
        if finalize and speed != 1.0:
            full = F.interpolate(full, size=int(full.shape[2] / speed), mode="linear")
        speech: torch.Tensor  # hift is upstream's untyped module
        with self._factories(), self._draws("hift"):
            speech, _ = self.hift.inference(speech_feat=full, finalize=finalize)
        self.pieces += 1
        new = speech[:, self.speech_offset:]
        self.speech_offset += new.shape[1]
        return new


class OverlapRenderer(Renderer):
    """v1: the flow runs on a window of hop + overlap tokens with its own noise cache; mel and
    speech are cross-faded across chunks; the hop stays fixed."""

    def __init__(self, *args: Any, overlap_tokens: int = 20, mel_cache_len: int = 20, **kw: Any) -> None:
        super().__init__(*args, **kw)
        rate = int(token_rate(1, self.flow))
        self.hop = 2 * rate
        self.overlap = overlap_tokens
        self.mel_overlap_len = int(overlap_tokens / rate * 22050 / 256)
        self.mel_window = hamming(2 * self.mel_overlap_len, self.device)
        self._setup_hift_cache(mel_cache_len, 256)
        self.consumed = 0
        self.flow_cache = torch.zeros(1, 80, 0, 2, device=self.device)
        self.mel_overlap = torch.zeros(1, 80, 0, device=self.device)

    def tokens_needed(self) -> int:
        return self.consumed + self.hop + self.overlap

    def _render(self, window: list[int], finalize: bool, speed: float = 1.0) -> torch.Tensor:
        tok = torch.tensor([window], dtype=torch.int32, device=self.device)
        # v1's flow (ConditionalCFM) draws its starting noise per call; v2/v3's is fixed at construction.
        with self.autocast(), self._draws("flow"):
            mel, self.flow_cache = self.flow.inference(
                token=tok, token_len=self._lens(tok), prompt_token=self.prompt_token,
                prompt_token_len=self._lens(self.prompt_token), prompt_feat=self.prompt_feat,
                prompt_feat_len=self._lens(self.prompt_feat), embedding=self.embedding, flow_cache=self.flow_cache)
        if self.mel_overlap.shape[2] != 0:
            mel = crossfade(mel, self.mel_overlap, self.mel_window)
        if not finalize:
            # The overlap tail is held back and faded into the next window's head.
            self.mel_overlap = mel[:, :, -self.mel_overlap_len:]
            mel = mel[:, :, :-self.mel_overlap_len]
        return self._vocode(mel, finalize, speed)

    def render_next(self, tokens: list[int]) -> tuple[torch.Tensor, int]:
        window = tokens[self.consumed: self.consumed + self.hop + self.overlap]
        speech = self._render(window, finalize=False)
        self.consumed += self.hop
        return speech, self.hop

    def render_last(self, tokens: list[int], speed: float = 1.0) -> tuple[torch.Tensor, int]:
        rest = tokens[self.consumed:]
        return self._render(rest, finalize=True, speed=speed), len(rest)


def make_renderer(version: int, flow: Any, hift: Any, inputs: ModelInput, device: torch.device, autocast: Any,
                  schedule: Schedule, context_tokens: int | None = None, *, seed: int | None = None,
                  draws_name: str = "", dtype: torch.dtype | None = None,
                  draw_dtype: torch.dtype | None = None) -> Renderer:
    kw: dict[str, Any] = dict(seed=seed, draws_name=draws_name, dtype=dtype, draw_dtype=draw_dtype)
    if version == 1:
        return OverlapRenderer(flow, hift, inputs, device, autocast, **kw)
    cls = CausalHiftRenderer if version == 3 else CausalRenderer
    return cls(flow, hift, inputs, device, autocast, schedule=schedule, context_tokens=context_tokens, **kw)
