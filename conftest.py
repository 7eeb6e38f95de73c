"""Root of the repository's pytest layout: registers what every test directory shares.

`tests/runtime/` judges the runtime, `tests/plugin/` the plugin, `tests/` root the docs and
benchmarks; their shared fixtures live in `tests/fixtures.py`. Harmless for `pytest suites`: the
fixtures import nothing until used.
"""
pytest_plugins = ["pytester", "tests.fixtures"]
# Files of the inner sessions that plugin tests copy (pytester.copy_example): they fail on purpose.
collect_ignore = ["tests/plugin/examples"]
