"""A fixed piece of the loaded model's own work, timed outside any request: the model reference.

    work = ReferenceWork(runtime)       # fixed inputs, built once (and run once to warm up)
    seconds = work()                    # {"llm": 0.05, "flow": 0.09, "hift": 0.03}

What a test's speed depends on has three layers: the machine, the components' kernels (the LLM's
transformer, the flow, the vocoder, as the installed torch runs them) and the orchestration around
them (the runtime's threads, queues and chunk schedule). A calibration workload of generic kernels
follows the machine only roughly; this one runs the components themselves on fixed inputs, so it
follows the machine *and* the kernels, and not the orchestration:

* LLM: the LLM's own `inference` over a fixed text and prompt (the prefill over the whole prefix,
  then one decode step per token), closed after `SPEECH_SECONDS` of speech tokens; the text is long
  enough that the LLM cannot end before (upstream's minimum length is twice the text tokens), so
  the work is the same every time;
* flow and vocoder: a fresh renderer (`token2wav.make_renderer`, as a request makes one) renders
  `SPEECH_SECONDS` of fixed tokens in one closing call, with the fixed prompt's features.

The shares are those of one short sentence: the LLM generates what the flow and vocoder render.

Each run has its own renderer and draws no request id, so the runtime's requests never see it. Its
random draws (the LLM's sampling, the vocoder's and v1 flow's noise) come from generators of its own,
seeded with `SEED` (`seeding.drawing`: the loaded components' draw sites enter them, nothing else
does), so the run neither varies itself nor seeds, advances or saves and restores torch's global
generator, which the tests' own draws use; and no torch call but the draws' pays for it. The
components' methods are called as their classes define them, so a stand-in a test put on an instance
(pytest_cosyvoice.faults) is not what gets timed. Run it between requests, not during one: it would
share the cores with the request, and time both.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .frontend import ModelInput
from .rates import token_rate
from .seeding import SeededDraws, drawing
from .token2wav import make_renderer

if TYPE_CHECKING:
    from .runtime import Runtime

# Long enough for the kernels to dominate Python's overhead, short enough to run between RTF rounds
# (a few hundred ms on the tiny models on a quiet 2-core CPU). The text gives more than half as many text tokens
# as the speech tokens asked for, with every tokenizer of the released models and the tiny ones.
TEXT = ("A fixed reference sentence, read the same way every time, so that the model's own work can be "
        "timed and compared across sessions; it is long enough that the language model never ends its "
        "utterance before the reference has all the speech tokens it asks for, on any released model.")
PROMPT_SECONDS = 2.0
SPEECH_SECONDS = 1.5
SEED = 1234
PARTS = ("llm", "flow", "hift")


class _Timed:
    """A component seen through the renderer: its `inference` (the class's, see the module docstring)
    is timed into `spent[name]`; every other attribute is the component's."""

    def __init__(self, module: Any, name: str, spent: dict[str, float], sync: Callable[[], None]) -> None:
        self._module, self._name, self._spent, self._sync = module, name, spent, sync

    def inference(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = type(self._module).inference(self._module, *args, **kwargs)
        self._sync()
        self._spent[self._name] += time.perf_counter() - t
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class ReferenceWork:
    """The model reference of one loaded Runtime (see the module docstring). Calling it runs the fixed
    work once and returns the seconds each component took ("llm", "flow", "hift")."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.device = runtime.device
        flow, llm = runtime.flow, runtime.llm
        gen = torch.Generator(device="cpu").manual_seed(SEED)
        rate = token_rate(runtime.version, flow)
        vocab = min(int(getattr(flow, "vocab_size", 4096)), int(getattr(llm, "speech_token_size", 4096)))
        n_prompt = max(1, round(PROMPT_SECONDS * rate))
        prompt_tokens = torch.randint(0, vocab, (1, n_prompt), generator=gen, dtype=torch.int32)
        ratio = getattr(flow, "token_mel_ratio", None)
        # v2/v3 flows take exactly token_mel_ratio mel frames per prompt token; v1's take any length
        # (22.05 kHz, hop 256).
        frames = n_prompt * int(ratio) if ratio else round(PROMPT_SECONDS * runtime.sample_rate / 256)
        mels = int(getattr(flow, "output_size", 80))
        spk = getattr(getattr(flow, "spk_embed_affine_layer", None), "in_features", 192)
        embedding = torch.randn(1, int(spk), generator=gen)
        self.inputs = ModelInput(
            "zero_shot", runtime.frontend.text_tokens(TEXT), prompt_text=runtime.frontend.text_tokens(TEXT[:40]),
            llm_prompt_speech_token=prompt_tokens, flow_prompt_speech_token=prompt_tokens,
            prompt_speech_feat=0.5 * torch.randn(1, frames, mels, generator=gen),
            llm_embedding=embedding, flow_embedding=embedding)
        self.speech_tokens = max(1, round(SPEECH_SECONDS * rate))
        self.tokens = torch.randint(0, vocab, (self.speech_tokens,), generator=gen).tolist()
        self.llm_tokens = 0     # how many tokens the LLM gave in the last run
        self()  # first run: kernel selection and allocation, not the machine's speed

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _own_random_state(self) -> contextlib.AbstractContextManager[object]:
        # The reference's draws come from generators of its own, active in this thread only (see
        # seeding.py): the same work every run, and torch's global generator neither seeded nor
        # advanced (no fork_rng swap of process-wide state, which another thread drawing meanwhile
        # would see).
        return drawing(SeededDraws(SEED, "model-reference"))

    def __call__(self) -> dict[str, float]:
        spent = dict.fromkeys(PARTS, 0.0)
        rt, inp, dev = self.runtime, self.inputs, self.device
        with self._own_random_state(), torch.inference_mode():
            text, pt = inp.text, inp.prompt_text
            assert text is not None  # built with text above
            pst, emb = inp.llm_prompt_speech_token.to(dev), inp.llm_embedding.to(dev)
            t = time.perf_counter()
            with rt.autocast():
                gen = type(rt.llm).inference(
                    rt.llm, text=text.to(dev), text_len=_len(text, dev), prompt_text=pt.to(dev),
                    prompt_text_len=_len(pt, dev), prompt_speech_token=pst, prompt_speech_token_len=_len(pst, dev),
                    embedding=emb)
                n = 0
                try:
                    for n, _ in enumerate(gen, 1):
                        if n >= self.speech_tokens:
                            break
                finally:
                    gen.close()
            self.llm_tokens = n     # speech_tokens, unless the LLM ended early (the tests check it does not)
            self._sync()
            spent["llm"] = time.perf_counter() - t
            s = rt.settings
            renderer = make_renderer(rt.version, _Timed(rt.flow, "flow", spent, self._sync),
                                     _Timed(rt.hift, "hift", spent, self._sync), inp, dev, rt.autocast,
                                     s.schedule())
            renderer.render_last(self.tokens)
        return spent


def _len(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # A fresh tensor per call: v1's LLM adds the prompt's length to its text_len in place.
    return torch.tensor([t.shape[1]], dtype=torch.int32, device=device)
