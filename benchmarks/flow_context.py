"""Bounded-context flow (``flow_context_tokens=K``) against exact mode on a v2/v3 model: per-chunk
render cost and per-chunk deviation of the audio from exact mode, same forced tokens.

    .venv/bin/python benchmarks/flow_context.py [--model DIR | --size tiny|mid] [--seconds 60]
        [--contexts exact,50,100,200] [--device cpu] [--json OUT]
        [--prompt] [--seed 0] [--threads N] [--fp16] [--floor]

A seeded random sequence of ``seconds * 25`` speech tokens replaces the LLM (the forced LLM is
instant, so the time between chunk arrivals is the flow + HiFT cost of each chunk) and is streamed
once per setting, with the runtime's default hop schedule (25, 50, 100, 100, ...). The voice is the
model's first spk2info speaker, or the plugin's shipped prompt (pytest_cosyvoice/data/prompt.wav +
prompt.txt) when the model has none or with --prompt. Every stream starts from the same torch seed
(HiFT's sine source draws random numbers), so exact mode against itself deviates by 0 on CPU; --floor
streams exact mode a second time and reports that floor (worth it on GPU).

Printed: a summary table (one row per setting) and a per-chunk table per setting, in markdown.
  first full   time of the first 100-token chunk (the first chunk at the hop ceiling)
  last full    time of the last 100-token chunk; last/first full is the growth (target <= 1.2)
  final        the closing chunk (the remainder, flow run non-streaming on its whole window)
  wall, RTF    from the first ``next`` to the last chunk; RTF = wall / audio seconds
  deviation    per chunk against exact mode: relative RMS error ||a - r|| / ||r|| and SNR
               10 log10(sum r^2 / sum (a - r)^2) in dB (inf: identical); mean and max over chunks
The first run of a process is slower (allocator and kernel warm-up): one untimed short stream runs first.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_cosyvoice.faults import forced_llm, forced_tokens  # noqa: E402 - after the path entry above

TOKEN_RATE = 25  # v2/v3 speech tokens per second


def parse_contexts(text: str) -> list[int | None]:
    out: list[int | None] = []
    for item in (s.strip() for s in text.split(",")):
        if item == "exact":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise argparse.ArgumentTypeError(f"{item!r}: expected 'exact' or a positive whole number of tokens")
    if not out:
        raise argparse.ArgumentTypeError("no context settings")
    return out


def name(context: int | None) -> str:
    return "exact" if context is None else f"K={context}"


def stream(rt: Any, tokens: list[int], voice: dict[str, Any], context: int | None, seed: int) -> dict[str, Any]:
    import torch

    rt.configure(flow_context_tokens=context)
    rt.llm.inference = forced_llm(tokens)
    try:
        torch.manual_seed(seed)
        it = rt.stream("x", **voice)  # frontend work (prompt features) happens here, before the clock
        audio, sizes, times = [], [], []
        t0 = last = time.perf_counter()
        for c in it:
            now = time.perf_counter()
            times.append(now - last)
            last = now
            audio.append(c.audio.copy())
            sizes.append(int(c.tokens))
        wall = last - t0
    finally:
        del rt.llm.inference
        rt.configure(flow_context_tokens=None)
    seconds = sum(a.size for a in audio) / rt.sample_rate
    return {"context": context, "tokens": sizes, "samples": [int(a.size) for a in audio], "render_s": times,
            "wall_s": wall, "audio_s": seconds, "rtf": wall / seconds if seconds else None, "audio": audio}


def deviation(a: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """(relative RMS error, SNR dB) of ``a`` against reference ``r`` (common length if they differ)."""
    n = min(a.size, r.size)
    a64, r64 = a[:n].astype(np.float64), r[:n].astype(np.float64)
    err, ref = float(np.sum((a64 - r64) ** 2)), float(np.sum(r64 ** 2))
    rel = math.sqrt(err / ref) if ref > 0 else (0.0 if err == 0 else math.inf)
    snr = math.inf if err == 0 else (10 * math.log10(ref / err) if ref > 0 else -math.inf)
    return rel, snr


def summarise(run: dict[str, Any], ref: dict[str, Any], hop_max: int) -> dict[str, Any]:
    devs = [deviation(a, r) for a, r in zip(run["audio"], ref["audio"], strict=True)]
    run["rel_rms"] = [d[0] for d in devs]
    run["snr_db"] = [d[1] for d in devs]
    run["same_schedule"] = run["tokens"] == ref["tokens"] and run["samples"] == ref["samples"]
    full = [i for i, n in enumerate(run["tokens"][:-1]) if n == hop_max]  # streamed chunks at the ceiling
    first = run["render_s"][full[0]] if full else None
    last = run["render_s"][full[-1]] if full else None
    run.update(first_full_s=first, last_full_s=last, final_s=run["render_s"][-1],
               growth=last / first if full else None, full_chunks=len(full))
    return run


def fmt_db(x: float) -> str:
    return "inf" if x == math.inf else f"{x:.1f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


def print_tables(runs: list[dict[str, Any]], target: float) -> None:
    print("| setting | chunks | first full ms | last full ms | last/first full | final ms | wall s | RTF "
          "| rel RMS mean | rel RMS max | SNR min dB | same schedule |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        growth = "-" if r["growth"] is None else f"{r['growth']:.2f} {'ok' if r['growth'] <= target else 'over'}"
        print(f"| {name(r['context'])} | {len(r['tokens'])} | {fmt_ms(r['first_full_s'])} | {fmt_ms(r['last_full_s'])} "
              f"| {growth} | {fmt_ms(r['final_s'])} | {r['wall_s']:.2f} | {r['rtf']:.3f} "
              f"| {np.mean(r['rel_rms']):.4f} | {max(r['rel_rms']):.4f} | {fmt_db(min(r['snr_db']))} "
              f"| {'yes' if r['same_schedule'] else 'NO'} |")
    for r in runs:
        print(f"\n{name(r['context'])}: per chunk")
        print("| chunk | tokens | samples | render ms | rel RMS | SNR dB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for i, (n, s, t, e, q) in enumerate(zip(r["tokens"], r["samples"], r["render_s"], r["rel_rms"], r["snr_db"],
                                                          strict=True)):
            print(f"| {i} | {n} | {s} | {t * 1000:.0f} | {e:.4f} | {fmt_db(q)} |")


def jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items() if k != "audio"}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="a v2/v3 model directory")
    which.add_argument("--size", choices=("tiny", "mid"), default=None,
                       help="a random-weight v2 model built by cosyvoice_runtime.tiny (cached; default tiny)")
    ap.add_argument("--seconds", type=float, default=60.0, help="forced audio length (tokens = seconds * 25)")
    ap.add_argument("--contexts", type=parse_contexts, default=parse_contexts("exact,50,100,200"),
                    help="comma-separated: exact and/or flow_context_tokens values (default exact,50,100,200)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true", help="fp16 LLM/flow (CUDA only)")
    ap.add_argument("--prompt", action="store_true",
                    help="zero-shot with the shipped prompt even if the model has speakers")
    ap.add_argument("--seed", type=int, default=0, help="token sequence and torch seed")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--floor", action="store_true", help="stream exact mode twice; report its deviation from itself")
    ap.add_argument("--target", type=float, default=1.2, help="last/first full-chunk time target (default 1.2)")
    ap.add_argument("--json", default=None, help="write the measurements (without audio) here")
    args = ap.parse_args(argv)
    if args.seconds <= 0:
        ap.error("--seconds must be positive")

    import torch

    import cosyvoice_runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        from cosyvoice_runtime.tiny import default_model_dir

        model = default_model_dir(2, size=args.size or "tiny")
    rt = cosyvoice_runtime.load(model, device=args.device, fp16=args.fp16)
    if rt.version == 1:
        print("error: v1 renders fixed overlapping windows; flow_context_tokens applies to v2/v3 only", file=sys.stderr)
        return 2
    if rt.speakers and not args.prompt:
        voice: dict[str, Any] = {"speaker": rt.speakers[0]}
        voice_desc = f"speaker {rt.speakers[0]!r}"
    else:
        data = ROOT / "pytest_cosyvoice" / "data"
        voice = {"prompt_wav": str(data / "prompt.wav"), "prompt_text": (data / "prompt.txt").read_text().strip()}
        voice_desc = "zero-shot, shipped prompt.wav"
    n_tokens = int(round(args.seconds * TOKEN_RATE))
    tokens = forced_tokens(rt.version, n_tokens, seed=args.seed)
    s = rt.settings
    print(f"model {model} (v{rt.version}), device {rt.device}{' fp16' if args.fp16 else ''}, {voice_desc}, "
          f"{n_tokens} forced tokens ({args.seconds:g} s), hop {s.token_hop_len}->{s.token_max_hop_len} "
          f"x{s.stream_scale_factor:g}, torch threads {torch.get_num_threads()}, seed {args.seed}")

    with torch.inference_mode():
        stream(rt, tokens[:min(n_tokens, 150)], voice, None, args.seed)  # warm-up, untimed
        settings = list(dict.fromkeys(args.contexts))
        order = [None] + [c for c in settings if c is not None]  # exact first: the reference
        runs: dict[int | None, dict[str, Any]] = {}
        for context in order:
            t = time.perf_counter()
            runs[context] = stream(rt, tokens, voice, context, args.seed)
            print(f"  {name(context)}: {len(runs[context]['tokens'])} chunks in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr, flush=True)
        floor = stream(rt, tokens, voice, None, args.seed) if args.floor else None

    ref = runs[None]
    shown = [summarise(runs[c], ref, s.token_max_hop_len) for c in settings]
    if None not in settings:
        print("(exact mode streamed as the reference only)")
    print()
    print_tables(shown, args.target)
    if floor is not None:
        summarise(floor, ref, s.token_max_hop_len)
        print(f"\nexact vs exact (floor): rel RMS mean {np.mean(floor['rel_rms']):.2e} "
              f"max {max(floor['rel_rms']):.2e}, "
              f"SNR min {fmt_db(min(floor['snr_db']))} dB")
    if args.json:
        out = {"model": str(model), "version": rt.version, "device": str(rt.device), "fp16": args.fp16,
               "voice": voice_desc, "tokens": n_tokens, "seconds": args.seconds, "seed": args.seed,
               "threads": torch.get_num_threads(),
               "schedule": [s.token_hop_len, s.token_max_hop_len, s.stream_scale_factor],
               "target": args.target, "runs": [jsonable(r) for r in shown],
               "floor": jsonable(floor) if floor is not None else None}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
