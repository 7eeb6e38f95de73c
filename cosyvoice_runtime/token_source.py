"""The producer side of a request: the LLM's speech tokens for one model input, held to the length
cap (``limits.token_cap``), and the torch context the producer thread runs them in. What it returns is
drained into a ``TokenChannel`` by ``channel.start_producer``."""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from .errors import TokenLimitExceeded
from .frontend import Frontend, ModelInput
from .limits import DEFAULT_TOKEN_TEXT_RATIO, MAX_SPEECH_S, MIN_CAP_S, token_cap
from .rates import token_rate
from .requests import TextStreamInput
from .seeding import seeded

Autocast = Callable[[], contextlib.AbstractContextManager[object]]


class LLMTokenSource:
    """Speech tokens from one model's LLM (for vc: the source recording's tokens)."""

    def __init__(self, version: int, llm: Any, flow: Any, frontend: Frontend, device: torch.device,
                 autocast: Autocast) -> None:
        # The LLM's `inference` is looked up at every request, never kept: tests and the plugin replace
        # it on the instance (fault injection, token counting).
        self.version = version
        self.llm = llm
        self.flow = flow
        self.frontend = frontend
        self.device = device
        self.autocast = autocast

    def tokens(self, rid: str, inp: ModelInput | TextStreamInput) -> Callable[[], Iterable[int]]:
        """What the producer thread calls to get request ``rid``'s tokens (nothing runs before that)."""
        dev = self.device
        if isinstance(inp, TextStreamInput):
            base = inp.inputs
            seen = [0]

            def counted() -> Iterator[torch.Tensor]:
                for t in self.frontend.text_token_stream(inp.pieces):
                    seen[0] += t.shape[1]
                    yield t.to(dev)

            def bistream() -> Iterable[int]:
                # Upstream's bistream loop has no length cap at all: ours applies to the text received so far.
                pt = base.prompt_text.to(dev)
                pst = base.llm_prompt_speech_token.to(dev)
                return self._capped(rid, self.llm.inference_bistream(
                    text=counted(), prompt_text=pt, prompt_text_len=_len(pt), prompt_speech_token=pst,
                    prompt_speech_token_len=_len(pst), embedding=base.llm_embedding.to(dev)), lambda: seen[0])
            return bistream
        if inp.mode == "vc":  # the source recording's tokens: bounded by its 30 s maximum
            tokens = inp.source_speech_token.flatten().tolist()
            return lambda: iter(tokens)

        text_ids = inp.text
        assert text_ids is not None, "every mode but vc has text"

        def llm() -> Iterable[int]:
            text, pt, pst = text_ids.to(dev), inp.prompt_text.to(dev), inp.llm_prompt_speech_token.to(dev)
            n = text.shape[1]
            extra: dict[str, float] = {}
            ratio, takes_ratio = self._token_text_ratio()
            if takes_ratio:
                # Upstream's own loop stops at ratio * text tokens without a word; let it run past our
                # cap, so that reaching the cap is always seen (and raised) here.
                rate = token_rate(self.version, self.flow)
                extra["max_token_text_ratio"] = token_cap(n, ratio, rate) / max(n, 1) + 1
            return self._capped(rid, self.llm.inference(
                text=text, text_len=_len(text), prompt_text=pt, prompt_text_len=_len(pt), prompt_speech_token=pst,
                prompt_speech_token_len=_len(pst), embedding=inp.llm_embedding.to(dev), **extra), lambda: n)
        return llm

    def context(self, seed: int | None = None, draws_name: str = "llm",
                ) -> Callable[[], contextlib.AbstractContextManager[object]]:
        """The context the producer thread generates in (entered in that thread). With a ``seed``, the
        LLM's sampling draws from the request's own generator: ``seeding.SeededDraws(seed, draws_name)``
        is the thread's active draws, which the sampler (a draw site) enters for its calls only."""
        device = self.device

        @contextlib.contextmanager
        def ctx() -> Iterator[None]:
            with contextlib.ExitStack() as stack:
                if device.type == "cuda":
                    # The LLM runs on its own CUDA stream so it overlaps with the flow/HiFT of the consumer.
                    stack.enter_context(torch.cuda.stream(torch.cuda.Stream(device)))
                stack.enter_context(torch.inference_mode())
                stack.enter_context(self.autocast())
                stack.enter_context(seeded(seed, draws_name))
                yield
        return ctx

    def _token_text_ratio(self) -> tuple[float, bool]:
        """Upstream's speech-per-text-token cap of this LLM (the ``max_token_text_ratio`` default of its
        class's ``inference``) and whether the callable now in place takes that argument (by name or
        through ``**kwargs``: wrappers such as the plugin's token counter pass it on)."""
        ratio = DEFAULT_TOKEN_TEXT_RATIO
        try:
            param = inspect.signature(type(self.llm).inference).parameters.get("max_token_text_ratio")
            if param is not None and isinstance(param.default, (int, float)) and param.default > 0:
                ratio = float(param.default)
        except (AttributeError, TypeError, ValueError):
            pass
        try:
            params = inspect.signature(self.llm.inference).parameters.values()
        except (TypeError, ValueError):
            return ratio, False
        takes = any(p.name == "max_token_text_ratio" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return ratio, takes

    def _capped(self, rid: str, tokens: Iterable[int], text_tokens: Callable[[], int]) -> Iterator[int]:
        """Passes tokens on until the cap for the text tokens seen so far is exceeded, then raises."""
        ratio, _ = self._token_text_ratio()
        rate = token_rate(self.version, self.flow)
        n = 0
        it = iter(tokens)
        try:
            for tok in it:
                cap = token_cap(text_tokens(), ratio, rate)
                if n >= cap:
                    raise TokenLimitExceeded(
                        f"request {rid}: the LLM generated more than {cap} speech tokens for {text_tokens()} text "
                        f"tokens without ending the utterance (cap: {ratio:g} per text token, at least {MIN_CAP_S:g} s "
                        f"and at most {MAX_SPEECH_S:g} s of speech); the chunks rendered before the cap were delivered")
                n += 1
                yield tok
        finally:
            close = getattr(it, "close", None)  # stop the LLM's generator now, not at garbage collection
            if close is not None:
                close()


def _len(t: torch.Tensor) -> torch.Tensor:
    return torch.tensor([t.shape[1]], dtype=torch.int32, device=t.device)
