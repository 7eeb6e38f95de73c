"""Options, settings resolution and marker arguments: exit codes and messages pinned. None of these
inner sessions loads a model (bad options stop in pytest_configure, bad markers before fixtures)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pytest_cosyvoice import markers
from pytest_cosyvoice.judging.specs import (
    DEFAULT_MAX_CLICK_RATIO,
    DEFAULT_SIM_DROP,
    DEFAULT_STREAMED_MEL_DB,
    DEFAULT_WER_SLACK,
    MOS_MINIMUM_BASELINE,
    MOS_SLACK,
    QualitySpec,
    RtfSpec,
    StreamingSpec,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def usage_error(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result.stderr.lines


# -- bad options -------------------------------------------------------------------------------
def test_missing_model_dir(pytester: pytest.Pytester) -> None:
    lines = usage_error(pytester, "--cosy-model", "/no/such/model")
    assert "ERROR: --cosy-model='/no/such/model': no such directory" in lines


def test_model_dir_without_yaml(pytester: pytest.Pytester, tmp_path: Path) -> None:
    lines = usage_error(pytester, f"--cosy-model={tmp_path}")
    assert (f"ERROR: --cosy-model={str(tmp_path)!r}: not a CosyVoice model directory "
            "(no cosyvoice.yaml, cosyvoice2.yaml, cosyvoice3.yaml)") in lines


def test_model_from_env_is_named_as_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSY_MODEL", "/no/such/model")
    assert "ERROR: COSY_MODEL='/no/such/model': no such directory" in usage_error(pytester)


@pytest.mark.parametrize("args, message", [
    (["--cosy-device", "gpu"], "ERROR: --cosy-device='gpu': expected auto, cpu, cuda or cuda:N"),
    (["--cosy-device", "cuda:x"], "ERROR: --cosy-device='cuda:x': expected auto, cpu, cuda or cuda:N"),
    (["--cosy-fp16", "--cosy-device", "cpu"],
     "ERROR: --cosy-fp16 asks for fp16 but --cosy-device selects device cpu: fp16 needs a CUDA device"),
    (["--cosy-stall-timeout", "-5"],
     "ERROR: --cosy-stall-timeout='-5': expected a positive number of seconds, finite and at most 86400"),
    (["--cosy-stall-timeout", "soon"],
     "ERROR: --cosy-stall-timeout='soon': expected a positive number of seconds, finite and at most 86400"),
    (["--cosy-engine", "legacy"], "ERROR: --cosy-engine='legacy': expected fixed, upstream or package.module:factory"),
    (["--cosy-rtf-tolerance", "-0.1"],
     "ERROR: --cosy-rtf-tolerance='-0.1': expected a fraction >= 0, e.g. 0.10 for 10 %"),
    (["--cosy-no-report", "--cosy-report", "out"],
     "ERROR: --cosy-no-report clashes with --cosy-report='out': give one of them"),
], ids=["device", "device-index", "fp16-cpu", "negative-timeout", "timeout-text", "engine", "tolerance",
        "no-report-and-report"])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    assert message in usage_error(pytester, *args)


def test_ini_and_env_values_are_checked_and_named(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\ncosy_device = tpu\n")
    assert "ERROR: ini cosy_device='tpu': expected auto, cpu, cuda or cuda:N" in usage_error(pytester)
    pytester.makeini("[pytest]\ncosy_device = cpu\n")
    monkeypatch.setenv("COSY_FP16", "maybe")
    assert "ERROR: COSY_FP16='maybe': expected true/false (1/0, yes/no, on/off)" in usage_error(pytester)


def test_runner_and_machine_tolerance_are_checked_wherever_they_come_from(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ("ERROR: --cosy-runner='a/b': expected 1-80 characters: letters, digits and . _ + - "
            "(starting with a letter or digit)") in usage_error(pytester, "--cosy-runner", "a/b")
    assert ("ERROR: --cosy-machine-tolerance='lots': expected a fraction >= 0, e.g. 0.10 for 10 %"
            in usage_error(pytester, "--cosy-machine-tolerance", "lots"))
    monkeypatch.setenv("COSY_RUNNER", "gpu box")
    assert any(line.startswith("ERROR: COSY_RUNNER='gpu box': expected 1-80 characters")
               for line in usage_error(pytester))
    monkeypatch.delenv("COSY_RUNNER")
    pytester.makeini("[pytest]\ncosy_runner = ../up\n")
    assert any(line.startswith("ERROR: ini cosy_runner='../up'") for line in usage_error(pytester))


def test_fp16_needs_cuda_even_with_device_auto(pytester: pytest.Pytester) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    lines = usage_error(pytester, "--cosy-fp16")
    assert any(line.startswith("ERROR: --cosy-fp16 (fp16) needs CUDA, but torch") for line in lines)


# -- resolution order --------------------------------------------------------------------------
def test_resolution_cli_over_env_over_ini_over_default(pytester: pytest.Pytester, fake_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(f"[pytest]\ncosy_stall_timeout = 7\ncosy_engine = upstream\ncosy_model = {fake_model}\n"
                     "cosy_allowed_warnings =\n    autocast\n    ^DeprecationWarning: old\n")
    pytester.makeconftest("""
        from pytest_cosyvoice.plugin import get_session

        def pytest_sessionfinish(session):
            s = get_session(session.config).settings
            print("SETTINGS", s.stall_timeout_s, s.engine, s.model.name, s.device, s.rtf_tolerance,
                  s.allowed_warnings, sorted(s.sources.items()))
    """)
    monkeypatch.setenv("COSY_STALL_TIMEOUT", "9")
    monkeypatch.setenv("COSY_RTF_TOLERANCE", "0.2")
    result = pytester.runpytest("-s", "--cosy-stall-timeout=11", "--cosy-device", "cpu")
    result.stdout.fnmatch_lines([
        "SETTINGS 11.0 upstream model cpu 0.2 ('autocast', '^DeprecationWarning: old') "
        "[('ab_confirm_pairs', 'default'), ('ab_floor', 'default'), ('ab_max_pairs', 'default'), ('asr', 'default'), "
        "('base_engine', 'default'), ('base_model', 'default'), ('base_python', 'default'), "
        "('baseline_dir', 'default'), "
        "('device', '--cosy-device'), ('engine', 'ini cosy_engine'), ('fail_on_drift', 'default'), "
        "('fp16', 'default'), ('machine_tolerance', 'default'), ('markdown', 'default'), ('model', 'ini cosy_model'), "
        "('no_report', 'default'), ('report_dir', 'default'), ('rtf_tolerance', 'COSY_RTF_TOLERANCE'), "
        "('runner', 'default'), ('save_baseline', 'default'), ('sim', 'default'), "
        "('stall_timeout_s', '--cosy-stall-timeout')]",
    ])


def test_a_folder_with_tilde_is_one_folder_for_baselines_goldens_and_report(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 23: `--cosy-baseline-dir '~/b'` (quoted: the shell leaves the tilde) put the baselines in
    $HOME/b and the goldens in ./~/b (the folder was resolved twice, once without expanduser). Resolved
    once, in the settings, every store reads the same absolute folder; a relative one is under the
    directory pytest was invoked from."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    pytester.makeconftest("""
        from pytest_cosyvoice import finish
        from pytest_cosyvoice.plugin import get_session

        def pytest_sessionfinish(session):
            cosy = get_session(session.config)
            options = finish.end_options(cosy.settings, session.config.invocation_params.dir)
            print("STORES", options.baseline_dir, cosy.quality.store().directory, options.report_dir)
    """)
    result = pytester.runpytest("-s", "--cosy-baseline-dir=~/b", "--cosy-report=~/r")
    result.stdout.fnmatch_lines([f"STORES {home / 'b'} {home / 'b'} {home / 'r'}"])
    result = pytester.runpytest("-s", "--cosy-baseline-dir=b")
    result.stdout.fnmatch_lines([f"STORES {pytester.path / 'b'} {pytester.path / 'b'} {pytester.path / 'reports'}"])


# -- defaults: written once --------------------------------------------------------------------
def test_defaults_agree_between_help_settings_and_drift(pytester: pytest.Pytester) -> None:
    """Each default is written in one place: the --help text, `Settings()`, what `resolve` gives
    with nothing set, and the drift and baseline modules' constants all say the same."""
    from pytest_cosyvoice.settings import OPTIONS, Settings, resolve
    from pytest_cosyvoice.tracking import baseline, drift, paired

    defaults = Settings()
    assert {opt.name for opt in OPTIONS} <= {f.name for f in dataclasses.fields(Settings)}
    for opt in OPTIONS:
        assert getattr(defaults, opt.name) == opt.default, opt.name
    assert defaults.rtf_tolerance == drift.DEFAULT_TOLERANCE
    assert defaults.machine_tolerance == drift.DEFAULT_MACHINE_TOLERANCE
    assert defaults.baseline_dir == Path(baseline.DEFAULT_DIRECTORY)
    assert drift.Machine().tolerance == defaults.machine_tolerance

    # Nothing given anywhere: resolution ends at the same defaults (the folders under the invocation directory).
    config = pytester.parseconfig()
    resolved = resolve(config, environ={})
    here = config.invocation_params.dir
    assert resolved == dataclasses.replace(defaults, baseline_dir=here / defaults.baseline_dir,
                                           report_dir=here / defaults.report_dir)
    assert set(resolved.sources.values()) == {"default"}

    # The help shows the same numbers and folders (its lines are wrapped: read it as one text).
    text = " ".join(pytester.runpytest("--help").stdout.str().split())
    shown = {}
    for opt in OPTIONS:
        start = text.index(opt.flag + ("" if opt.is_flag else "="))
        m = re.match(r"\S+\s+(.*?)\[env ", text[start:])
        assert m, opt.flag
        d = re.search(r"\(default: ([^)]*)\)", m.group(1))
        if d:
            shown[opt.name] = d.group(1)
    assert float(shown["rtf_tolerance"]) == drift.DEFAULT_TOLERANCE
    assert float(shown["machine_tolerance"]) == drift.DEFAULT_MACHINE_TOLERANCE
    assert float(shown["stall_timeout_s"]) == defaults.stall_timeout_s
    assert shown["baseline_dir"] == f"{defaults.baseline_dir}/" and shown["report_dir"] == f"{defaults.report_dir}/"
    assert shown["device"] == defaults.device and shown["engine"] == defaults.engine
    assert float(shown["ab_floor"]) == paired.DEFAULT_FLOOR == defaults.ab_floor
    assert int(shown["ab_confirm_pairs"]) == paired.DEFAULT_CONFIRM_PAIRS == defaults.ab_confirm_pairs


# -- help and markers text ---------------------------------------------------------------------
def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "CosyVoice streaming TTS checks (pytest-cosyvoice):",
        "  --cosy-model=PATH     CosyVoice model directory (with cosyvoice.yaml,",
        "*--cosy-device=DEVICE  auto, cpu, cuda or cuda:N (default: auto). [env",
        "*--cosy-fp16 *run the LLM and flow in fp16 (CUDA only). [env",
        "*--cosy-stall-timeout=SECONDS",
        "*--cosy-engine=ENGINE*",
        "*--cosy-save-baseline*",
        "*--cosy-baseline-dir=DIR",
        "*--cosy-rtf-tolerance=FRACTION",
        "*--cosy-fail-on-drift*",
        "*--cosy-report=DIR*",
        "*--cosy-no-report*write no session report. [[]env COSY_NO_REPORT]",
    ])
    result.stdout.fnmatch_lines(["  cosy_allowed_warnings (linelist):"])


def test_markers_are_registered_with_their_signature(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines([
        "@pytest.mark.streaming(prebuffer_ms=0.0, max_gap_ms=0.0, max_click_ratio=3.0, allow_warnings=()): every "
        "stream the test made through cosy_tts must be gap-free*",
        "@pytest.mark.rtf(max=1.0, warmup=1, repeat=1): real-time factor*",
        "@pytest.mark.first_chunk(max_ms): every stream's first chunk must arrive within max_ms of the call.",
        "@pytest.mark.no_deprecations(allow=()): fail on any DeprecationWarning*",
        "@pytest.mark.stall_timeout(seconds): *",
        # The defaults the spec applies (one spec: judging.specs.QualitySpec), generated from it.
        "@pytest.mark.quality(snr_db=None, streamed_mel_db=8.5, tokens='identical', mos_slack=0.97, wer_slack=1.25, "
        "sim_drop=0.05, min_clean_runs=5): *",
    ])
    spec = QualitySpec()
    assert (spec.streamed_mel_db, spec.mos_slack, spec.wer_slack, spec.sim_drop, spec.min_clean_runs) == (
        DEFAULT_STREAMED_MEL_DB, MOS_SLACK, DEFAULT_WER_SLACK, DEFAULT_SIM_DROP, MOS_MINIMUM_BASELINE)
    assert markers.MARKER_HELP["quality"].startswith(markers.signature(QualitySpec) + ": ")


def test_strict_markers_accept_ours(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.no_deprecations
        def test_ok():
            pass
    """)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


# -- marker arguments --------------------------------------------------------------------------
def test_bad_marker_arguments_are_errors_naming_test_value_and_keywords(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.rtf(max="fast")
        def test_rtf_text(cosy_tts): pass

        @pytest.mark.rtf(maxx=1)
        def test_rtf_typo(cosy_tts): pass

        @pytest.mark.streaming(prebuffer_ms=-5)
        def test_negative_prebuffer(cosy_tts): pass

        @pytest.mark.streaming(allow_warnings=[42])
        def test_allow_not_pattern(cosy_tts): pass

        @pytest.mark.first_chunk
        def test_first_chunk_without_bound(cosy_tts): pass

        @pytest.mark.rtf(1.0, 1, 1, 1)
        def test_too_many(cosy_tts): pass

        @pytest.mark.rtf(warmup=1.5)
        def test_fractional_warmup(cosy_tts): pass

        @pytest.mark.no_deprecations(allow="(")
        def test_bad_regex(): pass

        @pytest.mark.stall_timeout(0)
        def test_zero_timeout(): pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=9)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random([
        "test_bad.py::test_rtf_text: @pytest.mark.rtf(max='fast'): max='fast': expected a number; "
        "valid keywords: max, warmup, repeat",
        "test_bad.py::test_rtf_typo: @pytest.mark.rtf(maxx=1): got an unexpected keyword argument 'maxx'; "
        "valid keywords: max, warmup, repeat",
        "test_bad.py::test_negative_prebuffer: @pytest.mark.streaming(prebuffer_ms=-5): prebuffer_ms=-5: "
        "expected a number >= 0; valid keywords: prebuffer_ms, max_gap_ms, max_click_ratio, allow_warnings",
        "test_bad.py::test_allow_not_pattern: @pytest.mark.streaming(allow_warnings=[[]42]): allow_warnings: 42 is "
        "neither a regular expression nor a Warning class; valid keywords: *",
        "test_bad.py::test_first_chunk_without_bound: @pytest.mark.first_chunk(): missing 1 required positional "
        "argument: 'max_ms'; valid keywords: max_ms",
        "test_bad.py::test_too_many: @pytest.mark.rtf(1.0, 1, 1, 1): takes from 1 to 4 positional arguments "
        "but 5 were given; valid keywords: max, warmup, repeat",
        "test_bad.py::test_fractional_warmup: @pytest.mark.rtf(warmup=1.5): warmup=1.5: expected a whole number "
        ">= 0; valid keywords: max, warmup, repeat",
        "test_bad.py::test_bad_regex: @pytest.mark.no_deprecations(allow='('): allow: '(' is not a regular "
        "expression (missing ), unterminated subpattern at position 0); valid keywords: allow",
        "test_bad.py::test_zero_timeout: @pytest.mark.stall_timeout(0): seconds=0: expected a positive number of "
        "seconds, finite and at most 86400; valid keywords: seconds",
    ])
    # An error of the test, not a traceback from inside the plugin.
    assert "pytest_cosyvoice" not in result.stdout.str()


def test_a_quality_limit_out_of_range_is_named_like_any_marker_misuse(pytester: pytest.Pytester) -> None:
    """Issue 23: the marker's check and the plugin's disagreed: sim_drop=3 passed the marker and raised a
    plain ValueError inside the plugin. One spec, checked once, named like pytest's own misuse errors. A
    subprocess: a session with a quality test reads its run key (torch), which imports once a process."""
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.quality(sim_drop=3)
        def test_sim_drop_beyond_a_cosine(cosy_tts): pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "test_bad.py::test_sim_drop_beyond_a_cosine: @pytest.mark.quality(sim_drop=3): sim_drop=3: expected a "
        "cosine drop in [[]0, 2]; valid keywords: snr_db, streamed_mel_db, tokens, mos_slack, wer_slack, sim_drop, "
        "min_clean_runs"])
    assert "pytest_cosyvoice" not in result.stdout.str()


def test_specs_bind_positional_and_keyword_arguments() -> None:
    assert markers.bind(RtfSpec, (0.5,), {"repeat": 3}, "t") == RtfSpec(max=0.5, warmup=1, repeat=3)
    s = markers.bind(StreamingSpec, (), {"allow_warnings": "autocast"}, "t")
    assert s.allow_warnings == ("autocast",) and s.max_click_ratio == DEFAULT_MAX_CLICK_RATIO
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.prebuffer_ms = 3  # type: ignore[misc]  # frozen
