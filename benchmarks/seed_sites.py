"""What a seed adds to a request, timed where it acts: the request's own draw-site work, seeded vs not.

    .venv/bin/python benchmarks/seed_sites.py [--model DIR] [--device cpu|cuda] [--reps 400] [--streams 12]
                                              [--out DIR] [--name NAME]

A seeded and an unseeded request run the same code except at the draw sites (cosyvoice_runtime.seeding):
per sentence the LLM thread makes a `SeededDraws` and its sampler draws with that generator instead of
the global one; per rendered piece the consumer makes a `SeededDraws` and the vocoder's source module
runs under it (plus v1's flow decoder up to its estimator). `benchmarks/seed_cost.py` times whole
streams, and on a noisy machine (about 10 % per stream) 100 pairs resolve +-2.5 %: too coarse for a
1 % target. This times exactly the part that differs, on the inputs one real request gave it, so its
interval is narrow enough to say how much of the request it can be.

1. One seeded stream of TEXT (seed 1) is run and its inputs kept: each vocoder source-module call's
   arguments (a forward pre-hook, removed after), the LLM decoder's last-position scores per step (a
   forward hook on `llm.llm_decoder`, removed after), the speech tokens, the tokens generated before the
   first chunk (the tokens StreamObserver.on_tokens counted before the first on_chunk) and the pieces rendered.
2. `--streams` unseeded streams of TEXT give the request's wall time and first-chunk latency (medians).
3. `--reps` balanced pairs (AB in even reps, BA in odd) of the request's draw-site work, seeded and not,
   the way the runtime does it (`seeding.seeded(seed, name)` / `seeded(None, name)`: the same call with
   or without a seed):
   - request: per sentence `seeded(...)` around every sampler call of the stream, with its history;
     per piece `seeded(...)` around that piece's source-module call;
   - first chunk: the same, for the sampler calls before the first chunk and the first piece.
   Per pair the difference seeded - unseeded in ms: Hodges-Lehmann estimate with the Wilcoxon
   signed-rank 95 % interval (seed_cost.py's), and that as a share of the median request (first chunk).

Raw samples go to `<out>/<name>.json` (default benchmarks/results/seed_cost/sites-<device>.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_cost import SEED, TEXT, load, run_once, walsh_interval  # noqa: E402

PARTS = ("request", "first_chunk")


class Capture:
    """The inputs of one stream's draw sites, kept by hooks on the loaded modules (removed by `close`)."""

    def __init__(self, rt: Any) -> None:
        import torch

        self.sources: list[tuple[Any, ...]] = []
        self.scores: list[Any] = []
        self.tokens = 0
        self.generated_at_first_chunk: int | None = None

        def keep_source(module: Any, args: tuple[Any, ...]) -> None:
            self.sources.append(tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args))

        def keep_scores(module: Any, args: Any, output: Any) -> None:
            self.scores.append(output.detach()[0].float().log_softmax(dim=-1).to(output.dtype))

        self._hooks = [rt.hift.m_source.register_forward_pre_hook(keep_source),
                       rt.llm.llm_decoder.register_forward_hook(keep_scores)]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def capture(rt: Any, voice: dict[str, Any]) -> tuple[Capture, list[int]]:
    from cosyvoice_runtime import StreamObserver

    cap = Capture(rt)

    class Counter(StreamObserver):
        def on_tokens(self, n_new: int, total: int) -> None:
            cap.tokens = total

        def on_chunk(self, chunk: Any) -> None:
            if cap.generated_at_first_chunk is None:
                cap.generated_at_first_chunk = cap.tokens

        def on_end(self, stats: Any, error: BaseException | None) -> None:
            tokens.extend(int(t) for t in stats.speech_tokens)

    tokens: list[int] = []
    try:
        for _ in rt.stream(TEXT, seed=SEED, observer=Counter(), **voice):
            pass
    finally:
        cap.close()
    return cap, tokens


def draw_work(rt: Any, cap: Capture, tokens: list[int], seed: int | None, *, first_chunk: bool) -> float:
    """Seconds of the request's draw-site work (or the part before its first chunk), with or without a seed."""
    import torch

    from cosyvoice_runtime.seeding import seeded

    steps = len(cap.scores) if not first_chunk else min(len(cap.scores), cap.generated_at_first_chunk or 0)
    pieces = cap.sources if not first_chunk else cap.sources[:1]
    top_k = rt.sampling_top_k or 25
    t0 = time.perf_counter()
    with torch.inference_mode():
        with seeded(seed, "llm"):
            for i in range(steps):
                rt.llm.sampling(cap.scores[i], tokens[:i], top_k)
        for k, args in enumerate(pieces):
            with seeded(seed, f"hift-{k}"):
                rt.hift.m_source(*args)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded tiny v2 model)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--reps", type=int, default=400, help="pairs of the draw-site work (default 400)")
    ap.add_argument("--streams", type=int, default=12,
                    help="unseeded streams timed for the request's wall time (default 12)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_cost"),
                    help="directory of the raw samples (default benchmarks/results/seed_cost)")
    ap.add_argument("--name", default=None, help="file name of the raw samples, without .json (default sites-<device>)")
    args = ap.parse_args(argv)
    for flag, value in (("--reps", args.reps), ("--streams", args.streams)):
        if value < 1:
            ap.error(f"{flag}={value}: expected at least 1")

    import torch

    model, rt, voice = load(args.model, args.device)
    run_once(rt, voice, None)   # warm-up
    cap, tokens = capture(rt, voice)
    streams = [run_once(rt, voice, None) for _ in range(args.streams)]
    wall = {"request": statistics.median(s["wall_s"] for s in streams),
            "first_chunk": statistics.median(s["first_chunk_s"] for s in streams)}
    for part in PARTS:   # warm-up of the timed work
        for seed in (SEED, None):
            draw_work(rt, cap, tokens, seed, first_chunk=part == "first_chunk")
    pairs: dict[str, list[dict[str, float]]] = {part: [] for part in PARTS}
    for i in range(args.reps):
        for part in PARTS:
            order = (SEED, None) if i % 2 == 0 else (None, SEED)
            done = {seed: draw_work(rt, cap, tokens, seed, first_chunk=part == "first_chunk") for seed in order}
            pairs[part].append({"seeded": done[SEED], "unseeded": done[None]})
    summary: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        diffs = [p["seeded"] - p["unseeded"] for p in pairs[part]]
        est, lo, hi = walsh_interval(diffs)
        summary[part] = {"n": len(diffs), "extra_ms": est * 1000,
                         "ci95_ms": [None if lo is None else lo * 1000, None if hi is None else hi * 1000],
                         "unseeded_work_ms": statistics.median(p["unseeded"] for p in pairs[part]) * 1000,
                         "request_ms": wall[part] * 1000,
                         "share": est / wall[part],
                         "share_ci95": [None if lo is None else lo / wall[part],
                                        None if hi is None else hi / wall[part]]}
    result = {"command": " ".join(["benchmarks/seed_sites.py", *(argv if argv is not None else sys.argv[1:])]),
              "model": str(model), "version": rt.version, "device": str(rt.device), "text": TEXT, "seed": SEED,
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "sampler_calls": len(cap.scores), "sampler_calls_before_first_chunk": cap.generated_at_first_chunk,
              "pieces": len(cap.sources), "streams": streams, "pairs": pairs, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name or 'sites-' + rt.device.type}.json"
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"model {model} (v{rt.version}), device {rt.device}; {len(cap.scores)} sampler calls "
          f"({cap.generated_at_first_chunk} before the first chunk), {len(cap.sources)} vocoder pieces; "
          f"{args.reps} balanced pairs; Hodges-Lehmann with Wilcoxon signed-rank 95 % CI")
    print(table(result))
    print(f"raw samples: {path}")
    return 0


def table(result: dict[str, Any]) -> str:
    def ms(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.3f} ms"

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x * 100:+.2f} %"

    rows = ["| part | pairs | draw-site work, unseeded | seed adds [95 % CI] | median unseeded request "
            "| share [95 % CI] |",
            "|---|---|---|---|---|---|"]
    for part, s in result["summary"].items():
        lo, hi = s["ci95_ms"]
        slo, shi = s["share_ci95"]
        rows.append(f"| {'whole request' if part == 'request' else 'first chunk'} | {s['n']} | "
                    f"{s['unseeded_work_ms']:.2f} ms | {ms(s['extra_ms'])} [{ms(lo)}, {ms(hi)}] | "
                    f"{s['request_ms']:.0f} ms | {pct(s['share'])} [{pct(slo)}, {pct(shi)}] |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
