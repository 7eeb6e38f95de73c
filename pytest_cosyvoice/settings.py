"""One settings object for the plugin, resolved like pytest-timeout: command line > environment >
ini > default; a marker overrides per test on top (`@pytest.mark.stall_timeout`, see
`Settings.with_stall_timeout`; `allow_warnings` adds to the ini list `cosy_allowed_warnings`).

Every value is parsed here, from whichever source gave it, so a bad value is reported the same way
(`pytest.UsageError`, exit code 4) naming the source (`--cosy-device`, `COSY_DEVICE`, ini
`cosy_device`) and what was expected.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pytest

from cosyvoice_runtime import DEFAULT_STALL_TIMEOUT_S, InvalidInput, check_device, check_timeout
from cosyvoice_runtime.limits import DEVICE_FORMS, MAX_TIMEOUT_S
from cosyvoice_runtime.loader import YAML_NAMES

from .engine import BUILTIN, FACTORY_FORM, FIXED, UPSTREAM, EngineError, is_factory, load_factory

T = TypeVar("T")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class _Bad(Exception):
    """A value that does not parse; the message says what was expected."""


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _text(v: str) -> str:
    return v


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise _Bad("expected true/false (1/0, yes/no, on/off)")


def _device(v: str) -> str:
    try:
        return check_device(v.strip())  # the runtime's rule, so the plugin never passes what it refuses
    except InvalidInput:
        raise _Bad(f"expected {_one_of(DEVICE_FORMS)}") from None


def _engine(v: str) -> str:
    s = v.strip()
    if s in BUILTIN:
        return s
    if not is_factory(s):
        raise _Bad(f"expected {_one_of((*BUILTIN, FACTORY_FORM))}")
    try:
        load_factory(s)  # imported now, so a module that does not import stops the session at once
    except EngineError as e:
        raise _Bad(str(e)) from None
    return s


def _seconds(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise _Bad(f"expected a positive number of seconds, finite and at most {MAX_TIMEOUT_S:g}") from None
    try:
        return check_timeout("seconds", x)  # the runtime's rule, so the plugin never passes what it refuses
    except InvalidInput:
        raise _Bad(f"expected a positive number of seconds, finite and at most {MAX_TIMEOUT_S:g}") from None


def _runner(v: str) -> str:
    from .tracking.runkey import check_runner

    try:
        return check_runner(v.strip())
    except ValueError as e:
        raise _Bad(str(e).split(": ", 1)[1]) from None


def _fraction(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise _Bad("expected a fraction >= 0, e.g. 0.10 for 10 %") from None
    if not 0 <= x < 100:
        raise _Bad("expected a fraction >= 0, e.g. 0.10 for 10 %")
    return x


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: where it can come from and how its text parses."""

    name: str                      # Settings field
    flag: str                      # command line
    ini: str
    env: str | None
    parse: Callable[[str], T]
    default: T
    help: str
    is_flag: bool = False          # store_true on the command line, bool in ini/env
    metavar: str | None = None


OPTIONS: tuple[Option[Any], ...] = (
    Option("model", "--cosy-model", "cosy_model", "COSY_MODEL", _text, None,
           f"CosyVoice model directory (with {_one_of(tuple(sorted(YAML_NAMES.values())))}). "
           "Default: the embedded tiny v2 model, built on first use.", metavar="PATH"),
    Option("device", "--cosy-device", "cosy_device", "COSY_DEVICE", _device, "auto",
           f"{_one_of(DEVICE_FORMS)} (default: auto).", metavar="DEVICE"),
    Option("fp16", "--cosy-fp16", "cosy_fp16", "COSY_FP16", _bool, False,
           "run the LLM and flow in fp16 (CUDA only).", is_flag=True),
    Option("stall_timeout_s", "--cosy-stall-timeout", "cosy_stall_timeout", "COSY_STALL_TIMEOUT", _seconds,
           DEFAULT_STALL_TIMEOUT_S,
           f"fail a stream that produces nothing for this long (default: {DEFAULT_STALL_TIMEOUT_S:g}).",
           metavar="SECONDS"),
    Option("engine", "--cosy-engine", "cosy_engine", "COSY_ENGINE", _engine, FIXED,
           f"{FIXED}: this project's runtime; {UPSTREAM}: the installed upstream orchestration class with the "
           f"same components; {FACTORY_FORM}: the engine factory(runtime) builds (default: {FIXED}).",
           metavar="ENGINE"),
    # Baseline and report options: used by pytest_cosyvoice.finish at the end of the session.
    Option("save_baseline", "--cosy-save-baseline", "cosy_save_baseline", "COSY_SAVE_BASELINE", _bool, False,
           "store this session's figures as the baseline of this hardware key.", is_flag=True),
    Option("baseline_dir", "--cosy-baseline-dir", "cosy_baseline_dir", "COSY_BASELINE_DIR", _text, "baselines",
           "where baselines are kept (default: baselines/).", metavar="DIR"),
    Option("runner", "--cosy-runner", "cosy_runner", "COSY_RUNNER", _runner, None,
           "name of this machine for its baselines (default: the GPU model on CUDA; on CPU the CPU "
           "model, core count and a hash of this host's machine id).", metavar="NAME"),
    Option("rtf_tolerance", "--cosy-rtf-tolerance", "cosy_rtf_tolerance", "COSY_RTF_TOLERANCE", _fraction, 0.05,
           "relative RTF drift tolerated against the baseline (default: 0.05).",
           metavar="FRACTION"),
    Option("machine_tolerance", "--cosy-machine-tolerance", "cosy_machine_tolerance", "COSY_MACHINE_TOLERANCE",
           _fraction, 0.10,
           "how far the calibration workload may drift from the baseline's before verdicts become "
           "inconclusive (default: 0.10).", metavar="FRACTION"),
    Option("fail_on_drift", "--cosy-fail-on-drift", "cosy_fail_on_drift", "COSY_FAIL_ON_DRIFT", _bool, False,
           "fail the session when RTF drifted beyond the tolerance.", is_flag=True),
    Option("report_dir", "--cosy-report", "cosy_report_dir", "COSY_REPORT_DIR", _text, "reports",
           "where the session report is written (default: reports/).", metavar="DIR"),
    Option("no_report", "--cosy-no-report", "cosy_no_report", "COSY_NO_REPORT", _bool, False,
           "write no session report.", is_flag=True),
)

ALLOWED_WARNINGS_INI = "cosy_allowed_warnings"


@dataclass(frozen=True)
class Settings:
    model: Path | None = None          # None: the embedded tiny model
    device: str = "auto"
    fp16: bool = False
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    engine: str = FIXED
    save_baseline: bool = False
    baseline_dir: Path = Path("baselines")
    runner: str | None = None          # None: runkey.default_runner
    rtf_tolerance: float = 0.05
    machine_tolerance: float = 0.10
    fail_on_drift: bool = False
    report_dir: Path = Path("reports")
    no_report: bool = False
    allowed_warnings: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # field -> where from

    def with_stall_timeout(self, seconds: float) -> Settings:
        return replace(self, stall_timeout_s=seconds, sources={**self.sources, "stall_timeout_s": "marker"})


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("cosyvoice", "CosyVoice streaming TTS checks (pytest-cosyvoice)")
    for opt in OPTIONS:
        env = f" [env {opt.env}]" if opt.env else ""
        if opt.is_flag:
            # default None, so "not given" falls through to env/ini.
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name, help=opt.help + env)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.name, metavar=opt.metavar,
                            help=opt.help + env)
        ini_type: Literal["bool", "string"] = "bool" if opt.is_flag else "string"
        parser.addini(opt.ini, help=opt.help, type=ini_type, default=None)
    parser.addini(ALLOWED_WARNINGS_INI, type="linelist", default=[],
                  help="regular expressions (searched in 'Category: message') of deprecation warnings the "
                       "clean check tolerates")


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the command line, environment and ini; `pytest.UsageError` on a bad or clashing value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        cli = config.getoption(opt.name, None)
        ini = config.getini(opt.ini)
        if cli is not None:
            raw, where = cli, opt.flag
        elif opt.env and env.get(opt.env, "") != "":
            raw, where = env[opt.env], opt.env
        elif ini is not None and ini != "":
            raw, where = ini, f"ini {opt.ini}"
        else:
            values[opt.name], sources[opt.name] = opt.default, "default"
            continue
        try:
            values[opt.name] = raw if isinstance(raw, bool) else opt.parse(str(raw))
        except _Bad as e:
            raise pytest.UsageError(f"{where}={raw!r}: {e}") from None
        sources[opt.name] = where
    if values["model"] is not None:
        values["model"] = _model_dir(values["model"], sources["model"])
    for name in ("baseline_dir", "report_dir"):
        values[name] = Path(values[name])
    s = Settings(**values, allowed_warnings=tuple(config.getini(ALLOWED_WARNINGS_INI)), sources=sources)
    _check_clashes(s)
    return s


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
