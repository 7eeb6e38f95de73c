"""Side-by-side: our runtime vs the installed upstream orchestration class, same process, same
components, same forced token sequence, alternating, several rounds.

    .venv/bin/python benchmarks/side_by_side.py [--model DIR] [--rounds 5] [--tokens 200] [--device cpu]

Prints per engine and call position (1st/2nd call of a round) first-chunk latency, chunk times, total
wall time, RTF and the worst playback stall with no prebuffer, then ours/upstream ratios with spread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_once(engine: Any, tokens: list[int], speaker: str | None, prompt: dict[str, Any]) -> dict[str, Any]:
    from pytest_cosyvoice.judging.playback import simulate_playback

    kw = dict(speaker=speaker) if speaker else dict(prompt)
    t0 = time.perf_counter()
    arrivals, sizes, rate = [], [], 0
    for c in engine.stream("x", **kw):
        arrivals.append(time.perf_counter() - t0)
        sizes.append(int(c.audio.size))
        rate = c.sample_rate
    wall = time.perf_counter() - t0
    audio_s = sum(sizes) / rate
    pb = simulate_playback(sizes, arrivals, rate, 0.0)
    return {"first_chunk_s": arrivals[0],
            "chunk_s": [b - a for a, b in zip([0.0, *arrivals[:-1]], arrivals, strict=True)],
            "wall_s": wall, "rtf": wall / audio_s, "worst_stall_s": pb.worst_stall_s, "chunks": len(sizes),
            "audio_s": audio_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded tiny v2 model)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200, help="forced speech tokens per request")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompt-wav", default=None, help="zero-shot prompt (default: the plugin's bundled prompt)")
    ap.add_argument("--json", default=None, help="write the raw measurements here")
    args = ap.parse_args(argv)

    import torch

    import cosyvoice_runtime
    from cosyvoice_runtime.upstream import UpstreamEngine
    from pytest_cosyvoice.faults import forced_llm, forced_tokens

    model = args.model
    if model is None:
        from cosyvoice_runtime.tiny import default_model_dir

        model = default_model_dir(2)
    rt = cosyvoice_runtime.load(model, device=args.device)
    up = UpstreamEngine(rt)
    tokens = forced_tokens(rt.version, args.tokens, seed=0)
    rt.llm.inference = forced_llm(tokens)  # both engines share the LLM module
    speaker = rt.speakers[0] if rt.speakers and not args.prompt_wav else None
    prompt = {}
    if args.prompt_wav:
        prompt = {"prompt_wav": args.prompt_wav, "prompt_text": "Prompt."}
    results: dict[str, list[dict[str, Any]]] = {"ours/1st": [], "ours/2nd": [], "upstream/1st": [], "upstream/2nd": []}
    with torch.inference_mode():
        run_once(rt, tokens, speaker, prompt)  # warm-up, untimed
        run_once(up, tokens, speaker, prompt)
        for r in range(args.rounds):
            order = [("ours", rt), ("upstream", up)] if r % 2 == 0 else [("upstream", up), ("ours", rt)]
            for name, eng in order:
                for pos in ("1st", "2nd"):
                    results[f"{name}/{pos}"].append(run_once(eng, tokens, speaker, prompt))

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    print(f"model {model} (v{rt.version}), device {rt.device}, {args.tokens} forced tokens, {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'engine/call':<14} {'first chunk ms':>15} {'wall s':>8} {'RTF':>7} {'worst stall ms':>15} "
          f"{'chunks':>6}  chunk times ms (median)")
    for key, rows in results.items():
        n = max(len(r["chunk_s"]) for r in rows)
        ct = [med([r["chunk_s"][i] for r in rows if len(r["chunk_s"]) > i]) * 1000 for i in range(n)]
        print(f"{key:<14} {med([r['first_chunk_s'] for r in rows]) * 1000:>15.0f} "
              f"{med([r['wall_s'] for r in rows]):>8.2f} "
              f"{med([r['rtf'] for r in rows]):>7.3f} {med([r['worst_stall_s'] for r in rows]) * 1000:>15.0f} "
              f"{rows[0]['chunks']:>6}  {' '.join(f'{x:.0f}' for x in ct)}")
    print("ratio ours/upstream (median [min-max] over rounds):")
    for pos in ("1st", "2nd"):
        for metric in ("first_chunk_s", "wall_s", "rtf"):
            ratios = [a[metric] / b[metric] for a, b in zip(results[f"ours/{pos}"], results[f"upstream/{pos}"],
                                                                  strict=True)]
            print(f"  {pos} call {metric:<14} {med(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
