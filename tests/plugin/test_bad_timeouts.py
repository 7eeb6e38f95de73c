"""Timeouts are finite and positive everywhere one is accepted: the runtime's validator, the
`stall_timeout` marker and the plugin's option/env/ini parser all refuse inf, nan, 0 and negatives."""
from __future__ import annotations

import pytest

from cosyvoice_runtime import InvalidInput, check_timeout
from cosyvoice_runtime.limits import MAX_TIMEOUT_S

BAD = [float("inf"), float("-inf"), float("nan"), 0, -1.5, MAX_TIMEOUT_S * 2, True, "30", None]


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_validator_refuses(value: object) -> None:
    with pytest.raises(InvalidInput, match=r"^join_timeout_s=.*: expected a positive number of seconds, finite and "
                                           r"at most 86400$"):
        check_timeout("join_timeout_s", value)


@pytest.mark.parametrize("value", [0.001, 5, 30.0, MAX_TIMEOUT_S])
def test_validator_accepts(value: float) -> None:
    assert check_timeout("t", value) == float(value)


@pytest.mark.parametrize("written", ["float('inf')", "float('nan')", "0", "-3", "1e300"])
def test_marker_refuses(pytester: pytest.Pytester, written: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.stall_timeout({written})
        def test_one(cosy_tts):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--cosy-no-report")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.stall_timeout(*): seconds=*: expected a positive number of seconds, "
                                 "finite and at most 86400*"])
    assert "OverflowError" not in result.stdout.str() and "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e400", "100000"])
def test_option_refuses(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest("--cosy-stall-timeout", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --cosy-stall-timeout={value!r}: expected a positive number of seconds*"])


def test_env_refuses_inf(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSY_STALL_TIMEOUT", "inf")
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: COSY_STALL_TIMEOUT='inf': expected a positive number of seconds*"])
