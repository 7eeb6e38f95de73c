"""The gate suites' fault matrix: each case names a fault of one component (injected with
`pytest_cosyvoice.faults`, at the loaded components every engine drives) and how the engine is called."""
from __future__ import annotations

import gc
from dataclasses import dataclass

from pytest_cosyvoice.faults import Fault

TOKENS = 140          # forced speech tokens per request (speaker mode: 3+ chunks on any engine)
STALL_TIMEOUT_S = 1.0  # the fault tests' stall timeout (marker), kept short so a hang costs seconds
JOIN_TIMEOUT_S = 1.0   # the runtime's producer join, which the watchdog bound includes
STALL_S = 2.5         # how long the stalling LLM stops: past the stall timeout, within the watchdog


@dataclass(frozen=True)
class FaultCase:
    id: str
    what: str                  # for messages: "the LLM raised after 70 of 140 tokens"
    call: str                  # "stream" or "synthesize"
    component: str = "llm"     # llm, flow, hift; "consumer" for a stream the caller closes
    at: int = 0                # llm: token index; flow/hift: 1-based call (chunk) number
    stall: bool = False
    expect_error: bool = True  # False: the call ends normally (the consumer closed it)
    pieces: bool = False       # text given as an iterator of pieces (the LLM's inference_bistream)

    @property
    def fault(self) -> Fault | None:
        """What is injected; None where the fault is the caller's (the consumer closing)."""
        if self.component == "consumer":
            return None
        return Fault(self.component, self.at, STALL_S if self.stall else 0.0, f"injected: {self.what}")


FAULTS = [
    FaultCase("llm-first-token-stream", "the LLM raised at its first token", "stream", at=0),
    FaultCase("llm-first-token-synthesize", "the LLM raised at its first token", "synthesize", at=0),
    FaultCase("llm-mid-stream", f"the LLM raised after {TOKENS // 2} of {TOKENS} tokens", "stream", at=TOKENS // 2),
    FaultCase("llm-mid-synthesize", f"the LLM raised after {TOKENS // 2} of {TOKENS} tokens", "synthesize",
              at=TOKENS // 2),
    FaultCase("llm-after-last-token-stream", "the LLM raised after its last token", "stream", at=TOKENS),
    FaultCase("llm-after-last-token-synthesize", "the LLM raised after its last token", "synthesize", at=TOKENS),
    FaultCase("llm-stall-stream",
              f"the LLM stalled {STALL_S:g} s after 40 tokens (stall timeout {STALL_TIMEOUT_S:g} s)",
              "stream", at=40, stall=True),
    FaultCase("llm-stall-synthesize", f"the LLM stalled {STALL_S:g} s after 40 tokens (stall timeout "
              f"{STALL_TIMEOUT_S:g} s)", "synthesize", at=40, stall=True),
    FaultCase("llm-bistream-mid-stream", f"the LLM (streamed text input) raised after {TOKENS // 2} of {TOKENS} tokens",
              "stream", at=TOKENS // 2, pieces=True),
    FaultCase("flow-chunk-2", "the flow raised on chunk 2", "stream", component="flow", at=2),
    FaultCase("vocoder-chunk-2", "the vocoder raised on chunk 2", "stream", component="hift", at=2),
    FaultCase("consumer-closes", "the consumer closed the stream after one chunk", "stream", component="consumer",
              expect_error=False),
]


def live_tensors() -> int:
    import torch

    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which deprecated module proxies answer with a warning
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))
