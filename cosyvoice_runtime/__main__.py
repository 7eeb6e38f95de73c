"""``python -m cosyvoice_runtime synth --model DIR --text ... --out out.wav``"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .errors import CosyVoiceError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cosyvoice_runtime", description="CosyVoice runtime with streaming fixes")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="synthesise text to a wav file; prints first-chunk latency and RTF")
    s.add_argument("--model", default=None, help="model directory (default: the embedded tiny v2 model, built on first use)")
    s.add_argument("--text", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--speaker", help="speaker id from spk2info.pt (sft mode)")
    g.add_argument("--prompt-wav", help="prompt recording (zero-shot with --prompt-text, cross-lingual without)")
    s.add_argument("--prompt-text", help="transcript of --prompt-wav")
    s.add_argument("--instruct", help="instruction text (v1: with --speaker; v2/v3: with --prompt-wav)")
    s.add_argument("--stream", action="store_true", help="stream chunk by chunk (default: one non-streamed synthesis)")
    s.add_argument("--speed", type=float, default=1.0, help="speed factor (non-streamed only)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--fp16", action="store_true")
    s.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECONDS")
    s.add_argument("--out", required=True, help="output wav path (must not exist unless --force)")
    s.add_argument("--force", action="store_true", help="overwrite --out")
    s.add_argument("-v", "--verbose", action="store_true", help="log every chunk")
    return p


def synth(args: argparse.Namespace) -> int:
    import os

    import numpy as np
    import soundfile as sf

    from .runtime import load

    if os.path.exists(args.out) and not args.force:
        print(f"error: --out {args.out!r} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    model = args.model
    if model is None:
        from .tiny import default_model_dir

        model = default_model_dir(2)
    rt = load(model, device=args.device, fp16=args.fp16, stall_timeout_s=args.stall_timeout)
    kw = dict(speaker=args.speaker, prompt_wav=args.prompt_wav, prompt_text=args.prompt_text, instruct=args.instruct)
    if args.speaker is None and args.prompt_wav is None and rt.speakers and args.instruct is None:
        kw["speaker"] = rt.speakers[0]
    t0 = time.perf_counter()
    if args.stream:
        parts, first = [], None
        for chunk in rt.stream(args.text, **kw):
            first = first if first is not None else time.perf_counter() - t0
            parts.append(chunk.audio)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    else:
        syn = rt.synthesize(args.text, speed=args.speed, **kw)
        audio, first = syn.audio, syn.stats.first_chunk_s
    wall = time.perf_counter() - t0
    sf.write(args.out, audio, rt.sample_rate)
    secs = len(audio) / rt.sample_rate
    print(f"wrote {args.out}: {secs:.2f} s audio at {rt.sample_rate} Hz")
    print(f"first chunk: {first * 1000:.0f} ms" if first is not None else "first chunk: -")
    print(f"RTF: {wall / secs:.3f}" if secs else "RTF: -")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return synth(args)
    except CosyVoiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
