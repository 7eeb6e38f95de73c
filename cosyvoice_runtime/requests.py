"""Request checking and planning: a request's arguments checked (types, mode, voice, text size) and
turned into its model inputs (``Plan``), before any model part but the frontend runs."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import InvalidInput, shown
from .frontend import Frontend, ModelInput
from .limits import MAX_TEXT_CHARS
from .text import prepare


@dataclass
class TextStreamInput:
    """A text iterator's request: the voice inputs, and the pieces the LLM producer reads lazily."""

    inputs: ModelInput
    pieces: Iterator[str]


@dataclass(frozen=True)
class Plan:
    """A checked request (``Runtime.plan``): its mode and one input per LLM run, in order: a sentence
    of a ``str`` text each, the one ``TextStreamInput`` of a text iterator, the source recording for vc."""

    mode: str
    inputs: tuple[ModelInput | TextStreamInput, ...]


def _mode_table(version: int) -> list[tuple[str, set[str]]]:
    """Each mode and the exact set of voice arguments that selects it."""
    return [
        ("sft", {"speaker"}),
        ("zero_shot", {"prompt_wav", "prompt_text"}),
        ("cross_lingual", {"prompt_wav"}),
        ("instruct", {"speaker", "instruct"} if version == 1 else {"instruct", "prompt_wav"}),
        ("vc", {"source_wav", "prompt_wav"}),
    ]


def resolve_mode(version: int, *, speaker: Any, prompt_wav: Any, prompt_text: Any, instruct: Any,
                 source_wav: Any) -> str:
    given = {k for k, v in dict(speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                                instruct=instruct, source_wav=source_wav).items() if v is not None}
    modes = _mode_table(version)
    for mode, args in modes:
        if given == args:
            return mode
    valid = "; ".join(f"{m}: {' + '.join(sorted(a))}" for m, a in modes)
    raise InvalidInput(f"arguments {sorted(given) or 'none'} do not name a mode of a v{version} model; "
                       f"valid combinations: {valid}")


def available_modes(version: int, *, has_speakers: bool, supports_instruct: bool) -> list[str]:
    """The modes a model can run (sft needs speakers; v1 instruct an Instruct model and a speaker)."""
    out = ["sft"] if has_speakers else []
    out += ["zero_shot", "cross_lingual"]
    if supports_instruct and (version >= 2 or has_speakers):
        out.append("instruct")
    return out + ["vc"]


def check_speed(speed: Any) -> float:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.5 <= speed <= 2.0:
        raise InvalidInput(f"speed={speed!r}: expected a number from 0.5 to 2.0")
    return float(speed)


def check_texts(*, speaker: Any, prompt_text: Any, instruct: Any, text_frontend: Any) -> None:
    """Types and emptiness of the text-like arguments (the mode is decided on what is not None)."""
    for name, v in (("speaker", speaker), ("prompt_text", prompt_text), ("instruct", instruct)):
        if v is not None and not isinstance(v, str):
            raise InvalidInput(f"{name}={shown(v)}: expected a str, got {type(v).__name__}")
    if prompt_text is not None and not prompt_text.strip():
        # Upstream would run zero-shot with no transcript; the caller most likely meant cross-lingual.
        raise InvalidInput(f"prompt_text={prompt_text!r}: empty transcript; give the words spoken in prompt_wav "
                           "(zero-shot), or leave prompt_text out (None) for cross-lingual mode")
    if instruct is not None and not instruct.strip():
        raise InvalidInput(f"instruct={instruct!r}: empty instruction; expected text such as 'Speak calmly.', "
                           "or leave instruct out (None)")
    if not isinstance(text_frontend, bool):
        raise InvalidInput(f"text_frontend={text_frontend!r}: expected True or False")


class RequestPlanner:
    """Checks one model's requests and builds their inputs with its frontend."""

    def __init__(self, frontend: Frontend, *, version: int, model_dir: Path, spk2info_file: Path | None,
                 supports_instruct: bool) -> None:
        self.frontend = frontend
        self.version = version
        self.model_dir = model_dir
        self.spk2info_file = spk2info_file
        self.supports_instruct = supports_instruct

    def plan(self, text: Any, *, speaker: Any, prompt_wav: Any, prompt_text: Any, instruct: Any, source_wav: Any,
             text_frontend: Any) -> Plan:
        check_texts(speaker=speaker, prompt_text=prompt_text, instruct=instruct, text_frontend=text_frontend)
        self._check_voice(speaker, prompt_wav, source_wav)
        mode = resolve_mode(self.version, speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text,
                            instruct=instruct, source_wav=source_wav)
        if mode == "instruct" and not self.supports_instruct:
            raise InvalidInput(
                f"instruct={instruct!r}: {str(self.model_dir)!r} is not a CosyVoice v1 Instruct model; like upstream, "
                "v1 instruct needs a model directory whose path contains '-Instruct' (e.g. CosyVoice-300M-Instruct)")
        if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"text of {len(text)} characters: at most {MAX_TEXT_CHARS} per request; split it into "
                               "several requests (e.g. by paragraph)")
        kw = dict(speaker=speaker, prompt_wav=prompt_wav, prompt_text=prompt_text, instruct=instruct,
                  source_wav=source_wav)
        if mode == "vc":
            return Plan(mode, (self.frontend.build(mode, None, **kw),))
        if isinstance(text, str):
            sentences = prepare(text, lambda s: len(self.frontend.encode(s)), text_frontend=text_frontend)
            if not sentences:
                raise InvalidInput(f"text={shown(text)}: nothing to synthesise; expected text with words")
            tokens = [self.frontend.text_tokens(s) for s in sentences]
            if any(t.shape[1] == 0 for t in tokens):  # e.g. "" with text_frontend=False
                raise InvalidInput(f"text={shown(text)}: gives no text token; expected text with words")
            return Plan(mode, tuple(self.frontend.build(mode, t, **kw) for t in tokens))
        if isinstance(text, Iterable) and not isinstance(text, (bytes, dict)):
            if self.version == 1:
                raise InvalidInput("text given as an iterator: streaming text input needs a v2/v3 model, this is v1")
            if mode in ("sft", "vc"):
                raise InvalidInput(f"text given as an iterator: streaming text input is not available in {mode} mode")
            # The pieces are consumed lazily by the producer (upstream's inference_bistream).
            inp = self.frontend.build(mode, torch.zeros(1, 0, dtype=torch.int32), **kw)
            return Plan(mode, (TextStreamInput(inp, iter(text)),))
        raise InvalidInput(f"text={shown(text)}: expected a str (or, on v2/v3, an iterator of str pieces)")

    def _check_voice(self, speaker: Any, prompt_wav: Any, source_wav: Any) -> None:
        """Names the missing spk2info.pt instead of a generic mode error when no voice can be had."""
        if self.frontend.spk2info or prompt_wav is not None or source_wav is not None:
            return
        where = (f"{str(self.model_dir)!r} has no spk2info.pt" if self.spk2info_file is None
                 else f"{str(self.spk2info_file)!r} lists no speaker")
        asked = f"speaker={speaker!r}: " if speaker is not None else "no voice given: "
        raise InvalidInput(f"{asked}{where}, so this model has no built-in speaker; pass prompt_wav= (cross-lingual, "
                           "plus prompt_text= for zero-shot, or instruct= on v2/v3)")


def check_speech_tokens(tokens: Any, vocab: int, *, version: int) -> list[int]:
    """A non-empty flat sequence of whole numbers from 0 to ``vocab - 1`` (the model's speech token
    ids, e.g. a request's ``StreamStats.speech_tokens``), as a list of ints; InvalidInput otherwise,
    naming the first bad value and the valid range."""
    valid = f"a non-empty sequence of speech token ids from 0 to {vocab - 1} (the v{version} model's vocabulary)"
    if hasattr(tokens, "ndim") and hasattr(tokens, "tolist"):   # a numpy array or torch tensor
        if tokens.ndim != 1:
            raise InvalidInput(f"tokens: an array of shape {tuple(tokens.shape)}; expected {valid}, flat")
        tokens = tokens.tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, (list, tuple)):
        raise InvalidInput(f"tokens={shown(tokens)}: expected {valid} (a list or tuple), got {type(tokens).__name__}")
    if not tokens:
        raise InvalidInput(f"tokens={shown(tokens)}: empty; expected {valid}")
    out: list[int] = []
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, int) and not _is_integer(t):
            raise InvalidInput(f"tokens[{i}]={shown(t)}: not a whole number ({type(t).__name__}); expected {valid}")
        v = int(t)
        if not 0 <= v < vocab:
            raise InvalidInput(f"tokens[{i}]={v}: outside the speech vocabulary; expected {valid}")
        out.append(v)
    return out


def _is_integer(value: Any) -> bool:
    """A numpy integer scalar (np.int64 and kin are not Python ints)."""
    import numpy as np

    return isinstance(value, np.integer)
