"""What a seed costs: `Runtime.stream(text, seed=1)` vs `seed=None`, same model, same text, paired.

    .venv/bin/python benchmarks/seed_cost.py [--model DIR] [--device cpu|cuda] [--pairs 24] [--out DIR]
                                             [--name NAME]

One pair = one seeded (seed 1 + the pair's index; `--fixed-seed`: 1 in every pair) and one unseeded
stream of the same text, back to back, in balanced order (AB in
even pairs, BA in odd ones, so a machine that speeds up or slows down within a pair hits both sides
alike), after one untimed warm-up pair. Per pair: the ratio seeded/unseeded of the first chunk's
latency and of the RTF (wall time / audio seconds: the unseeded side draws from the global generator,
so its utterance length varies; RTF is per second of audio). The real LLM runs: its sampling is one of
the draws a seed reaches, so forcing its tokens would hide part of the cost.

Reported per metric: the count of pairs, the median ratio, and the Hodges-Lehmann estimate of the
ratio with its 95 % distribution-free interval (Wilcoxon signed-rank, exact critical value, on the
log ratios: the median of the Walsh averages and the order statistics of the Walsh averages the
signed-rank distribution gives). Raw samples go to `<out>/<name>.json` (default
benchmarks/results/seed_cost/<name>.json).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT = "A seeded request should cost what an unseeded one does, chunk for chunk."
SEED = 1
SIDES = ("seeded", "unseeded")
METRICS = ("first_chunk_s", "rtf")


def run_once(rt: Any, voice: dict[str, Any], seed: int | None) -> dict[str, float]:
    """One stream of TEXT: first chunk latency, wall time, audio seconds and RTF."""
    t0 = time.perf_counter()
    first = -1.0
    samples, rate = 0, 0
    for c in rt.stream(TEXT, seed=seed, **voice):
        if first < 0:
            first = time.perf_counter() - t0
        samples += int(c.audio.size)
        rate = c.sample_rate
    wall = time.perf_counter() - t0
    audio_s = samples / rate
    return {"first_chunk_s": first, "wall_s": wall, "audio_s": audio_s, "rtf": wall / audio_s}


def load(model: str | None, device: str) -> tuple[str, Any, dict[str, Any]]:
    """(model directory, loaded runtime, voice keywords): `model` or the embedded tiny v2 model; its
    first speaker, or the project's prompt for a model without speakers."""
    import cosyvoice_runtime

    if model is None:
        from cosyvoice_runtime.tiny import default_model_dir

        model = str(default_model_dir(2))
    rt = cosyvoice_runtime.load(model, device=device)
    if rt.speakers:
        return model, rt, {"speaker": rt.speakers[0]}
    from pytest_cosyvoice.host import default_prompt

    p = default_prompt()
    return model, rt, {"prompt_wav": p.wav, "prompt_text": p.text}


def walsh_interval(values: list[float], alpha: float = 0.05) -> tuple[float, float | None, float | None]:
    """(estimate, low, high) of the centre of paired differences: Hodges-Lehmann with the Wilcoxon
    signed-rank (1 - alpha) interval, the plugin's own (`tracking.ranks.one_sample`, alpha / 2 a side).
    low/high are None when there are too few pairs for a (1 - alpha) interval (n < 6 at 95 %)."""
    from pytest_cosyvoice.tracking.ranks import one_sample

    s = one_sample(values, alpha / 2.0)
    return s.estimate, None if math.isinf(s.low) else s.low, None if math.isinf(s.high) else s.high


def hodges_lehmann(ratios: list[float], alpha: float = 0.05) -> tuple[float, float | None, float | None]:
    """(estimate, low, high) of the ratio: `walsh_interval` of the log ratios, exponentiated."""
    est, lo, hi = walsh_interval([math.log(r) for r in ratios], alpha)
    return math.exp(est), None if lo is None else math.exp(lo), None if hi is None else math.exp(hi)


def summary(pairs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        ratios = [p["seeded"][m] / p["unseeded"][m] for p in pairs]
        est, lo, hi = hodges_lehmann(ratios)
        out[m] = {"n": len(ratios), "median_ratio": statistics.median(ratios), "hl_ratio": est,
                  "ci95": [lo, hi], "unseeded_median": statistics.median(p["unseeded"][m] for p in pairs),
                  "seeded_median": statistics.median(p["seeded"][m] for p in pairs)}
    return out


def table(result: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{(x - 1) * 100:+.1f} %"

    rows = ["| metric | pairs | unseeded median | seeded median | median ratio | HL ratio [95 % CI] |",
            "|---|---|---|---|---|---|"]
    for m, s in result["summary"].items():
        scale, unit = (1000, " ms") if m == "first_chunk_s" else (1, "")
        lo, hi = s["ci95"]
        rows.append(f"| {'first chunk' if m == 'first_chunk_s' else 'RTF'} | {s['n']} | "
                    f"{s['unseeded_median'] * scale:.3g}{unit} | {s['seeded_median'] * scale:.3g}{unit} | "
                    f"{pct(s['median_ratio'])} | {pct(s['hl_ratio'])} [{pct(lo)}, {pct(hi)}] |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded tiny v2 model)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--pairs", type=int, default=24, help="measured pairs (default 24), after one warm-up pair")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_cost"),
                    help="directory of the raw samples (default benchmarks/results/seed_cost)")
    ap.add_argument("--fixed-seed", action="store_true",
                    help=f"seed every seeded call with {SEED} (default: seed {SEED} + the pair's index, so the seeded "
                         "side samples a fresh utterance each pair as the unseeded side does)")
    ap.add_argument("--name", default=None, help="file name of the raw samples, without .json (default: the device)")
    args = ap.parse_args(argv)
    if args.pairs < 1:
        ap.error(f"--pairs={args.pairs}: expected at least 1")

    import torch

    model, rt, voice = load(args.model, args.device)
    for seed in (SEED, None):   # warm-up pair, untimed
        run_once(rt, voice, seed)
    pairs: list[dict[str, dict[str, float]]] = []
    for i in range(args.pairs):
        order = SIDES if i % 2 == 0 else SIDES[::-1]
        # A fixed seed samples one utterance every time: its token sequence (how often the sampler drew
        # end-of-speech too early and drew again, how long it runs) would be one draw against the unseeded
        # side's many, a difference that is not the seed's cost. So each pair gets its own seed.
        seed = SEED if args.fixed_seed else SEED + i
        pair = {side: run_once(rt, voice, seed if side == "seeded" else None) for side in order}
        pairs.append(pair)
    result = {"command": " ".join(["benchmarks/seed_cost.py", *(argv if argv is not None else sys.argv[1:])]),
              "model": str(model), "version": rt.version, "device": str(rt.device), "text": TEXT, "seed": SEED,
              "seeds": "fixed" if args.fixed_seed else "seed + pair index",
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "pairs": pairs, "summary": summary(pairs)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name or rt.device.type}.json"
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"model {model} (v{rt.version}), device {rt.device}, {args.pairs} pairs (balanced AB/BA), "
          f"torch threads {torch.get_num_threads()}; ratios seeded/unseeded, Hodges-Lehmann with Wilcoxon "
          f"signed-rank 95 % CI")
    print(table(result))
    print(f"raw samples: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
