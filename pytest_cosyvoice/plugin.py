"""pytest-cosyvoice hooks and fixtures (entry point `pytest11: cosyvoice`). The work is done in
settings.py (options), markers.py and judging/specs.py (marker arguments), host.py (the model and
engine), session.py (results and per-test capture), recording/calls.py (`cosy_tts`),
judging/verdict.py (the verdict), rounds.py, finish.py and the report; this module only wires it in."""
from __future__ import annotations

from collections.abc import Generator, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from . import finish, rounds
from . import settings as _settings
from .host import Prompt, default_prompt
from .markers import MARKER_HELP
from .recording.attribution import EngineAttribution
from .recording.base_side import BaseSideError
from .recording.calls import CosyTTS, WatchdogExpired, quality_seed
from .session import WIRE_KEY, CosySession, TestRun, report_text

if TYPE_CHECKING:
    from cosyvoice_runtime import Runtime

SESSION_KEY = pytest.StashKey[CosySession]()
RUN_KEY = pytest.StashKey[TestRun]()
FINISH_KEY = pytest.StashKey[finish.FinishResult]()


def get_session(config: pytest.Config) -> CosySession:
    """The plugin's session object (figures, streams, the loaded model)."""
    return config.stash[SESSION_KEY]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for text in MARKER_HELP.values():
        config.addinivalue_line("markers", text)
    # Bad or clashing options stop the session here (UsageError, exit code 4), before any test runs.
    config.stash[SESSION_KEY] = CosySession(config, _settings.resolve(config))


def pytest_collection_finish(session: pytest.Session) -> None:
    # A custom engine (--cosy-engine package.module:factory) is built here, before any test runs.
    if session.config.option.collectonly:
        return
    cosy = get_session(session.config)
    cosy.host.check_engine(session.items)
    cosy.quality.check(session.items, cosy.run_key)   # a quality session reads its goldens now: a bad file exits 4


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before fixtures: a misused marker is an error of this test, without loading a model.
    item.stash[RUN_KEY] = get_session(item.config).start_test(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    run = item.stash.get(RUN_KEY, None)
    if run is None:
        return (yield)
    try:
        with run.capture():
            result = yield
    except BaseException as e:
        problems = run.evaluate()
        if problems:
            item.add_report_section("call", "cosyvoice checks", report_text(problems))
        if isinstance(e, WatchdogExpired):  # a hang: the test fails with the watchdog's text alone
            pytest.fail(str(e), pytrace=False)
        if isinstance(e, BaseSideError):    # A/B mode: the base side could not serve; its message says why
            pytest.fail(str(e), pytrace=False)
        raise
    problems = run.evaluate()
    if problems:
        pytest.fail(report_text(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, Any]:
    result = yield
    # After the main pass (on each xdist worker, for the tests it ran): rounds 2..N of the RTF tests.
    if not session.config.option.collectonly:
        rounds.after_main_pass(session, get_session(session.config))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        get_session(item.config).set_outcome(item.nodeid, report.outcome)
    return report


# tryfirst: pytest's JUnit writer writes its file in its own pytest_sessionfinish, and the A/B
# verdicts must be among its testsuite properties by then.
@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # an xdist worker: hand the figures to the controller
        config.workeroutput[WIRE_KEY] = get_session(config).to_wire()
    if hasattr(config, "workerinput"):
        return
    # The controller (or a plain session): key, baseline, drift, report, save, fail-on-drift.
    result = finish.finish(get_session(config), session.exitstatus, config.invocation_params.dir)
    if result is not None:
        config.stash[FINISH_KEY] = result
        session.exitstatus = result.exitstatus
        finish.add_junit_properties(config, result.junit)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.host.close()   # A/B mode: the base side's worker is stopped


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(FINISH_KEY, None)
    if result is None:
        return
    terminalreporter.section("cosyvoice")
    for line in result.lines:
        terminalreporter.write_line(line, red=line.startswith("ERROR"))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    # xdist controller: collect what a finished worker recorded.
    get_session(node.config).merge_wire(getattr(node, "workeroutput", {}).get(WIRE_KEY))


@pytest.fixture(scope="session")
def cosy_model(pytestconfig: pytest.Config) -> Runtime:
    """The loaded `cosyvoice_runtime.Runtime` (once per session, or per xdist worker)."""
    return get_session(pytestconfig).host.runtime()


@pytest.fixture(scope="session")
def _cosy_attribution(pytestconfig: pytest.Config, cosy_model: Runtime) -> Iterator[EngineAttribution]:
    """The engine's signatures, read once; for an engine without `observer=`, the foreign adapter,
    installed for the session and taken out at its end (see `recording.foreign`)."""
    attribution = EngineAttribution(get_session(pytestconfig).host.engine(), cosy_model)
    yield attribution
    attribution.close()


@pytest.fixture
def cosy_tts(request: pytest.FixtureRequest, cosy_model: Runtime,
             _cosy_attribution: EngineAttribution) -> Iterator[CosyTTS]:
    """Calls the engine (`--cosy-engine`) like a user would and records every stream for the checks.
    In A/B mode an RTF test's measured calls also run on the base side (see `recording.pairing`)."""
    cosy = get_session(request.config)
    host = cosy.host
    run = request.node.stash[RUN_KEY]
    # The test's stall timeout goes with each request (`stall_timeout_s=`, where the engine takes it)
    # and to the watchdog; the shared runtime's settings are left alone.
    tts = CosyTTS(host.engine(), cosy_model, _cosy_attribution, stall_timeout_s=run.settings.stall_timeout_s,
                  rtf=run.rtf, first_use=host.first_use, round=run.round, pairing=cosy.pairing(run),
                  quality_seeds=None if run.quality is None else partial(quality_seed, request.node.nodeid))
    run.recordings = tts.recordings
    yield tts


@pytest.fixture(scope="session")
def cosy_prompt() -> Prompt:
    """A default zero-shot prompt: `.wav` (16 kHz mono recording) and `.text` (its transcript)."""
    return default_prompt()
