"""The embedded default model (no --cosy-model): without the onnx extra it cannot be built, and every
test that needs it fails with one line naming the package and the install command."""
from __future__ import annotations

from pathlib import Path

import pytest

INNER_CONFTEST = """
import sys
sys.modules["onnx"] = None  # `import onnx` raises ImportError: an install without the onnx extra
"""
INNER_TESTS = """
def test_one(cosy_model):
    pass

def test_two(cosy_model):
    pass

def test_without_the_model():
    pass
"""


def test_default_model_without_onnx_names_the_extra(pytester: pytest.Pytester, warm_tiny: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSY_CACHE_DIR", str(tmp_path / "empty-cache"))  # nothing built yet: must build
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--cosy-device=cpu", "--cosy-no-report")
    result.assert_outcomes(passed=1, errors=2)
    hint = ("cannot load the model 'the embedded tiny model': MissingExtra: building a random-weight CosyVoice "
            "model (the embedded default model) needs the Python package 'onnx', which is not installed: "
            "pip install 'pytest-cosyvoice[onnx]', or use a model directory of your own")
    assert result.stdout.lines.count(hint) == 2  # one line per test that needs the model
    assert "Traceback" not in result.stdout.str()
    assert not [p for p in (tmp_path / "empty-cache").iterdir() if not p.name.endswith(".lock")]
