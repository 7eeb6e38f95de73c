"""``python -m cosyvoice_runtime.tiny OUT --version 2 [--size tiny|mid|full] [--seed 0]``."""
from __future__ import annotations

import argparse
import sys
import time

from .builder import build
from .frontends import MissingExtra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosyvoice_runtime.tiny",
                                 description="Build a random-weight CosyVoice model directory.")
    ap.add_argument("out", help="directory to create (must not exist or be empty)")
    ap.add_argument("--version", type=int, choices=(1, 2), default=2)
    ap.add_argument("--size", choices=("tiny", "mid", "full"), default="tiny",
                    help="mid (v2 only): between tiny and full, for timings; full (v2 only): the "
                         "CosyVoice2-0.5B shapes, about 1 GB with fp16-stored weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32-weights", action="store_true", help="store weights as fp32 (default: fp16)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = build(args.out, version=args.version, size=args.size, seed=args.seed,
                    fp16_weights=not args.fp32_weights)
    except (FileExistsError, ValueError, MissingExtra) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{out}: CosyVoice v{args.version} {args.size}, {mb:.1f} MB, built in {time.perf_counter() - t0:.1f} s")
    return 0
