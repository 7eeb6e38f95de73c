"""docs/runtime.md's error table stays true: each row is reproduced through the public API on the
tiny models and raises the listed error type with the listed message (`…` matches anything)."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import cosyvoice_runtime
from cosyvoice_runtime import Runtime
from pytest_cosyvoice.faults import Fault, forced_llm

ROOT = Path(__file__).resolve().parents[2]
TOKENS = list(range(100, 400))


def table() -> dict[str, tuple[str, str]]:
    text = (ROOT / "docs" / "runtime.md").read_text(encoding="utf-8")
    section = text.split("## Error table", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        m = re.match(r"^\| (.+?) \| `(\w+)` \| `(.+)` \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


ROWS = table()


@pytest.fixture(scope="module")
def rt(tiny_v2_dir: Path) -> Runtime:
    return cosyvoice_runtime.load(tiny_v2_dir, device="cpu")


def wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    return path


def cases(rt: Runtime, voice: Path, tmp: Path, tiny_v1_dir: Path, tiny_v2_dir: Path) -> dict[str, Callable[[], object]]:
    speech, rate = sf.read(voice, dtype="float32")

    def poisoned(value: float) -> Path:
        x = speech.copy()
        x[rate // 2] = value
        return wav(tmp / f"poisoned-{value}.wav", x, rate)

    def no_spk2info() -> Runtime:
        d = tmp / "nospk"
        d.mkdir()
        for entry in tiny_v2_dir.iterdir():
            if entry.name != "spk2info.pt":
                (d / entry.name).symlink_to(entry)
        return cosyvoice_runtime.load(d, device="cpu")

    def faulty(make: Callable[..., object], **settings: float) -> Runtime:
        model = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
        model.llm.inference = make  # type: ignore[method-assign]
        model.configure(**settings)
        return model

    def endless() -> Runtime:
        import torch

        model = cosyvoice_runtime.load(tiny_v2_dir, device="cpu")
        with torch.no_grad():
            model.llm.llm_decoder.bias[model.llm.speech_token_size] = -30.0
        return model

    spk = rt.speakers[0]
    return {
        "model directory missing": lambda: cosyvoice_runtime.load(tmp / "nowhere"),
        "timeout infinite, NaN, zero or negative": lambda: rt.configure(stall_timeout_s=float("inf")),
        "prompt wav with NaN or Inf samples": lambda: rt.stream("Hi.", prompt_wav=poisoned(np.nan), prompt_text="A."),
        "prompt wav with an absurd peak": lambda: rt.stream("Hi.", prompt_wav=poisoned(1e30)),
        "prompt wav shorter than 100 ms": lambda: rt.stream("Hi.", prompt_wav=wav(tmp / "s.wav", speech[:320])),
        "prompt wav longer than 30 s":
            lambda: rt.stream("Hi.", prompt_wav=wav(tmp / "l.wav", np.resize(speech, 31 * rate), rate)),
        "prompt wav silent": lambda: rt.stream("Hi.", prompt_wav=wav(tmp / "z.wav", np.zeros(16000))),
        "prompt wav not a path": lambda: rt.stream("Hi.", prompt_wav=np.zeros(16000, np.float32)),
        "source wav (voice conversion) with NaN samples":
            lambda: rt.stream("", source_wav=poisoned(np.nan), prompt_wav=voice),
        "empty text": lambda: rt.stream("  ", speaker=spk),
        "text over 5000 characters": lambda: rt.stream("word " * 4000, speaker=spk),
        "text iterator over 5000 characters": lambda: list(rt.stream(iter(["x" * 6000]), prompt_wav=voice)),
        "empty `prompt_text`": lambda: rt.stream("Hi.", prompt_wav=voice, prompt_text=""),
        "seed negative, fractional or 2**63 and above": lambda: rt.stream("Hi.", speaker=spk, seed=-1),
        "`speed` not a number in range, in `stream()`": lambda: rt.stream("Hi.", speaker=spk, speed="fast"),
        "valid `speed` other than 1.0 in `stream()`": lambda: rt.stream("Hi.", speaker=spk, speed=1.5),
        "arguments naming no mode": lambda: rt.stream("Hi.", prompt_text="t"),
        "unknown speaker": lambda: rt.stream("Hi.", speaker="nobody"),
        "no voice on a model without `spk2info.pt`": lambda: no_spk2info().stream("Hi."),
        "v1 `instruct` on a model that is not an Instruct model": lambda: cosyvoice_runtime.load(
            tiny_v1_dir, device="cpu").stream("Hi.", speaker=spk, instruct="Speak calmly."),
        "LLM fails": lambda: faulty(forced_llm(TOKENS, fault=Fault(
            at=40, message="injected LLM failure after 40 tokens"))).synthesize("Hi.", speaker=spk),
        "LLM stalls": lambda: faulty(forced_llm(TOKENS, fault=Fault(at=30, stall_s=1.0)),
                                     stall_timeout_s=0.2).synthesize("Hi.", speaker=spk),
        "LLM never ends the utterance": lambda: endless().synthesize("Hello there.", speaker=spk),
    }


def test_every_row_has_a_reproduction(rt: Runtime, voice: Path, tmp_path: Path, tiny_v1_dir: Path,
                                      tiny_v2_dir: Path) -> None:
    assert len(ROWS) >= 20
    assert sorted(ROWS) == sorted(cases(rt, voice, tmp_path, tiny_v1_dir, tiny_v2_dir))


@pytest.mark.parametrize("row", sorted(ROWS))
def test_row(row: str, rt: Runtime, voice: Path, tmp_path: Path, tiny_v1_dir: Path, tiny_v2_dir: Path) -> None:
    error, example = ROWS[row]
    run = cases(rt, voice, tmp_path, tiny_v1_dir, tiny_v2_dir)[row]
    cls = getattr(cosyvoice_runtime, error)
    with pytest.raises(cls) as info:
        run()
    assert type(info.value) is cls, f"{row}: {type(info.value).__name__}, table says {error}"
    pattern = ".*".join(re.escape(part) for part in example.split("…"))
    assert re.fullmatch(pattern, str(info.value)), f"{row}:\n  raised: {info.value}\n  table:  {example}"
