"""One settings object for the plugin, resolved like pytest-timeout: command line > environment >
ini > default; a marker overrides per test on top (`@pytest.mark.stall_timeout`, see
`Settings.with_stall_timeout`; `allow_warnings` adds to the ini list `cosy_allowed_warnings`).

Every value is parsed by its `Option` (options.py: the declaration and resolution of an option), from
whichever source gave it, so a bad value is reported the same way (`pytest.UsageError`, exit code 4)
naming the source (`--cosy-device`, `COSY_DEVICE`, ini `cosy_device`) and what was expected.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cosyvoice_runtime import DEFAULT_STALL_TIMEOUT_S, InvalidInput, check_device
from cosyvoice_runtime.limits import DEVICE_FORMS
from cosyvoice_runtime.loader import YAML_NAMES

from .engine import BUILTIN, FACTORY_FORM, FIXED, UPSTREAM, EngineError, is_factory, load_factory
from .judging.intelligibility import POCKETSPHINX
from .judging.scores import QUALITY_INSTALL
from .options import (
    BadValue,
    Option,
    absolute,
    one_of,
    parse_bool,
    parse_fraction,
    parse_path,
    parse_seconds,
    parse_text,
    register_options,
    resolve_options,
)
from .tracking.baseline import DEFAULT_DIRECTORY as DEFAULT_BASELINE_DIR
from .tracking.drift import DEFAULT_MACHINE_TOLERANCE, DEFAULT_TOLERANCE
from .tracking.paired import DEFAULT_CONFIRM_PAIRS, DEFAULT_FLOOR, DEFAULT_MAX_PAIRS, Rule
from .tracking.runkey import check_runner


def _device(v: str) -> str:
    try:
        return check_device(v.strip())  # the runtime's rule, so the plugin never passes what it refuses
    except InvalidInput:
        raise BadValue(f"expected {one_of(DEVICE_FORMS)}") from None


def _engine(v: str) -> str:
    s = v.strip()
    if s in BUILTIN:
        return s
    if not is_factory(s):
        raise BadValue(f"expected {one_of((*BUILTIN, FACTORY_FORM))}")
    try:
        load_factory(s)  # imported now, so a module that does not import stops the session at once
    except EngineError as e:
        raise BadValue(str(e)) from None
    return s


def _engine_form(v: str) -> str:
    """An engine's form only: a base engine's factory may live in the base interpreter alone
    (--cosy-base-python), so importing it here is `resolve`'s call."""
    s = v.strip()
    if s in BUILTIN or is_factory(s):
        return s
    raise BadValue(f"expected {one_of((*BUILTIN, FACTORY_FORM))}")


def _pair_count(v: str, field: str, example: int) -> int:
    """A whole number of pairs that `Rule` accepts as `field` (its first look must be reachable)."""
    try:
        n = int(v.strip())
    except ValueError:
        raise BadValue(f"expected a whole number of pairs, e.g. {example}") from None
    try:
        Rule(**{field: n})
    except ValueError as e:
        raise BadValue(f"expected at least the first look's pairs: {e}") from None
    return n


def _max_pairs(v: str) -> int:
    return _pair_count(v, "max_pairs", DEFAULT_MAX_PAIRS)


def _confirm_pairs(v: str) -> int:
    return _pair_count(v, "confirm_pairs", DEFAULT_CONFIRM_PAIRS)


def _floor(v: str) -> float:
    x = parse_fraction(v)
    if not 0.0 < x < 1.0:
        raise BadValue("expected a fraction above 0 and below 1, e.g. 0.04 for 4 %")
    return x


def _runner(v: str) -> str:
    try:
        return check_runner(v.strip())
    except ValueError as e:
        raise BadValue(str(e).split(": ", 1)[1]) from None


DEFAULT_REPORT_DIR = "reports"

OPTIONS: tuple[Option[Any], ...] = (
    Option("model", "--cosy-model", "cosy_model", "COSY_MODEL", parse_text, None,
           f"CosyVoice model directory (with {one_of(tuple(sorted(YAML_NAMES.values())))}). "
           "Default: the embedded tiny v2 model, built on first use.", metavar="PATH"),
    Option("device", "--cosy-device", "cosy_device", "COSY_DEVICE", _device, "auto",
           f"{one_of(DEVICE_FORMS)} (default: auto).", metavar="DEVICE"),
    Option("fp16", "--cosy-fp16", "cosy_fp16", "COSY_FP16", parse_bool, False,
           "run the LLM and flow in fp16 (CUDA only).", is_flag=True),
    Option("stall_timeout_s", "--cosy-stall-timeout", "cosy_stall_timeout", "COSY_STALL_TIMEOUT", parse_seconds,
           DEFAULT_STALL_TIMEOUT_S,
           f"fail a stream that produces nothing for this long (default: {DEFAULT_STALL_TIMEOUT_S:g}).",
           metavar="SECONDS"),
    Option("engine", "--cosy-engine", "cosy_engine", "COSY_ENGINE", _engine, FIXED,
           f"{FIXED}: this project's runtime; {UPSTREAM}: the installed upstream orchestration class with the "
           f"same components; {FACTORY_FORM}: the engine factory(runtime) builds (default: {FIXED}).",
           metavar="ENGINE"),
    # A/B mode (any of the three base options): the session's own engine, model and interpreter are the
    # head; each RTF round runs head and base back to back (recording/base_side.py, tracking/paired.py).
    Option("base_engine", "--cosy-base-engine", "cosy_base_engine", "COSY_BASE_ENGINE", _engine_form, None,
           f"A/B mode: the base side's engine ({one_of((*BUILTIN, FACTORY_FORM))}); default: the head's "
           "--cosy-engine.", metavar="ENGINE"),
    Option("base_model", "--cosy-base-model", "cosy_base_model", "COSY_BASE_MODEL", parse_text, None,
           "A/B mode: the base side's model directory (a new checkpoint against the released one); "
           "default: the head's model.", metavar="DIR"),
    Option("base_python", "--cosy-base-python", "cosy_base_python", "COSY_BASE_PYTHON", parse_text, None,
           "A/B mode: run the base side in a worker process of this interpreter (another venv or checkout, "
           "with pytest-cosyvoice installed).", metavar="PATH"),
    Option("ab_max_pairs", "--cosy-ab-max-pairs", "cosy_ab_max_pairs", "COSY_AB_MAX_PAIRS", _max_pairs,
           DEFAULT_MAX_PAIRS, f"A/B mode: the most head/base pairs a test gets before it is called "
           f"inconclusive, unless the screen flags it (default: {DEFAULT_MAX_PAIRS}).", metavar="N"),
    Option("ab_confirm_pairs", "--cosy-ab-confirm-pairs", "cosy_ab_confirm_pairs", "COSY_AB_CONFIRM_PAIRS",
           _confirm_pairs, DEFAULT_CONFIRM_PAIRS, f"A/B mode: the fresh pairs a flagged test gets to confirm a "
           f"regression or improvement (default: {DEFAULT_CONFIRM_PAIRS}).", metavar="N"),
    Option("ab_floor", "--cosy-ab-floor", "cosy_ab_floor", "COSY_AB_FLOOR", _floor, DEFAULT_FLOOR,
           f"A/B mode: the slowdown a failing regression guarantees: its one-sided 99 percent bound lies above "
           f"1 + FLOOR (default: {DEFAULT_FLOOR:g}).", metavar="FRACTION"),
    Option("markdown", "--cosy-markdown", "cosy_markdown", "COSY_MARKDOWN", parse_path, None,
           "append a Markdown summary of the session's verdicts to this file (default: $GITHUB_STEP_SUMMARY "
           "when set).", metavar="PATH"),
    # Baseline and report options: used by pytest_cosyvoice.finish at the end of the session.
    Option("save_baseline", "--cosy-save-baseline", "cosy_save_baseline", "COSY_SAVE_BASELINE", parse_bool, False,
           "store this session's figures as the baseline of this run key (runner and configuration).", is_flag=True),
    Option("baseline_dir", "--cosy-baseline-dir", "cosy_baseline_dir", "COSY_BASELINE_DIR", parse_path,
           Path(DEFAULT_BASELINE_DIR), f"where baselines are kept (default: {DEFAULT_BASELINE_DIR}/).", metavar="DIR"),
    Option("runner", "--cosy-runner", "cosy_runner", "COSY_RUNNER", _runner, None,
           "name of this machine for its baselines (default: the GPU model on CUDA; on CPU the CPU "
           "model, core count and a hash of this host's machine id).", metavar="NAME"),
    Option("rtf_tolerance", "--cosy-rtf-tolerance", "cosy_rtf_tolerance", "COSY_RTF_TOLERANCE", parse_fraction,
           DEFAULT_TOLERANCE, f"relative RTF drift tolerated against the baseline (default: {DEFAULT_TOLERANCE:.2f}).",
           metavar="FRACTION"),
    Option("machine_tolerance", "--cosy-machine-tolerance", "cosy_machine_tolerance", "COSY_MACHINE_TOLERANCE",
           parse_fraction, DEFAULT_MACHINE_TOLERANCE,
           "how far the calibration workload may drift from the baseline's before verdicts become "
           f"inconclusive (default: {DEFAULT_MACHINE_TOLERANCE:.2f}).", metavar="FRACTION"),
    Option("fail_on_drift", "--cosy-fail-on-drift", "cosy_fail_on_drift", "COSY_FAIL_ON_DRIFT", parse_bool, False,
           "fail the session when RTF drifted beyond the tolerance.", is_flag=True),
    Option("report_dir", "--cosy-report", "cosy_report_dir", "COSY_REPORT_DIR", parse_path, Path(DEFAULT_REPORT_DIR),
           f"where the session report is written (default: {DEFAULT_REPORT_DIR}/).", metavar="DIR"),
    Option("no_report", "--cosy-no-report", "cosy_no_report", "COSY_NO_REPORT", parse_bool, False,
           "write no session report.", is_flag=True),
    # The quality gate's optional scores (@pytest.mark.quality): local models only, never a download.
    Option("asr", "--cosy-asr", "cosy_asr", "COSY_ASR", parse_text, None,
           f"quality tests' WER/CER: a local ASR model directory (transformers Whisper/CTC, or a FunASR "
           f"Paraformer directory), or '{POCKETSPHINX}' (the en-us model its wheel bundles; weak, for testing).",
           metavar="PATH"),
    Option("sim", "--cosy-sim", "cosy_sim", "COSY_SIM", parse_text, None,
           "quality tests' speaker similarity with a local transformers speaker-verification model directory "
           "(e.g. WavLMForXVector), beside the model directory's own campplus.onnx.", metavar="PATH"),
)

ALLOWED_WARNINGS_INI = "cosy_allowed_warnings"
_DEFAULTS: dict[str, Any] = {opt.name: opt.default for opt in OPTIONS}


@dataclass(frozen=True)
class Settings:
    # Defaults read from OPTIONS, where each is written once; a test checks every option has its field.
    model: Path | None = _DEFAULTS["model"]          # None: the embedded tiny model
    device: str = _DEFAULTS["device"]
    fp16: bool = _DEFAULTS["fp16"]
    stall_timeout_s: float = _DEFAULTS["stall_timeout_s"]
    engine: str = _DEFAULTS["engine"]
    save_baseline: bool = _DEFAULTS["save_baseline"]
    baseline_dir: Path = _DEFAULTS["baseline_dir"]
    runner: str | None = _DEFAULTS["runner"]         # None: runkey.default_runner
    rtf_tolerance: float = _DEFAULTS["rtf_tolerance"]
    machine_tolerance: float = _DEFAULTS["machine_tolerance"]
    fail_on_drift: bool = _DEFAULTS["fail_on_drift"]
    report_dir: Path = _DEFAULTS["report_dir"]
    no_report: bool = _DEFAULTS["no_report"]
    base_engine: str | None = _DEFAULTS["base_engine"]
    base_model: Path | None = _DEFAULTS["base_model"]
    base_python: str | None = _DEFAULTS["base_python"]
    ab_max_pairs: int = _DEFAULTS["ab_max_pairs"]
    ab_confirm_pairs: int = _DEFAULTS["ab_confirm_pairs"]
    ab_floor: float = _DEFAULTS["ab_floor"]
    markdown: Path | None = _DEFAULTS["markdown"]       # None: $GITHUB_STEP_SUMMARY when set
    asr: str | None = _DEFAULTS["asr"]                  # a local ASR model directory, or "pocketsphinx"
    sim: str | None = _DEFAULTS["sim"]                  # a local speaker-verification model directory
    allowed_warnings: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # field -> where from

    @property
    def ab_mode(self) -> bool:
        """A base side was asked for: every RTF round pairs head and base."""
        return self.base_engine is not None or self.base_model is not None or self.base_python is not None

    @property
    def base_engine_spec(self) -> str:
        """The base side's engine: --cosy-base-engine, or the head's."""
        return self.base_engine if self.base_engine is not None else self.engine

    def with_stall_timeout(self, seconds: float) -> Settings:
        return replace(self, stall_timeout_s=seconds, sources={**self.sources, "stall_timeout_s": "marker"})


def add_options(parser: pytest.Parser) -> None:
    register_options(parser, OPTIONS, "cosyvoice", "CosyVoice streaming TTS checks (pytest-cosyvoice)")
    parser.addini(ALLOWED_WARNINGS_INI, type="linelist", default=[],
                  help="regular expressions (searched in 'Category: message') of deprecation warnings the "
                       "clean check tolerates")


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the command line, environment and ini; `pytest.UsageError` on a bad or clashing value."""
    values, sources = resolve_options(config, OPTIONS, environ)
    for name in ("model", "base_model"):
        if values[name] is not None:
            values[name] = _model_dir(values[name], sources[name])
    if values["base_engine"] is not None and values["base_python"] is None and is_factory(values["base_engine"]):
        # In this interpreter the factory must import now; in a base interpreter its worker checks it.
        try:
            load_factory(values["base_engine"])
        except EngineError as e:
            raise pytest.UsageError(f"{sources['base_engine']}={values['base_engine']!r}: {e}") from None
    if values["base_python"] is not None and not hasattr(config, "workerinput"):
        # xdist's workers get the controller's options: the controller has run this check once.
        _check_base_python(values["base_python"], sources["base_python"])
    if values["asr"] is not None:
        values["asr"] = _check_asr(values["asr"], sources["asr"])
    if values["sim"] is not None:
        values["sim"] = _check_sim(values["sim"], sources["sim"])
    s = Settings(**values, allowed_warnings=tuple(config.getini(ALLOWED_WARNINGS_INI)), sources=sources)
    _check_clashes(s)     # names the paths as written
    # The one resolution of the folders: the stores, the report and the summary read them as given.
    base = config.invocation_params.dir
    return replace(s, baseline_dir=absolute(s.baseline_dir, base), report_dir=absolute(s.report_dir, base),
                   markdown=None if s.markdown is None else absolute(s.markdown, base))


def _check_base_python(raw: str, where: str) -> None:
    """The base interpreter runs and can host the base worker (it imports pytest_cosyvoice and
    cosyvoice_runtime). It runs in a process of its own, so this interpreter imports no torch for it."""
    from .recording.base_side import BaseSideError
    from .recording.other_interpreter import probe_python

    try:
        probe_python(raw)
    except BaseSideError as e:
        raise pytest.UsageError(f"{where}={raw!r}: {e}") from None


def _check_asr(raw: str, where: str) -> str:
    """A usage error before any test when --cosy-asr names no usable recogniser (the model is loaded
    at the first quality test that transcribes)."""
    from .judging.intelligibility import MissingPackage, check_asr_dir

    value = raw.strip()
    if value == POCKETSPHINX:
        if importlib.util.find_spec("pocketsphinx") is None:
            raise pytest.UsageError(f"{where}={raw!r}: pocketsphinx is not installed: {QUALITY_INSTALL}")
        return value
    try:
        check_asr_dir(Path(value).expanduser())
    except (ValueError, MissingPackage) as e:
        raise pytest.UsageError(f"{where}={raw!r}: {e}") from None
    return str(Path(value).expanduser())


def _check_sim(raw: str, where: str) -> str:
    from .judging.similarity import check_speaker_dir

    try:
        check_speaker_dir(Path(raw.strip()).expanduser())
    except (ValueError, ImportError) as e:
        raise pytest.UsageError(f"{where}={raw!r}: {e}") from None
    return str(Path(raw.strip()).expanduser())


def _model_dir(raw: str, where: str) -> Path:
    p = Path(raw).expanduser()
    if not p.exists():
        raise pytest.UsageError(f"{where}={raw!r}: no such directory")
    if not p.is_dir():
        raise pytest.UsageError(f"{where}={raw!r}: not a directory")
    names = sorted(YAML_NAMES.values())
    if not any((p / n).is_file() for n in names):
        raise pytest.UsageError(f"{where}={raw!r}: not a CosyVoice model directory (no {', '.join(names)})")
    return p


def _check_clashes(s: Settings) -> None:
    src = s.sources
    if s.fp16 and s.device == "cpu":
        raise pytest.UsageError(f"{src['fp16']} asks for fp16 but {src['device']} selects device cpu: "
                                "fp16 needs a CUDA device")
    if s.no_report and src.get("report_dir", "default") != "default":
        raise pytest.UsageError(f"{src['no_report']} clashes with {src['report_dir']}={str(s.report_dir)!r}: "
                                "give one of them")
    if s.fp16 or s.device.startswith("cuda"):
        # torch is imported here only when CUDA was asked for, so CPU sessions start fast.
        import torch

        if not torch.cuda.is_available():
            what = f"{src['device']}={s.device!r}" if s.device != "auto" else f"{src['fp16']} (fp16)"
            raise pytest.UsageError(f"{what} needs CUDA, but torch {torch.__version__} sees no CUDA device")
        if ":" in s.device and int(s.device.split(":")[1]) >= torch.cuda.device_count():
            raise pytest.UsageError(f"{src['device']}={s.device!r}: only {torch.cuda.device_count()} "
                                    "CUDA device(s) visible")
