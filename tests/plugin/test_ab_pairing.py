"""A/B mode's pairs (issue #17): in an RTF test every measured `cosy_tts` call also runs on the base
side, back to back, with the same text, keyword arguments and seed; each round gives the test one
`PairSample`, rounds go on until the paired verdict's look, and the two sides' outputs are compared.
The inner session is tests/plugin/examples/ab_pairing (a base engine that writes down its calls)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_cosyvoice.judging.checks import Recording
from pytest_cosyvoice.judging.measurements import NOT_REPRODUCIBLE, SEEDED_APART, PairOutputs, PairSample
from pytest_cosyvoice.recording.pairing import compare_outputs, draw_order
from pytest_cosyvoice.tracking import paired

MAX_PAIRS = 8   # a small cap: looks at 7 and 8 pairs (the screen's 0.02 over 2 looks)
RULE = paired.Rule(max_pairs=MAX_PAIRS, confirm_pairs=MAX_PAIRS)
STREAMED = "test_ab.py::test_streamed"
SYNTHESIZED = "test_ab.py::test_synthesized"


def run_inner(pytester: pytest.Pytester, model: Path, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.copy_example("ab_pairing")
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={model}", "--cosy-device=cpu",
                                "--cosy-no-report", "-o", "cosy_allowed_warnings=autocast\n__array_wrap__", *args)
    return result, json.loads((pytester.path / "figures.json").read_text())


def test_a_b_session_pairs_every_round_until_a_look(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    assert RULE.screen_looks == (7, MAX_PAIRS) and RULE.confirm_looks == (MAX_PAIRS,)
    result, out = run_inner(pytester, warm_tiny, "--cosy-base-engine=ab_base:build",
                            f"--cosy-ab-max-pairs={MAX_PAIRS}", f"--cosy-ab-confirm-pairs={MAX_PAIRS}")
    result.assert_outcomes(passed=2, failed=1)
    figures = out["figures"]
    orders = []
    for nodeid in (STREAMED, SYNTHESIZED):
        pairs = [PairSample.from_json(p) for p in figures[nodeid]["pairs"]]
        # One pair per round from round 1 (the main pass), until the verdict wants no more.
        assert [p.round for p in pairs] == list(range(1, len(pairs) + 1)), figures[nodeid]
        verdict = paired.judge_pairs(nodeid, [(p.head_rtf, p.base_rtf) for p in pairs], [p.order for p in pairs],
                                     rule=RULE)
        assert paired.pairs_wanted(verdict) == 0 and len(pairs) in (7, 8, 7 + 8, 8 + 8)
        # Balanced blocks: rounds 1-2, 3-4, ... are one AB and one BA.
        assert all({pairs[i].order, pairs[i + 1].order} == {"AB", "BA"} for i in range(0, len(pairs) - 1, 2))
        assert all(p.head_tokens and p.base_tokens and p.head_audio_s and p.base_audio_s for p in pairs)
        assert all(p.head_rtf > 0 and p.base_rtf > 0 for p in pairs)
        orders += [p.order for p in pairs]
        assert not [n for n in figures[nodeid]["round_notes"] if "A/B" in n]
    assert set(orders) == {"AB", "BA"}

    streamed = [PairSample.from_json(p) for p in figures[STREAMED]["pairs"]]
    synthesized = [PairSample.from_json(p) for p in figures[SYNTHESIZED]["pairs"]]
    assert all(p.head_first_chunk_ms and p.base_first_chunk_ms for p in streamed)
    assert all(p.head_first_chunk_ms is None and p.base_first_chunk_ms is None for p in synthesized)
    # Both sides take seed= (the Runtime, and ab_base as it does): each gets the call's seed per request,
    # so the stream repeats bit for bit too, not only the non-streamed path.
    assert {p.outputs for p in synthesized} == {p.outputs for p in streamed} == {PairOutputs("identical")}

    # The base ran what the head ran: the same text and keywords, its own warm-up first in each round.
    calls = out["base_calls"]
    stream_calls = [c for c in calls if c["kind"] == "stream"]
    rounds = {nodeid: len(figures[nodeid]["pairs"]) for nodeid in (STREAMED, SYNTHESIZED)}
    assert len(stream_calls) == 2 * rounds[STREAMED]    # one warm-up and one measured call a round
    # The measured calls got the pair's seed as seed= (one per round); the warm-ups none.
    seeds = [c["seed"] for c in calls if c["seed"] is not None]
    assert len(seeds) == sum(rounds.values()) and all(isinstance(s, int) for s in seeds)
    assert len(set(seeds)) == len(seeds)   # fixed by test, round and call: no two alike
    assert {c["text"] for c in stream_calls} == {"Hello there."}
    assert all(set(c["kwargs"]) == {"speaker"} for c in stream_calls)
    synth = [c for c in calls if c["kind"] == "synthesize"]
    assert len(synth) == 2 * rounds[SYNTHESIZED]
    assert {c["text"] for c in synth} == {"Good morning."}
    assert all(set(c["kwargs"]) == {"speaker", "speed"} and c["kwargs"]["speed"] == 1.0 for c in synth)
    assert len({c["kwargs"]["speaker"] for c in calls}) == 1   # the test's speaker (the first one)
    assert out["ab_base"].startswith("engine ab_base:build") and "python" in out["ab_versions"]

    # A base side that cannot serve fails the test with its message, and the test gets no pair.
    result.stdout.fnmatch_lines(["*test_zz_dead_base*", "*the base worker exited with status 1; its last stderr "
                                 "lines: boom*"])
    dead = figures["test_ab.py::test_zz_dead_base"]
    assert "pairs" not in dead and dead["round_notes"] == [
        "round 1: no A/B pair: base synthesize 0: the base worker exited with status 1; its last stderr lines: boom"]


def test_without_a_base_nothing_is_paired(pytester: pytest.Pytester, warm_tiny: Path) -> None:
    result, out = run_inner(pytester, warm_tiny, "-k", "not dead")
    result.assert_outcomes(passed=2)
    assert out["base_calls"] == [] and out["ab_base"] == "" and out["ab_versions"] == {}
    for fig in out["figures"].values():
        assert "pairs" not in fig and not fig["round_notes"]
    assert len(out["figures"][STREAMED]["rtf"]) == 2   # its repeat=2 rounds, no more


def _rec(kind: str, tokens: list[int] | None, audio: list[float], rate: int = 10, seed: int | None = None,
         ) -> Recording:
    return Recording(label=f"{kind} 0", kind=kind, sample_rate=rate, chunks=[np.array(audio, np.float32)],
                     speech_tokens=tokens, seed=seed)


@pytest.mark.parametrize("head, base, text, finding", [
    (_rec("synthesize", [1, 2, 3], [0.1] * 10), _rec("synthesize", [1, 2, 3], [0.1] * 10), "identical", False),
    (_rec("synthesize", [1, 2, 3, 4], [0.1] * 10), _rec("synthesize", [1, 9, 3, 4], [0.1] * 10),
     "differs: tokens diverge at 1 of 4", True),
    (_rec("synthesize", [1, 2, 3], [0.1] * 12), _rec("synthesize", [1, 2], [0.1] * 10),
     "differs: 3 vs 2 tokens, audio 1.20 s vs 1.00 s", True),
    (_rec("synthesize", [1, 2, 3], [0.1] * 10), _rec("synthesize", [5, 2], [0.1] * 10),
     "differs: tokens diverge at 0 (3 vs 2 tokens)", True),
    (_rec("synthesize", None, [0.1] * 10), _rec("synthesize", None, [0.2] * 10), "differs: audio samples differ",
     True),
    # Seeded through the global generator, a stream cannot repeat: expected, and said why.
    (_rec("stream", [1, 2], [0.1] * 10), _rec("stream", [1, 3], [0.1] * 10),
     f"differs: tokens diverge at 1 of 2 ({NOT_REPRODUCIBLE})", False),
    # Both sides took the seed per request (seed=): a stream must repeat, so a difference is a finding.
    (_rec("stream", [1, 2], [0.1] * 10, seed=5), _rec("stream", [1, 3], [0.1] * 10, seed=5),
     "differs: tokens diverge at 1 of 2", True),
    # One side per request, the other through the global generator: different generators, expected.
    (_rec("synthesize", [1, 2], [0.1] * 10, seed=5), _rec("synthesize", [1, 3], [0.1] * 10),
     f"differs: tokens diverge at 1 of 2 ({SEEDED_APART})", False),
])
def test_the_output_comparison_says_what_differs(head: Recording, base: Recording, text: str, finding: bool) -> None:
    outputs = compare_outputs(head, base)
    # Typed: the status and whether it is a finding are fields, the words only say it.
    status, _, detail = text.partition(": ")
    assert (outputs.status, outputs.detail, outputs.finding) == (status, detail, finding)
    assert str(outputs) == text
    sample = PairSample(round=1, order="AB", head_rtf=1.0, base_rtf=1.0, outputs=outputs)
    assert PairSample.from_json(sample.to_json()) == sample


@pytest.mark.parametrize("old, status, finding", [
    ("identical", "identical", False), ("", "not compared", False),
    ("differs: tokens diverge at 1 of 4", "differs", True),
    (f"differs: tokens diverge at 1 of 2 ({NOT_REPRODUCIBLE})", "differs", False),
    (f"differs: s0: tokens diverge at 1 of 2 ({SEEDED_APART})", "differs", False),
])
def test_a_pair_stored_with_its_outputs_as_one_text_still_loads(old: str, status: str, finding: bool) -> None:
    sample = PairSample.from_json({"round": 1, "order": "AB", "head_rtf": 1.0, "base_rtf": 1.0, "outputs": old})
    assert (sample.outputs.status, sample.outputs.finding) == (status, finding)
    assert str(sample.outputs) == (old or "not compared")


def test_the_order_comes_in_balanced_blocks_drawn_per_test_and_repeats_with_the_seed() -> None:
    # Rounds count from 0 (the main pass), as the session passes them.
    draws = [draw_order(7, "t.py::a", k) for k in range(40)]
    assert all({draws[i], draws[i + 1]} == {"AB", "BA"} for i in range(0, 40, 2))
    assert {draws[i] for i in range(0, 40, 2)} == {"AB", "BA"}      # which comes first is drawn
    assert draws == [draw_order(7, "t.py::a", k) for k in range(40)]
    assert draws != [draw_order(7, "t.py::b", k) for k in range(40)]


PASS_THROUGH = '''
class Wrapper:
    """A pass-through serving wrapper: everything it is called with goes to the Runtime, every other
    attribute is the Runtime's (its declared abilities included)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def stream(self, *a, **k):
        return self.runtime.stream(*a, **k)

    def synthesize(self, *a, **k):
        return self.runtime.synthesize(*a, **k)

    def __getattr__(self, name):
        return getattr(self.runtime, name)


def build(runtime):
    return Wrapper(runtime)
'''

WRAPPED = '''
import pytest


@pytest.mark.rtf(max=1000)
def test_streamed(cosy_tts):
    list(cosy_tts.stream("Hello there.", speaker=cosy_tts.speakers[0]))
    with open("seeds.txt", "a") as fh:
        fh.writelines(f"{r.seed}\\n" for r in cosy_tts.recordings)
    # Driven as the Runtime is: seeded per request, tokens heard from its observer (nothing patched).
    assert cosy_tts.attribution.adapter is None
'''

FIGURES = '''
import json

from pytest_cosyvoice.plugin import get_session


def pytest_sessionfinish(session):
    figures, _ = get_session(session.config).results()
    (session.config.rootpath / "figures.json").write_text(json.dumps({f.nodeid: f.to_json() for f in figures}))
'''


def test_a_pass_through_wrapper_is_paired_with_the_runtime_it_wraps_alike(
        pytester: pytest.Pytester, warm_tiny: Path, tmp_path: Path) -> None:
    # The wrapper declares nothing itself; its `__getattr__` hands on the Runtime's `cosy_abilities`,
    # so it gets seed= and observer= as the base (the Runtime over a copy of the model) does: the two
    # sides sample the same tokens and render the same audio in every pair. (It used to run unseeded and
    # counted by the foreign adapter, the base seeded per request: every pair "not comparable", and a
    # verdict given anyway.)
    import shutil

    copy = tmp_path / "tiny-copy"
    shutil.copytree(warm_tiny, copy)
    pytester.makepyfile(passthrough=PASS_THROUGH)
    pytester.makeconftest(FIGURES)
    pytester.makepyfile(test_wrapped=WRAPPED)
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-device=cpu",
                                "--cosy-no-report", "-o", "cosy_allowed_warnings=autocast\n__array_wrap__",
                                "--cosy-engine=passthrough:build", "--cosy-base-engine=fixed",
                                f"--cosy-base-model={copy}", f"--cosy-ab-max-pairs={MAX_PAIRS}",
                                f"--cosy-ab-confirm-pairs={MAX_PAIRS}")
    result.assert_outcomes(passed=1)
    fig = json.loads((pytester.path / "figures.json").read_text())["test_wrapped.py::test_streamed"]
    pairs = [PairSample.from_json(p) for p in fig["pairs"]]
    assert len(pairs) in RULE.screen_looks + (7 + MAX_PAIRS, 2 * MAX_PAIRS) and not fig["round_notes"], fig
    assert {p.outputs for p in pairs} == {PairOutputs("identical")}
    seeds = (pytester.path / "seeds.txt").read_text().split()
    assert len(seeds) == len(pairs) and all(s.isdigit() for s in seeds), seeds
    # The model reference ran beside every calibration (it failed under the foreign adapter: bug 3).
    [line] = [line for line in result.stdout.lines if line.startswith("machine: ")]
    assert "model reference error" not in line and "model reference: " in line, line
