"""The markers: their help lines and the binding of a test's marks to the specs (`specs.py`).

A wrong keyword or value becomes `pytest.fail(..., pytrace=False)` naming the test, the marker as
written, what is wrong and the valid keywords, instead of a traceback from inside the plugin.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, fields
from typing import Any

import pytest

from .judging.specs import (
    SPECS,
    FirstChunkSpec,
    MarkerSpec,
    NoDeprecationsSpec,
    QualitySpec,
    RtfSpec,
    SpecError,
    StallTimeoutSpec,
    StreamingSpec,
)


def signature(cls: type[MarkerSpec]) -> str:
    """`name(field=default, ...)` of a marker's spec, read from its dataclass fields (a field without a
    default by name alone): the help and the docs show the defaults the spec applies."""
    parts = [f.name if f.default is MISSING else f"{f.name}={f.default!r}" for f in fields(cls)]
    return f"{cls.marker}({', '.join(parts)})"


_WHAT: dict[type[MarkerSpec], str] = {
    StreamingSpec: (
        "every stream the test made through cosy_tts must be gap-free (worst playback stall after the "
        "prebuffer <= max_gap_ms), complete, sound (finite, within [-1, 1], no empty chunk, no click at a "
        "join, no zero run > 20 ms), clean (no Deprecation/PendingDeprecation/FutureWarning) and tidy "
        "(no thread left behind)."),
    RtfSpec: ("real-time factor (wall time / audio seconds) of the "
              "test's cosy_tts calls must be <= max; the first call is replayed `warmup` times untimed; "
              "`repeat` rounds in all: rounds 2.. re-run the test after the main pass, interleaved and "
              "shuffled with the other rtf tests, as samples for the baseline drift rule."),
    FirstChunkSpec: "every stream's first chunk must arrive within max_ms of the call.",
    NoDeprecationsSpec: ("fail on any DeprecationWarning, PendingDeprecationWarning "
                         "or FutureWarning raised during the test in any thread, except those matching allow."),
    StallTimeoutSpec: "this test's stream stall timeout (overrides --cosy-stall-timeout).",
    QualitySpec: ("the test's cosy_tts calls are seeded (from the test id and "
                  "the call's index, unless the test passes seed=) and judged against the golden outputs saved "
                  "with --cosy-save-baseline: speech tokens, token->wav on the golden tokens (SNR >= snr_db; "
                  "None: by dtype), the call's audio, streamed vs offline render (log-mel <= streamed_mel_db); "
                  "DNSMOS/PLCMOS, WER (--cosy-asr) and speaker similarity as drift from the worst of "
                  "min_clean_runs saved clean runs (fewer: uncalibrated, never gates)."),
}
# Registered in pytest_configure; `pytest --markers` shows these lines.
MARKER_HELP: dict[str, str] = {cls.marker: f"{signature(cls)}: {_WHAT[cls]}" for cls in SPECS}


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
