from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_v2_dir() -> Path:
    """The embedded tiny v2 model (built once, cached across sessions; never committed)."""
    from cosyvoice_runtime.tiny import default_model_dir

    return default_model_dir(2)


@pytest.fixture(scope="session")
def tiny_v1_dir() -> Path:
    from cosyvoice_runtime.tiny import default_model_dir

    return default_model_dir(1)
