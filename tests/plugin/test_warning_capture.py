"""The clean check hears the warnings of a test's call only: not those of its setup or teardown, nor
one a thread raises between tests; the capture is undone after each call. (Warnings of the call in
any thread count: tests/plugin/test_e2e.py, "(thread worker)".) No model is loaded."""
from __future__ import annotations

import warnings

import pytest

from pytest_cosyvoice.recording.capture import WarningCapture

INNER = '''
import threading
import warnings

import pytest

LATE = threading.Event()


def captured_by_the_plugin():
    return type(getattr(warnings.showwarning, "__self__", None)).__name__ == "WarningCapture"


@pytest.fixture
def warns_around():
    warnings.warn("from setup", DeprecationWarning)
    yield
    warnings.warn("from teardown", DeprecationWarning)


@pytest.mark.no_deprecations
def test_setup_and_teardown_are_not_the_call(warns_around):
    assert captured_by_the_plugin()


@pytest.mark.no_deprecations
def test_starts_a_thread_that_warns_later():
    def late():
        LATE.wait(30)
        warnings.warn("from a thread after its test", DeprecationWarning)
    threading.Thread(target=late, name="late").start()


def test_between_marked_tests_the_thread_warns():
    assert not captured_by_the_plugin()
    LATE.set()
    for t in threading.enumerate():
        if t.name == "late":
            t.join(30)


@pytest.mark.no_deprecations
def test_the_next_marked_test_does_not_see_it():
    pass


@pytest.mark.no_deprecations
def test_a_warning_of_the_call_fails():
    warnings.warn("in the call", DeprecationWarning)
'''


def test_only_the_call_is_captured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "default")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*clean: DeprecationWarning: in the call at *test_inner.py:*"])
    out = result.stdout.str()
    assert "clean: DeprecationWarning: from" not in out


def test_the_capture_is_undone_and_hands_its_warnings_on() -> None:
    with pytest.warns(DeprecationWarning, match="inside"):  # handed on to pytest's capture at exit
        before = warnings.showwarning, list(warnings.filters)
        with WarningCapture() as cap:
            warnings.warn("inside", DeprecationWarning, stacklevel=1)
        after = warnings.showwarning, list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.warn("outside", DeprecationWarning, stacklevel=1)
    assert [w.message for w in cap.records] == ["inside"]
    assert after == before
