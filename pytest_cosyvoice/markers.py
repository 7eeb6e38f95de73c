"""The markers: their help lines and the binding of a test's marks to the specs (`specs.py`).

A wrong keyword or value becomes `pytest.fail(..., pytrace=False)` naming the test, the marker as
written, what is wrong and the valid keywords, instead of a traceback from inside the plugin.
"""
from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import pytest

from .judging.specs import DEFAULT_MAX_CLICK_RATIO, SPECS, MarkerSpec, SpecError

# Registered in pytest_configure; `pytest --markers` shows these lines.
MARKER_HELP: dict[str, str] = {
    "streaming": (
        f"streaming(prebuffer_ms=0, max_gap_ms=0, max_click_ratio={DEFAULT_MAX_CLICK_RATIO!r}, allow_warnings=()): "
        "every stream the test made through cosy_tts must be gap-free (worst playback stall after the "
        "prebuffer <= max_gap_ms), complete, sound (finite, within [-1, 1], no empty chunk, no click at a "
        "join, no zero run > 20 ms), clean (no Deprecation/PendingDeprecation/FutureWarning) and tidy "
        "(no thread left behind)."),
    "rtf": ("rtf(max=1.0, warmup=1, repeat=1): real-time factor (wall time / audio seconds) of the "
            "test's cosy_tts calls must be <= max; the first call is replayed `warmup` times untimed; "
            "`repeat` rounds in all: rounds 2.. re-run the test after the main pass, interleaved and "
            "shuffled with the other rtf tests, as samples for the baseline drift rule."),
    "first_chunk": "first_chunk(max_ms): every stream's first chunk must arrive within max_ms of the call.",
    "no_deprecations": ("no_deprecations(allow=()): fail on any DeprecationWarning, PendingDeprecationWarning "
                        "or FutureWarning raised during the test in any thread, except those matching allow."),
    "stall_timeout": "stall_timeout(seconds): this test's stream stall timeout (overrides --cosy-stall-timeout).",
    "quality": ("quality(snr_db=None, streamed_mel_db=None, tokens='identical', mos_slack=0.97, wer_slack=1.25, "
                "sim_drop=0.05, min_clean_runs=5): the test's cosy_tts calls are seeded (from the test id and "
                "the call's index, unless the test passes seed=) and judged against the golden outputs saved "
                "with --cosy-save-baseline: speech tokens, token->wav on the golden tokens (SNR >= snr_db; "
                "None: by dtype), the call's audio, streamed vs offline render (log-mel <= streamed_mel_db); "
                "DNSMOS/PLCMOS, WER (--cosy-asr) and speaker similarity as drift from the worst of "
                "min_clean_runs saved clean runs (fewer: uncalibrated, never gates)."),
}


def _keywords(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


def _written(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"@pytest.mark.{name}({', '.join(parts)})"


def bind(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any], nodeid: str) -> Any:
    """`cls(*args, **kwargs)`, or `pytest.fail` with a message fit for the user."""
    written = _written(cls.marker, args, kwargs)
    try:
        return cls(*args, **kwargs)
    except SpecError as e:
        problem = str(e)
    except TypeError as e:
        # The dataclass constructor's own message ("unexpected keyword argument 'maxx'") names the fault.
        problem = re.sub(r"^\w+\.__init__\(\) ", "", str(e))
    pytest.fail(f"{nodeid}: {written}: {problem}; valid keywords: {_keywords(cls)}", pytrace=False)


def specs_for(item: pytest.Item) -> tuple[MarkerSpec, ...]:
    """The bound spec of each of our markers on the item (closest marker wins), at most one per spec
    class; `verdict.spec_of(specs, RtfSpec)` finds one by its type."""
    out: list[MarkerSpec] = []
    for cls in SPECS:
        mark = item.get_closest_marker(cls.marker)
        if mark is not None:
            out.append(bind(cls, mark.args, dict(mark.kwargs), item.nodeid))
    return tuple(out)
