"""Shared by the plugin's end-to-end tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def warm_tiny(tiny_v2_dir: Path) -> Path:
    """The tiny v2 model directory, with everything its inner sessions import already imported.

    Inline pytester runs restore `sys.modules` to their snapshot afterwards: torch imported for the
    first time inside one would be dropped, and imported a second time by the next ("function
    '_has_torch_function' already has a docstring"). Being session-scoped, this runs before the
    function-scoped `pytester` takes its snapshot.
    """
    import cosyvoice_runtime
    from pytest_cosyvoice.session import default_prompt

    rt = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
    p = default_prompt()
    rt.synthesize("Hi.", prompt_wav=str(p.wav), prompt_text=p.text)
    try:
        from cosyvoice_runtime.upstream import UpstreamEngine

        UpstreamEngine(rt)
    except Exception:  # noqa: BLE001 - the upstream tests skip with the reason themselves
        pass
    return tiny_v2_dir
