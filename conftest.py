"""Root of the repository's pytest layout: registers what every test directory shares.

`tests/runtime/` judges the runtime, `tests/plugin/` the plugin, `tests/` root the docs and
benchmarks; their shared fixtures live in `tests/fixtures.py`. Harmless for `pytest suites`: the
fixtures import nothing until used.
"""
pytest_plugins = ["pytester", "tests.fixtures"]
