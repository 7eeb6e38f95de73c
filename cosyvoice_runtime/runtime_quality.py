"""A Runtime's quality API: what a quality gate asks of the loaded model besides a request.
``render`` (token -> wav of given tokens, also on float64 CPU copies: the reference render),
``score_tokens`` (the LLM's ranks of given tokens, teacher forcing), ``speaker_embedding``
(campplus), and the speech vocabulary the render takes. ``runtime.Runtime`` hands these calls to
``QualityAPI``, which reads the components and settings from the Runtime at each call."""
from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .audio import check_samples, resample
from .errors import InvalidInput, shown
from .frontend import PROMPT_RATE, ModelInput
from .limits import check_seed
from .requests import TextStreamInput, check_speech_tokens
from .runtime_settings import RuntimeView
from .scoring import TokenScores, forced_logp, ranks_of, sampling_top_k
from .streaming import samples
from .token2wav import make_renderer
from .types import Chunk, ChunkTally, StreamStats, Synthesis

# The dtypes of the reference render's CPU copies (``Runtime.render(..., reference=True)``): the vocoder
# in float64; the flow in float32, because upstream's flow decoders refuse float64 (their attention
# masks assert float32/bfloat16/float16: ``cosyvoice.utils.common.mask_to_bias``).
REFERENCE_DTYPES: dict[str, torch.dtype] = {"flow": torch.float32, "hift": torch.float64}


class QualityAPI:
    """``render``, ``score_tokens``, ``speaker_embedding`` and ``speech_vocab`` of one Runtime (the
    Runtime's methods of the same names call these). May be called from several threads."""

    def __init__(self, runtime: RuntimeView) -> None:
        self.runtime = runtime
        self._reference_lock = threading.Lock()
        self._reference: tuple[Any, Any] | None = None   # (flow, hift): CPU copies, made at first use

    @property
    def speech_vocab(self) -> int:
        """How many speech token ids the loaded flow embeds (v1 4096, v2/v3 6561): the valid ids of
        ``render`` are 0 to speech_vocab - 1."""
        flow = self.runtime.flow
        emb = getattr(flow, "input_embedding", None)
        n = getattr(emb, "num_embeddings", None) or getattr(flow, "vocab_size", None)
        if not isinstance(n, int) or n < 1:
            raise RuntimeError(f"the loaded flow ({type(flow).__name__}) names no speech vocabulary "
                               "(input_embedding.num_embeddings or vocab_size)")
        return n

    def speaker_embedding(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speaker embedding (1-D float32) the model directory's campplus.onnx gives ``audio`` (mono
        float samples at ``sample_rate``, resampled to 16 kHz): what the frontend computes for a prompt.
        InvalidInput for audio that is not mono float samples, has none, holds NaN/Inf or is under 100 ms,
        and for a sample rate that is not a positive whole number."""
        samples_, rate = check_samples(audio, sample_rate)
        emb = self.runtime.frontend.embedding(resample(samples_, rate, PROMPT_RATE))
        out: np.ndarray = emb.reshape(-1).numpy().astype(np.float32, copy=False)
        return out

    def render(self, text: str | Iterable[str], tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
               prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
               text_frontend: bool = True, streamed: bool = False, seed: int | None = None,
               reference: bool = False) -> Synthesis:
        """Token -> wav of the given speech ``tokens`` (a flat sequence of ids, e.g. a request's
        ``StreamStats.speech_tokens``, every sentence's together) in the voice of the request the other
        arguments describe (``plan``'s first input: prompt tokens, prompt mel, speaker embedding; the text
        selects nothing else). Rendered as one piece: ``streamed=False`` is one closing render (offline);
        ``streamed=True`` renders the chunks of the runtime's hop schedule, then the closing one, as a
        stream renders them. ``seed`` names the vocoder's (and v1 flow's) draws ``render/...``: the same
        tokens, voice and seed give the same audio. The chunks carry the tokens each covers; the stats
        the given ids. InvalidInput for tokens that are not such a sequence, naming the valid range.

        ``reference=True`` (needs a seed) renders the same on the runtime's CPU copies of the loaded
        flow and vocoder (made once, at the first such call; the loaded ones are not changed), without
        autocast: the flow in float32 (upstream's flow decoders refuse float64), the vocoder in float64
        on the flow's mel cast to float64, every seeded draw made in float32 and cast
        (``SeededDraws(draw_dtype=float32)``), so it is the same function as the seeded render in
        (at least) float32 CPU precision: the reference a render's numerical error is measured
        against. The audio is float32 as always."""
        seed = check_seed(seed)
        if not isinstance(streamed, bool):
            raise InvalidInput(f"streamed={shown(streamed)}: expected True or False")
        if not isinstance(reference, bool):
            raise InvalidInput(f"reference={shown(reference)}: expected True or False")
        if reference and seed is None:
            raise InvalidInput("reference=True with seed=None: a reference render needs a seed (the same "
                               "draws as the seeded render it is compared with)")
        rt = self.runtime
        ids = check_speech_tokens(tokens, self.speech_vocab, version=rt.version)
        plan = rt.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                       source_wav=source_wav, text_frontend=text_frontend)
        first = plan.inputs[0]
        voice = first.inputs if isinstance(first, TextStreamInput) else first
        s = rt.settings
        if reference:
            flow, hift = self.reference_components()
            renderer = make_renderer(rt.version, flow, hift, voice, torch.device("cpu"), no_autocast, s.schedule(),
                                     context_tokens=s.flow_context_tokens, seed=seed, draws_name="render",
                                     dtype=REFERENCE_DTYPES["hift"], draw_dtype=torch.float32)
        else:
            renderer = make_renderer(rt.version, rt.flow, rt.hift, voice, rt.device, rt.autocast, s.schedule(),
                                     context_tokens=s.flow_context_tokens, seed=seed, draws_name="render")
        stats = StreamStats(sentences=1)
        stats.add_speech_tokens(ids)
        tally = ChunkTally(rt.sample_rate, stats)
        chunks: list[Chunk] = []
        try:
            with torch.inference_mode():
                # The loop of a stream's request with every token already there: a chunk whenever the
                # renderer's next hop (plus look-ahead / overlap) is covered, then the closing render.
                while streamed and renderer.tokens_needed() <= len(ids):
                    chunks.append(tally.chunk(*samples(*renderer.render_next(ids))))
                chunks.append(tally.chunk(*samples(*renderer.render_last(ids))))
        finally:
            stats.wall_s = tally.elapsed()
            del renderer
            s.empty_cache(rt.device)
        return Synthesis.from_chunks(chunks, rt.sample_rate, stats)

    def score_tokens(self, text: str, tokens: Any, *, speaker: str | None = None, prompt_wav: Any = None,
                     prompt_text: str | None = None, instruct: str | None = None, source_wav: Any = None,
                     text_frontend: bool = True) -> TokenScores:
        """Teacher forcing: the LLM's rank (0 = most probable) of each given token given the text (one
        sentence), the voice and the tokens before it, with the LLM's sampling top_k. InvalidInput for bad
        tokens, a text of several sentences (the LLM runs per sentence) and voice conversion (no LLM run);
        NotImplementedError for an LLM class whose input layout is unknown."""
        rt = self.runtime
        ids = check_speech_tokens(tokens, int(rt.llm.speech_token_size), version=rt.version)
        if not isinstance(text, str):
            raise InvalidInput(f"text={shown(text)}: score_tokens takes the text as a str (one sentence)")
        plan = rt.plan(text, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                       source_wav=source_wav, text_frontend=text_frontend)
        if plan.mode == "vc":
            raise InvalidInput("score_tokens: voice conversion (source_wav) runs no LLM; nothing to score")
        if len(plan.inputs) != 1:
            raise InvalidInput(f"score_tokens takes one sentence; the text has {len(plan.inputs)}")
        inp = plan.inputs[0]
        assert isinstance(inp, ModelInput)  # a str text plans one ModelInput per sentence
        logp = forced_logp(rt.llm, inp, ids, rt.device, rt.autocast)
        rt.settings.empty_cache(rt.device)
        return TokenScores(ranks_of(logp, ids), sampling_top_k(rt.llm))

    def reference_components(self) -> tuple[Any, Any]:
        """The CPU copies of the loaded flow and hift in ``REFERENCE_DTYPES`` (made once, under a lock):
        this object's own; the loaded modules are left as they are."""
        with self._reference_lock:
            if self._reference is None:
                self._reference = (cpu_copy(self.runtime.flow, REFERENCE_DTYPES["flow"]),
                                   cpu_copy(self.runtime.hift, REFERENCE_DTYPES["hift"]))
            return self._reference


def no_autocast() -> contextlib.AbstractContextManager[object]:
    return torch.autocast(device_type="cpu", enabled=False)


def cpu_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A deep copy of ``module`` on the CPU in ``dtype``, in eval mode, running its class's own
    ``inference``/``forward`` (not a stand-in set on the instance). Besides parameters and buffers,
    floating tensors a submodule keeps as a plain attribute (upstream's HiFT ``stft_window``, the v2
    flow's fixed ``rand_noise``) are cast too, on the copy only (the same values, cast)."""
    with torch.inference_mode(False):
        twin = copy.deepcopy(module).to(device="cpu", dtype=dtype).eval()
        for sub in twin.modules():
            # A stand-in set on the loaded component's instance (a test's injected fault or defect,
            # `pytest_cosyvoice.faults`) is copied as a closure over the loaded float32 component: the
            # reference runs the component's own code, so the copy's instance attribute goes.
            for name in ("inference", "forward"):
                if callable(vars(sub).get(name)):
                    delattr(sub, name)
            for name, value in list(vars(sub).items()):
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    setattr(sub, name, value.to("cpu", dtype))
    return twin
