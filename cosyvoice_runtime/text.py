"""Text normalisation and sentence splitting.

Upstream normalises with wetext/ttsfrd when installed and splits into pieces of 60-80 tokens. We use
an installed normaliser (wetext) when there is one and otherwise a plain fallback: whitespace and
bracket clean-up, English numbers spelled out (inflect), then sentence splitting on end punctuation
with short sentences merged so that each piece has a useful length.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import inflect

_END = re.compile(r"(?<=[.!?;。！？；])\s*")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_NUM = re.compile(r"\d+(?:\.\d+)?")


def contains_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


@lru_cache(maxsize=1)
def _wetext() -> tuple[Callable[[str], str], Callable[[str], str]] | None:
    try:  # optional, like upstream's frontend
        from wetext import Normalizer
    except Exception:  # noqa: BLE001 - a broken optional install means the fallback, not a crash
        return None
    zh, en = Normalizer(lang="zh", operator="tn"), Normalizer(lang="en", operator="tn")
    return zh.normalize, en.normalize


@lru_cache(maxsize=1)
def _inflect() -> inflect.engine | None:
    try:
        import inflect
    except Exception:  # noqa: BLE001 - a broken optional install means no spelled-out numbers
        return None
    return inflect.engine()


def warm() -> None:
    """Imports and builds the normalisers now. `import inflect` alone takes seconds (typeguard
    instruments it at import): paid at load, it stays out of the first request's first-chunk latency
    and stall window."""
    _wetext()
    _inflect()


def _spell_numbers(text: str) -> str:
    eng = _inflect()
    if eng is None:
        return text
    # number_to_words is typed `str | list[str]`: a list only with wantlist=True.
    return _NUM.sub(lambda m: cast(str, eng.number_to_words(m.group(0))), text)


def normalize(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip())
    text = re.sub(r"[【】\[\]《》]", "", text)
    tn = _wetext()
    if contains_chinese(text):
        if tn is not None:
            text = tn[0](text)
        # Chinese text has no word spaces; upstream drops them the same way.
        text = re.sub(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])", "", text)
    else:
        text = tn[1](text) if tn is not None else _spell_numbers(text)
    return text


def split_sentences(text: str, count_tokens: Callable[[str], int], *, min_tokens: int = 20,
                    max_tokens: int = 80) -> list[str]:
    """Sentences of at most ``max_tokens`` text tokens where possible; short ones merge forward."""
    parts = [p.strip() for p in _END.split(text) if p.strip()]
    out: list[str] = []
    for p in parts:
        if not re.search(r"\w", p):  # lone punctuation carries no speech
            continue
        if out and count_tokens(out[-1]) < min_tokens and count_tokens(out[-1]) + count_tokens(p) <= max_tokens:
            joiner = "" if contains_chinese(p) else " "
            out[-1] = out[-1] + joiner + p
        else:
            out.append(p)
    return out


def prepare(text: str, count_tokens: Callable[[str], int], *, text_frontend: bool = True) -> list[str]:
    if not text_frontend:
        return [text]
    if not text.strip():
        return []
    return split_sentences(normalize(text), count_tokens)
