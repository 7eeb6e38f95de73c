"""The quality gate end to end on the tiny v2 model (CPU fp32): goldens saved with --cosy-save-baseline,
a rerun judged identical, a defect injected at the vocoder caught by its named checks, bad golden files
and bad --cosy-asr/--cosy-sim paths stopped before any test (exit 4), misused marker arguments named.

Inner sessions run in-process (pytester.runpytest) on the examples in tests/plugin/examples/quality_gate.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_cosyvoice.recording.calls import quality_seed
from tests.fixtures import build_xvector_dir


@pytest.fixture(scope="session")
def warm_quality(warm_tiny: Path) -> Path:
    """The MOS scorer's packages imported before pytester's module snapshot (onnxruntime and librosa
    imported inside an inline session and dropped after it do not import cleanly twice)."""
    from pytest_cosyvoice.judging import scores

    scores.score_mos(__import__("numpy").zeros(16000, dtype="float32") + 0.01, 16000)
    return warm_tiny


def _run(pytester: pytest.Pytester, model: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={model}", "--cosy-device=cpu",
                              "--cosy-baseline-dir=goldens", "--cosy-report=report", *args)


def _quality(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "report" / "quality.json").read_text())
    return {nodeid.split("::")[1]: t for nodeid, t in data["tests"].items()}


def _statuses(test: dict[str, Any]) -> dict[str, str]:
    """check name -> worst status over the test's calls."""
    order = {"fail": 2, "pass": 1, "note": 0}
    out: dict[str, str] = {}
    for c in test["checks"]:
        if order[c["status"]] >= order.get(out.get(c["name"], "note"), 0):
            out[c["name"]] = c["status"]
    return out


def test_goldens_saved_then_identical_then_a_noisy_vocoder_fails(pytester: pytest.Pytester, warm_quality: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.copy_example("quality_gate")
    # No goldens yet: nothing to compare, nothing fails.
    first = _run(pytester, warm_quality)
    first.assert_outcomes(passed=3)
    assert all(c["status"] != "fail" for t in _quality(pytester).values() for c in t["checks"])
    assert any(c["why"] == "no golden" for c in _quality(pytester)["test_stream"]["checks"])
    # Issue 23: the line counts the uncalibrated scores and says nothing was compared, and how to start.
    first.stdout.fnmatch_lines(["quality: 3 tests, 0 failed, 3 uncalibrated, 3 without golden: nothing compared; "
                                "save goldens with --cosy-save-baseline (MOS/WER/SIM gate after 5 saving sessions)"])

    saved = _run(pytester, warm_quality, "--cosy-save-baseline")
    saved.assert_outcomes(passed=3)
    saved.stdout.fnmatch_lines(["*quality goldens saved: *(3 tests)*"])

    again = _run(pytester, warm_quality)
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["quality: 3 tests, 0 failed, 3 uncalibrated, 0 without golden; MOS/WER/SIM gate "
                                "after 4 more saving sessions (--cosy-save-baseline)"])
    tests = _quality(pytester)
    for name in ("test_stream", "test_synthesize"):
        statuses = _statuses(tests[name])
        assert statuses["tokens"] == statuses["token2wav"] == statuses["audio"] == "pass", tests[name]
        assert statuses["streamed_vs_offline"] == "pass", tests[name]
        snr = [c for c in tests[name]["checks"] if c["name"] == "token2wav"][0]
        assert snr["figure"] == "inf"     # seeded on CPU fp32: bit-identical to the golden
    # Each call's seed comes from the test's id and the call's label, unless the test gave one.
    seeds = {t: [c["seed"] for c in tests[t]["calls"]] for t in tests}
    assert seeds["test_stream"] == [quality_seed("test_voice.py::test_stream", "stream 0")]
    assert seeds["test_synthesize"] == [quality_seed("test_voice.py::test_synthesize", "synthesize 0")]
    assert seeds["test_own_seed_is_kept"] == [5]

    monkeypatch.setenv("QUALITY_DEFECT", "noise")
    noisy = _run(pytester, warm_quality)
    noisy.assert_outcomes(failed=3)
    noisy.stdout.fnmatch_lines_random(["*quality token2wav (stream 0): token->wav * dB SNR vs golden*",
                                       "*quality audio (synthesize 0): *"])
    tests = _quality(pytester)
    for name in ("test_stream", "test_synthesize"):
        statuses = _statuses(tests[name])
        assert statuses["tokens"] == "pass"         # the LLM is untouched: the same tokens
        assert statuses["token2wav"] == statuses["audio"] == "fail", tests[name]


def test_quality_seed_is_stable_and_per_call() -> None:
    a = quality_seed("suites/test_quality.py::test_x[sft]", "stream 0")
    assert a == quality_seed("suites/test_quality.py::test_x[sft]", "stream 0")
    assert a != quality_seed("suites/test_quality.py::test_x[sft]", "stream 1")
    assert a != quality_seed("suites/test_quality.py::test_x[zero_shot]", "stream 0")
    assert 0 <= a < 2**63


def test_a_truncated_golden_file_stops_the_session_and_is_left_alone(pytester: pytest.Pytester,
                                                                      warm_quality: Path) -> None:
    pytester.copy_example("quality_gate")
    _run(pytester, warm_quality, "--cosy-save-baseline", "-k", "test_stream").assert_outcomes(passed=1)
    npz = sorted((pytester.path / "goldens").rglob("*.npz"))
    assert npz
    data = npz[0].read_bytes()
    npz[0].write_bytes(data[: len(data) // 2])
    before = {p: p.read_bytes() for p in (pytester.path / "goldens").rglob("*") if p.is_file()}

    result = _run(pytester, warm_quality, "--cosy-save-baseline", "-k", "test_stream")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*quality goldens*{npz[0].name}*"])
    assert {p: p.read_bytes() for p in (pytester.path / "goldens").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(("option", "what"), [("--cosy-asr", "ASR model"), ("--cosy-sim", "")])
def test_an_asr_or_sim_path_that_is_not_a_model_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path,
                                                                  option: str, what: str) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    (tmp_path / "empty").mkdir()
    for value in (str(tmp_path / "missing"), str(tmp_path / "empty")):
        result = pytester.runpytest("-p", "no:cacheprovider", f"{option}={value}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{option}='{value}'*{what}*"])


@pytest.mark.parametrize(("args", "problem"), [
    ("tokens='same'", "tokens='same': expected one of 'identical', 'top_k', 'off'"),
    ("mos_slack=1.5", "mos_slack=1.5: expected a fraction in (0, 1]"),
    ("snr_db='high'", "snr_db='high': expected a number"),
    ("wer_slack=0.5", "wer_slack=0.5: expected a number >= 1"),
    ("min_clean_runs=0", "min_clean_runs=0: expected a whole number >= 1"),
    ("snr=40", "unexpected keyword argument 'snr'"),
])
def test_a_misused_quality_marker_names_the_value(pytester: pytest.Pytester, warm_tiny: Path, args: str,
                                                  problem: str) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.quality({args})\ndef test_q():\n    pass\n")
    # The model named: a quality session reads its goldens (keyed by the model) before any test.
    result = pytester.runpytest("-p", "no:cacheprovider", f"--cosy-model={warm_tiny}", "--cosy-baseline-dir=goldens")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*test_q*@pytest.mark.quality({args})*{problem}*valid keywords: snr_db, "
                                 "streamed_mel_db, tokens, mos_slack, wer_slack, sim_drop, min_clean_runs*"])


@pytest.fixture(scope="session")
def xvector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built (transformers imported) before pytester's module snapshot, which would drop it after the test."""
    pytest.importorskip("transformers")
    return build_xvector_dir(tmp_path_factory.mktemp("xvector"))


def test_asr_and_speaker_model_scores_reach_the_report(pytester: pytest.Pytester, tiny_v2_dir: Path,
                                                       xvector: Path) -> None:
    """--cosy-asr pocketsphinx and --cosy-sim with a tiny local x-vector model: each quality call is
    transcribed and scored, the session names the WER figures. A subprocess: transformers and
    pocketsphinx are imported by the inner session alone."""
    pytest.importorskip("pocketsphinx")
    pytester.copy_example("quality_gate")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--cosy-model={tiny_v2_dir}",
                                           "--cosy-device=cpu", "--cosy-baseline-dir=goldens", "--cosy-report=report",
                                           "--cosy-asr=pocketsphinx", f"--cosy-sim={xvector}", "-k", "test_stream")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*quality WER (--cosy-asr): mean * over 1 utterances, * above 50 %*"])
    test = _quality(pytester)["test_stream"]
    assert {"dnsmos", "plcmos", "wer", "sim", "sim_model"} <= set(test["scores"]), test["scores"]
    notes = {c["name"]: c["text"] for c in test["checks"] if c["call"] == ""}
    assert notes["sim_model"].startswith("sim_model ") and "uncalibrated (0 of 5 clean runs)" in notes["sim_model"]


def test_after_a_stack_change_token2wav_is_judged_against_the_float64_reference(
        pytester: pytest.Pytester, warm_quality: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.copy_example("quality_gate")
    _run(pytester, warm_quality, "--cosy-save-baseline", "-k", "test_stream").assert_outcomes(passed=1)
    index = next((pytester.path / "goldens").rglob("index.json"))
    doc = json.loads(index.read_text())
    call = doc["tests"][next(iter(doc["tests"]))]["calls"][0]
    assert isinstance(call["reference_snr"], float) and 60 < call["reference_snr"] < 200, call
    assert doc["stack"]["torch"]
    doc["stack"]["torch"] = "0.0.1"      # as if the goldens were saved before a torch upgrade
    index.write_text(json.dumps(doc))

    _run(pytester, warm_quality, "-k", "test_stream").assert_outcomes(passed=1)
    check = [c for c in _quality(pytester)["test_stream"]["checks"] if c["name"] == "token2wav"][0]
    assert check["status"] == "pass" and check["figure"] == pytest.approx(1.0), check
    assert check["text"].startswith("stack changed (torch 0.0.1 -> "), check

    monkeypatch.setenv("QUALITY_DEFECT", "noise")
    noisy = _run(pytester, warm_quality, "-k", "test_stream")
    noisy.assert_outcomes(failed=1)
    noisy.stdout.fnmatch_lines(["*quality token2wav (stream 0): stack changed (torch 0.0.1 -> *): token->wav error "
                                "against the float64 reference x* the golden stack's (limit x2*"])


def test_in_ab_mode_each_call_is_compared_with_the_base_side(pytester: pytest.Pytester, warm_quality: Path) -> None:
    pytester.copy_example("quality_gate")
    # The base side: the same engine over the same model (A/A), each call rerun there with the call's seed.
    _run(pytester, warm_quality, "--cosy-base-engine=fixed", "-k", "test_stream or test_synthesize"
         ).assert_outcomes(passed=2)
    tests = _quality(pytester)
    for name, label in (("test_stream", "stream 0 vs base"), ("test_synthesize", "synthesize 0 vs base")):
        against = {c["name"]: c for c in tests[name]["checks"] if c["call"] == label}
        assert set(against) == {"tokens", "audio"}, tests[name]["checks"]
        assert against["tokens"]["status"] == against["audio"]["status"] == "pass", against
        assert against["audio"]["text"].startswith("audio inf dB SNR vs base"), against


def test_without_the_quality_extra_mos_is_one_line_and_the_rest_still_runs(
        pytester: pytest.Pytester, warm_quality: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_cosyvoice.judging import scores

    def missing(audio: Any, rate: int) -> Any:   # what score_mos raises when speechmos is not installed
        raise scores.QualityExtraMissing("sound scores need speechmos, which is not installed: "
                                  "pip install 'pytest-cosyvoice[quality]'")

    monkeypatch.setattr(scores, "score_mos", missing)
    pytester.copy_example("quality_gate")
    result = _run(pytester, warm_quality, "-k", "test_stream")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["note: quality MOS not scored: sound scores need speechmos, which is not "
                                 "installed: pip install 'pytest-cosyvoice[quality]'"])
    test = _quality(pytester)["test_stream"]
    assert {c["name"] for c in test["checks"]} >= {"tokens", "token2wav", "audio", "streamed_vs_offline", "sim"}
    assert not {"dnsmos", "plcmos"} & set(test["scores"])
