"""Shared by the plugin's end-to-end tests."""
from __future__ import annotations

from pathlib import Path

_warm: set[str] = set()


def warm_imports(model_dir: Path) -> None:
    """Import, in this process, everything an inner session's model load and streams import.

    Inline pytester runs restore `sys.modules` afterwards: a heavy C extension (torch) imported for
    the first time inside one would be dropped and imported a second time by the next. Loading the
    model and making one zero-shot call here, before pytester takes its snapshot, avoids that.
    """
    if str(model_dir) in _warm:
        return
    import cosyvoice_runtime
    from pytest_cosyvoice.session import default_prompt

    rt = cosyvoice_runtime.load(model_dir, device="cpu")
    p = default_prompt()
    rt.synthesize("Hi.", prompt_wav=str(p.wav), prompt_text=p.text)
    try:
        from cosyvoice_runtime.upstream import UpstreamEngine

        UpstreamEngine(rt)
    except Exception:  # noqa: BLE001 - the upstream tests skip with the reason themselves
        pass
    _warm.add(str(model_dir))
