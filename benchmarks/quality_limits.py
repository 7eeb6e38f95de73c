"""How the quality gate's default limits were chosen (docs/reports.md, "Quality limits: how the defaults were
chosen"): measured on the embedded tiny models, CPU fp32, seeded requests.

    python benchmarks/quality_limits.py [--runs 10] [--versions 2 1] [--json out.json]

(a) reproducibility: a seeded offline synthesis rendered again in a fresh process - SNR vs this one's;
(b) what the token->wav SNR limit must catch: the flow's output mel rounded through fp16 (the loaded flow's
    `inference` wrapped for the call, then restored) and white noise at -30/-20 dB on the vocoder output;
(c) streamed vs offline of the same tokens (`Runtime.stream` vs `Runtime.synthesize`, same seed): the log-mel
    distance on clean runs, and with 20 ms zeroed at every chunk join or a click (+0.5) at every join, put
    into the streamed chunks' concatenation here; and the same defects on the espeak-ng prompt (real speech)
    cut into 0.5 s chunks.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_cosyvoice.judging.audio_metrics import snr_db, streamed_vs_offline  # noqa: E402

# One long sentence each (several streamed chunks, so several joins, and one LLM run per request).
TEXTS = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank this morning, while the farmer "
    "watches from the old wooden bridge and counts the sheep that wander across the green hills",
    "Please remember to bring your umbrella and a warm coat, because the forecast says it will rain all "
    "afternoon and the wind will turn cold long before the evening train arrives at the station",
    "A release gate for a speech model that cannot hear the sound is only half a gate, however fast and "
    "however free of gaps its chunks arrive at the listener on the other side of the network",
    "Seven silver swans swam silently across the wide and windy lake before sunset, and the children on "
    "the shore counted them twice to be sure that none of them had been left behind in the reeds",
    "We measured every chunk join twice, once clean and once with a deliberate defect, so that the limit "
    "could be placed between the two with a margin on either side and nobody would have to guess it",
]
# v1 streams a fixed hop of 100 tokens (+ 20 overlap): one of these sentences gives it a single chunk, so
# each of its requests joins three of them (one sentence still: one LLM run).
JOIN = {1: 3, 2: 1}
SEED0 = 1000
CLICK = 0.5
GAP_S = 0.020


def load(version: int) -> Any:
    import cosyvoice_runtime
    from cosyvoice_runtime.tiny import default_model_dir

    return cosyvoice_runtime.load(default_model_dir(version), device="cpu")


def request(i: int, version: int) -> tuple[str, int]:
    parts = [TEXTS[(i + k) % len(TEXTS)] for k in range(JOIN.get(version, 1))]
    return ", and ".join([parts[0]] + [p[0].lower() + p[1:] for p in parts[1:]]), SEED0 + i


def prompt_args() -> dict[str, str]:
    from pytest_cosyvoice.host import default_prompt

    p = default_prompt()
    return {"prompt_wav": str(p.wav), "prompt_text": p.text}


@contextmanager
def mel_through_fp16(rt: Any) -> Iterator[None]:
    """The flow's output mel (the first element `inference` returns, v1 and v2 alike) rounded through fp16:
    an instance attribute over the class's method, removed afterwards."""
    original = rt.flow.inference

    def rounded(*args: Any, **kwargs: Any) -> Any:
        mel, *rest = original(*args, **kwargs)
        return (mel.half().float(), *rest)

    rt.flow.inference = rounded
    try:
        yield
    finally:
        del rt.flow.inference


def with_noise(audio: np.ndarray, db: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out: np.ndarray = (audio + rng.normal(size=audio.size) * math.sqrt(float(np.mean(audio**2)) * 10 ** (db / 10))
                       ).astype(np.float32)
    return out


def zero_joins(chunks: list[np.ndarray], samples: int) -> np.ndarray:
    parts = [c.copy() for c in chunks]
    for p in parts[1:]:
        p[:samples] = 0.0
    return np.concatenate(parts)


def click_joins(chunks: list[np.ndarray], height: float = CLICK) -> np.ndarray:
    parts = [c.copy() for c in chunks]
    for p in parts[1:]:
        if p.size:
            p[0] += height
    return np.concatenate(parts)


def render_child(version: int, index: int, out: str) -> None:
    rt = load(version)
    text, seed = request(index, version)
    np.save(out, rt.synthesize(text, seed=seed, **prompt_args()).audio)


def fresh_process_snr(version: int, index: int, here: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "audio.npy")
        subprocess.run([sys.executable, __file__, "--child", str(version), str(index), out], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        other = np.load(out)
    if other.size != here.size:
        return float("nan")
    return snr_db(here, other)


def distances(streamed: np.ndarray, offline: np.ndarray, rate: int) -> dict[str, float]:
    d = streamed_vs_offline(streamed, offline, rate)
    return {"mean_db": d.mean_db, "worst_db": d.worst_db}


def measure_version(version: int, runs: int, fp16_runs: int) -> dict[str, Any]:
    rt = load(version)
    args = prompt_args()
    rate = rt.sample_rate
    rows: list[dict[str, Any]] = []
    for i in range(runs):
        text, seed = request(i, version)
        off = rt.synthesize(text, seed=seed, **args)
        st = list(rt.stream(text, seed=seed, **args))
        chunks = [c.audio for c in st]
        streamed = np.concatenate(chunks)
        row: dict[str, Any] = {"seed": seed, "tokens": len(off.stats.speech_tokens or ()), "chunks": len(chunks),
                               "offline_samples": int(off.audio.size), "streamed_samples": int(streamed.size),
                               "clean": distances(streamed, off.audio, rate)}
        if len(chunks) > 1:
            row["gap20ms"] = distances(zero_joins(chunks, round(GAP_S * rate)), off.audio, rate)
            row["click"] = distances(click_joins(chunks), off.audio, rate)
        if i < fp16_runs:
            with mel_through_fp16(rt):
                rounded = rt.synthesize(text, seed=seed, **args).audio
            again = rt.synthesize(text, seed=seed, **args).audio
            row["snr_same_process"] = snr_db(off.audio, again)
            row["snr_fp16_mel"] = snr_db(off.audio, rounded) if rounded.size == off.audio.size else float("nan")
            row["snr_noise30"] = snr_db(off.audio, with_noise(off.audio, -30))
            row["snr_noise20"] = snr_db(off.audio, with_noise(off.audio, -20))
        if i == 0:
            row["snr_fresh_process"] = fresh_process_snr(version, i, off.audio)
        rows.append(row)
        print(f"v{version} {json.dumps(_finite(row))}", flush=True)
    return {"version": version, "rate": rate, "rows": rows}


def speech_reference() -> dict[str, dict[str, float]]:
    import soundfile as sf

    audio, rate = sf.read(ROOT / "pytest_cosyvoice" / "data" / "prompt.wav", dtype="float32")
    step = rate // 2
    chunks = [audio[i:i + step] for i in range(0, audio.size, step)]
    return {"clean": distances(np.concatenate(chunks), audio, rate),
            "gap20ms": distances(zero_joins(chunks, round(GAP_S * rate)), audio, rate),
            "click": distances(click_joins(chunks), audio, rate),
            "noise30": {"snr_db": snr_db(audio, with_noise(audio, -30))}}


def _finite(x: Any) -> Any:
    """JSON has no infinity or NaN: an identical render's SNR is written "inf"."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _summary(results: list[dict[str, Any]], speech: dict[str, dict[str, float]]) -> None:
    def worst(rows: list[dict[str, Any]], case: str, field: str, pick: Callable[..., float]) -> str:
        values = [r[case][field] for r in rows if case in r]
        return f"{pick(values):.2f}" if values else "-"

    print("\nmodel | runs | multi-chunk | clean worst-frame (max) | gap 20 ms worst-frame (min) | click worst-frame "
          "(min) | clean mean (max) | gap mean (min) | click mean (min)")
    for res in results:
        rows = res["rows"]
        multi = sum(1 for r in rows if r["chunks"] > 1)
        print(f"tiny v{res['version']} | {len(rows)} | {multi} | {worst(rows, 'clean', 'worst_db', max)} | "
              f"{worst(rows, 'gap20ms', 'worst_db', min)} | {worst(rows, 'click', 'worst_db', min)} | "
              f"{worst(rows, 'clean', 'mean_db', max)} | {worst(rows, 'gap20ms', 'mean_db', min)} | "
              f"{worst(rows, 'click', 'mean_db', min)}")
    print(f"espeak prompt, 0.5 s chunks | clean {speech['clean']['worst_db']:.2f} | "
          f"gap {speech['gap20ms']['worst_db']:.2f} | click {speech['click']['worst_db']:.2f} "
          f"(worst-frame dB; means {speech['clean']['mean_db']:.2f} / "
          f"{speech['gap20ms']['mean_db']:.2f} / {speech['click']['mean_db']:.2f})")
    print("\nmodel | same process | fresh process | fp16 mel (min..max) | noise -30 dB | noise -20 dB  (SNR dB)")
    for res in results:
        rows = [r for r in res["rows"] if "snr_fp16_mel" in r]
        fp16 = [r["snr_fp16_mel"] for r in rows]
        fresh = res["rows"][0].get("snr_fresh_process")
        same = {r["snr_same_process"] for r in rows}
        print(f"tiny v{res['version']} | {', '.join(f'{x:g}' for x in same)} | {fresh:g} | "
              f"{min(fp16):.1f}..{max(fp16):.1f} | {np.mean([r['snr_noise30'] for r in rows]):.1f} | "
              f"{np.mean([r['snr_noise20'] for r in rows]):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=10, help="seeded requests per model (seed, text): default 10")
    ap.add_argument("--fp16-runs", type=int, default=3, help="of those, how many also measure (b): default 3")
    ap.add_argument("--versions", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    ap.add_argument("--child", nargs=3, metavar=("VERSION", "INDEX", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        render_child(int(a.child[0]), int(a.child[1]), a.child[2])
        return
    results = [measure_version(v, a.runs, a.fp16_runs) for v in a.versions]
    speech = speech_reference()
    if a.json:
        a.json.write_text(json.dumps(_finite({"models": results, "speech": speech}), indent=1) + "\n")
    _summary(results, speech)


if __name__ == "__main__":
    main()
