"""The A/B tests' inner session (copied by tests/plugin/test_ab_pairing.py): writes the recorded
figures and the base engine's calls for the outer test."""
import json

import pytest

from pytest_cosyvoice.plugin import get_session
from pytest_cosyvoice.recording.base_side import BaseSideError


class DeadBase:
    """A base side whose worker has died: every call fails as the worker client's do."""

    description = "a dead worker"
    versions: dict = {}

    def takes(self, kind):
        return None

    def call(self, kind, text, kwargs, **_):
        raise BaseSideError("the base worker exited with status 1; its last stderr lines: boom")

    def close(self):
        pass


@pytest.fixture
def dead_base(request, monkeypatch):
    monkeypatch.setattr(get_session(request.config).host, "base_side", lambda: DeadBase())


def pytest_sessionfinish(session):
    import ab_base

    cosy = get_session(session.config)
    figures, _ = cosy.results()
    (session.config.rootpath / "figures.json").write_text(json.dumps({
        "figures": {f.nodeid: f.to_json() for f in figures}, "base_calls": ab_base.CALLS,
        "ab_base": cosy.ab_base, "ab_versions": cosy.ab_versions}))
