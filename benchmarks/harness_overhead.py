"""The plugin's own cost: the same streams through `cosy_tts` with every check of
`@pytest.mark.streaming` + `@pytest.mark.no_deprecations`, vs the runtime called directly.

    .venv/bin/python benchmarks/harness_overhead.py [--model DIR] [--rounds 8] [--tokens 200] [--device cpu]

One pytest session (in this process) runs, in ABBA order, `test_stream[direct-i]` (iterates
`cosy_model.stream`) and `test_stream[harness-i]` (iterates `cosy_tts.stream` under the markers) on the
same forced token sequence.
Measured per test: the call phase (which for the harness includes recording, the watchdog reader thread
and evaluating the checks) and setup + teardown (the `cosy_tts` fixture). Prints the medians, the
overhead in ms and as a share of the direct wall time, with the spread over rounds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFTEST = '''
import json
import pytest
from pytest_cosyvoice.faults import forced_llm, forced_tokens

PHASES = {}


@pytest.fixture
def forced(cosy_model):
    cosy_model.llm.inference = forced_llm(forced_tokens(cosy_model.version, NTOK, seed=0))
    yield
    cosy_model.llm.__dict__.pop("inference", None)


@pytest.fixture
def voice(cosy_model, cosy_prompt):
    if cosy_model.speakers:
        return {"speaker": cosy_model.speakers[0]}
    return {"prompt_wav": cosy_prompt.wav, "prompt_text": cosy_prompt.text}


def pytest_runtest_logreport(report):
    PHASES.setdefault(report.nodeid, {})[report.when] = report.duration


def pytest_sessionfinish(session):
    (session.config.rootpath / "phases.json").write_text(json.dumps(PHASES))
'''

TESTS = '''
import pytest

# Every check runs; the gap thresholds are wide because this measures cost, not the stream.
HARNESS = [pytest.mark.streaming(prebuffer_ms=60000, max_gap_ms=60000), pytest.mark.no_deprecations()]
# ABBA order (direct first in even rounds, harness first in odd ones): a machine that speeds up or
# slows down within a pair (CPU boost, other load) hits both sides alike.
CASES = []
for i in range(NROUNDS):
    pair = ["direct", "harness"] if i % 2 == 0 else ["harness", "direct"]
    CASES += [pytest.param(how, i, id=f"{how}-{i}", marks=HARNESS if how == "harness" else []) for how in pair]


@pytest.mark.parametrize("how,i", CASES)
def test_stream(how, i, cosy_model, forced, voice, request):
    if how == "direct":
        chunks = list(cosy_model.stream("x", **voice))
    else:
        chunks = list(request.getfixturevalue("cosy_tts").stream("x", **voice))
    assert chunks
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the embedded tiny v2 model)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the raw phases here")
    args = ap.parse_args()

    import pytest

    from cosyvoice_runtime.tiny import default_model_dir

    model = Path(args.model) if args.model else default_model_dir(2)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "conftest.py").write_text(CONFTEST.replace("NTOK", str(args.tokens)))
        # Interleave direct/harness per round so drift of the machine hits both alike.
        (d / "test_overhead.py").write_text(TESTS.replace("NROUNDS", str(args.rounds)))
        (d / "pytest.ini").write_text("[pytest]\n")
        rc = pytest.main([str(d), "-q", "-p", "no:cacheprovider", f"--rootdir={d}", "--cosy-no-report",
                          f"--cosy-model={model}", f"--cosy-device={args.device}", "-p", "no:randomly",
                          "--cosy-baseline-dir", str(d / "baselines")])
        phases = json.loads((d / "phases.json").read_text())
    if rc != 0:
        print(f"the inner session failed (exit {rc})", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(phases, indent=1))

    def per(how: str, phase: str) -> list[float]:
        # Round 0 of each is a warm-up (first stream after load, first reader thread).
        return [v[phase] for k, v in phases.items() if f"[{how}-" in k and not k.endswith("-0]")]

    direct = [c for c in per("direct", "call")]
    harness = [c for c in per("harness", "call")]
    fix_d = [s + t for s, t in zip(per("direct", "setup"), per("direct", "teardown"), strict=True)]
    fix_h = [s + t for s, t in zip(per("harness", "setup"), per("harness", "teardown"), strict=True)]
    md, mh = statistics.median(direct), statistics.median(harness)
    over = (mh + statistics.median(fix_h)) - (md + statistics.median(fix_d))
    diffs = sorted(h - d for h, d in zip(harness, direct, strict=True))
    print()
    print(f"model {model}, device {args.device}, {args.tokens} forced tokens, {len(direct)} measured rounds each")
    print("| | direct | through cosy_tts + checks |")
    print("|---|---|---|")
    print(f"| call phase, median (s) | {md:.3f} | {mh:.3f} |")
    print(f"| call phase, min-max (s) | {min(direct):.3f}-{max(direct):.3f} | {min(harness):.3f}-{max(harness):.3f} |")
    print(f"| setup + teardown, median (ms) | {statistics.median(fix_d) * 1000:.1f} | "
          f"{statistics.median(fix_h) * 1000:.1f} |")
    print(f"overhead: {over * 1000:.1f} ms per stream = {over / md * 100:.2f}% of the direct wall time "
          f"(paired call-phase differences, ms: min {diffs[0] * 1000:.0f}, median "
          f"{statistics.median(diffs) * 1000:.0f}, max {diffs[-1] * 1000:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
