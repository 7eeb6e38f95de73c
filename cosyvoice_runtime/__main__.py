"""``python -m cosyvoice_runtime synth --model DIR --text ... --out out.wav``

Every argument is checked before the model is loaded or any audio synthesised (exit code 2 with one
``error:`` line); a failure while writing the result exits 1. No traceback for bad input.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from .errors import CosyVoiceError, InvalidInput
from .limits import DEFAULT_STALL_TIMEOUT_S, MAX_TEXT_CHARS, MAX_TIMEOUT_S, check_seed, check_timeout


def _seconds(text: str) -> float:
    """argparse type of --stall-timeout: the runtime's own rule, checked before the model loads."""
    try:
        return check_timeout("seconds", float(text))
    except (ValueError, InvalidInput):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds, finite and at most "
                                         f"{MAX_TIMEOUT_S:g}") from None


def _speed(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = float("nan")
    if not 0.5 <= x <= 2.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 0.5 to 2.0")
    return x


def _seed(text: str) -> int:
    """argparse type of --seed: the runtime's own rule, checked before the model loads."""
    try:
        seed = check_seed(int(text))
    except (ValueError, InvalidInput):
        seed = None
    if seed is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 0 to 2**63-1")
    return seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cosyvoice_runtime",
                                description="CosyVoice runtime with streaming fixes")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="synthesise text to a wav file; prints first-chunk latency and RTF")
    s.add_argument("--model", default=None,
                   help="model directory (default: the embedded tiny v2 model, built on first use)")
    s.add_argument("--text", required=True, help=f"text to speak (at most {MAX_TEXT_CHARS} characters)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--speaker", help="speaker id from spk2info.pt (sft mode)")
    g.add_argument("--prompt-wav", help="prompt recording (zero-shot with --prompt-text, cross-lingual without)")
    s.add_argument("--prompt-text", help="transcript of --prompt-wav")
    s.add_argument("--instruct", help="instruction text (v1: with --speaker; v2/v3: with --prompt-wav)")
    s.add_argument("--stream", action="store_true", help="stream chunk by chunk (default: one non-streamed synthesis)")
    s.add_argument("--speed", type=_speed, default=1.0, help="speed factor 0.5-2.0 (non-streamed only)")
    s.add_argument("--seed", type=_seed, default=None, metavar="N",
                   help="seed of this request's random draws: the same text, voice and seed give the same audio "
                        "(default: none, draws from torch's global generator)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--fp16", action="store_true")
    s.add_argument("--stall-timeout", type=_seconds, default=DEFAULT_STALL_TIMEOUT_S, metavar="SECONDS")
    s.add_argument("--out", required=True, help="output audio path, .wav/.flac/.ogg (must not exist unless --force)")
    s.add_argument("--force", action="store_true", help="overwrite --out")
    s.add_argument("-v", "--verbose", action="store_true", help="log every chunk")
    return p


def check_out(out: str, force: bool) -> str | None:
    """Why ``out`` cannot receive the result, or None; checked before any work so no audio is lost."""
    import soundfile as sf

    p = Path(out)
    if p.is_dir():
        return f"--out {out!r} is a directory; expected a file path such as {str(p / 'out.wav')!r}"
    parent = p.parent
    if not parent.exists():
        return f"--out {out!r}: the folder {str(parent)!r} does not exist; create it first"
    if not parent.is_dir():
        return f"--out {out!r}: {str(parent)!r} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out!r}: the folder {str(parent)!r} is not writable"
    fmt = p.suffix[1:].upper()
    if fmt not in sf.available_formats() or sf.default_subtype(fmt) is None:
        return f"--out {out!r}: cannot write {p.suffix or 'a file without extension'}; expected .wav, .flac or .ogg"
    if p.exists() and not force:
        return f"--out {out!r} exists; pass --force to overwrite it"
    return None


def check_args(args: argparse.Namespace) -> str | None:
    if args.stream and args.speed != 1.0:
        return f"--speed {args.speed:g} with --stream: speed change is only supported without --stream"
    if len(args.text) > MAX_TEXT_CHARS:
        return (f"--text has {len(args.text)} characters; at most {MAX_TEXT_CHARS} per request: split it into "
                "several runs")
    return check_out(args.out, args.force)


def write_audio(path: str, audio: object, rate: int) -> None:
    """Writes through a temporary file in the same folder, so a failed write leaves ``path`` untouched."""
    import soundfile as sf

    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.part{p.suffix}")
    try:
        sf.write(str(tmp), audio, rate)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def synth(args: argparse.Namespace) -> int:
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import numpy as np

    from .runtime import load  # torch and the model only once the arguments are known to be usable
    model = args.model
    if model is None:
        from .tiny import default_model_dir

        model = default_model_dir(2)
    rt = load(model, device=args.device, fp16=args.fp16, stall_timeout_s=args.stall_timeout)
    kw = dict(speaker=args.speaker, prompt_wav=args.prompt_wav, prompt_text=args.prompt_text, instruct=args.instruct)
    if args.speaker is None and args.prompt_wav is None:
        if not rt.speakers:
            where = "has no spk2info.pt" if rt.spk2info_file is None else "lists no speaker in spk2info.pt"
            print(f"error: the model {str(rt.model_dir)!r} {where}, so there is no default speaker: pass "
                  "--prompt-wav FILE (cross-lingual; add --prompt-text for zero-shot)", file=sys.stderr)
            return 2
        if args.instruct is None:
            kw["speaker"] = rt.speakers[0]
    t0 = time.perf_counter()
    if args.stream:
        parts, first = [], None
        for chunk in rt.stream(args.text, seed=args.seed, **kw):
            first = first if first is not None else time.perf_counter() - t0
            parts.append(chunk.audio)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    else:
        syn = rt.synthesize(args.text, speed=args.speed, seed=args.seed, **kw)
        audio, first = syn.audio, syn.stats.first_chunk_s
    wall = time.perf_counter() - t0
    try:
        write_audio(args.out, audio, rt.sample_rate)
    except Exception as e:  # noqa: BLE001 - OSError, soundfile's LibsndfileError: the disk, not the input
        print(f"error: could not write --out {args.out!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
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
