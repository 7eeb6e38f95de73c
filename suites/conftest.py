"""Release-gate suites: run with `pytest suites --cosy-model PATH` (default: the embedded tiny model)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_cosyvoice.faults import forced_llm
from pytest_cosyvoice.faults import forced_tokens as seeded_tokens

from . import limits

# The first request after load is the cold one: the test that measures it runs first.
COLD_TEST = "test_cold_start.py::test_cold_then_warm_first_chunk"


def pytest_addoption(parser: pytest.Parser) -> None:
    limits.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # Resolved at startup: a bad gate limit stops the session (exit code 4) before collection, and
    # the suite modules collection imports next read the resolved values.
    limits.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    limits.unconfigure(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.endswith(COLD_TEST))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Each test starts from the same torch seed, so a run's texts yield comparable token counts."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def forced_tokens(cosy_model: Any) -> Iterator[Callable[[int, int], list[int]]]:
    """Forces the LLM to emit a seeded random token sequence (audio then depends only on the tokens);
    the model's own LLM is put back afterwards."""
    def force(n: int, seed: int = 0) -> list[int]:
        tokens = seeded_tokens(cosy_model.version, n, seed)
        cosy_model.llm.inference = forced_llm(tokens)
        return tokens

    yield force
    cosy_model.llm.__dict__.pop("inference", None)
