"""The foreign adapter (recording/foreign.py) swaps the LLM's class for one whose counted methods are
data descriptors: read on the instance they count, read on the class they are the class's own methods,
as before the swap (the model reference calls them so: issue #23, bug 3)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

from pytest_cosyvoice.recording.foreign import ForeignAdapter


class _LLM:
    def inference(self, n: int) -> Iterator[int]:
        yield from range(n)

    def inference_bistream(self, n: int) -> Iterator[int]:
        yield from range(n)


def test_the_adapter_leaves_the_llm_class_methods_callable() -> None:
    # The model reference times `type(llm).inference(llm, ...)`, the class's own method (a stand-in a
    # test put on the instance is not what gets timed): under the adapter that must still be the
    # method, not the counting slot (it was a property: "'property' object is not callable").
    llm = _LLM()
    adapter = ForeignAdapter(llm)
    adapter.install()
    try:
        assert type(llm) is not _LLM
        assert type(llm).inference is _LLM.inference and type(llm).inference_bistream is _LLM.inference_bistream
        assert list(type(llm).inference(llm, 3)) == [0, 1, 2]
        # The instance still counts through the slot.
        seen: list[float] = []
        call = SimpleNamespace(reader=threading.current_thread(), llm_token=seen.append,
                               unattributed_token=seen.append, thread_died=seen.append)
        adapter.begin(call)   # type: ignore[arg-type]
        assert list(llm.inference(4)) == [0, 1, 2, 3] and len(seen) == 4
        adapter.end(call)     # type: ignore[arg-type]
    finally:
        adapter.uninstall()
    assert type(llm) is _LLM
