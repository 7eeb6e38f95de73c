"""README and docs stay true: commands, options, markers, gate variables and pictures they name exist."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pytest_cosyvoice.markers import MARKER_HELP
from pytest_cosyvoice.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")}


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = "bash scripts/bootstrap.sh && .venv/bin/python -m pytest tests"
    main_cmd = "bash scripts/bootstrap.sh && .venv/bin/python -m pytest suites"
    assert f"    {test_cmd}\n" in README and f"    {main_cmd}\n" in README
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert test_cmd in lines
    # After the tests, only the lint and type check (configured in pyproject.toml).
    after = lines[lines.index(test_cmd) + 1:]
    assert after == [".venv/bin/python -m ruff check .", ".venv/bin/python -m mypy"]


@pytest.mark.parametrize("name", ["README.md", *sorted(DOCS)])
def test_every_cosy_flag_named_in_the_docs_exists(name: str) -> None:
    from suites.limits import GATE_OPTIONS

    text = README if name == "README.md" else DOCS[name]
    known = {opt.flag for opt in (*OPTIONS, *GATE_OPTIONS)}
    named = set(re.findall(r"--cosy-[a-z0-9-]+", text))
    assert named <= known, f"{name} names unknown options {sorted(named - known)}"


def test_plugin_doc_defaults_are_the_settings() -> None:
    from cosyvoice_runtime import DEFAULT_STALL_TIMEOUT_S
    from pytest_cosyvoice.engine import BUILTIN, FACTORY_FORM, FIXED

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(--cosy-[a-z0-9-]+)[^|]*\|[^|]*\|[^|]*\| ([^|]+) \|",
                                                         DOCS["plugin.md"], re.M)}
    assert rows["--cosy-stall-timeout"] == f"{DEFAULT_STALL_TIMEOUT_S:g}"
    assert rows["--cosy-engine"] == f"`{FIXED}`"
    engine_row = next(line for line in DOCS["plugin.md"].splitlines() if line.startswith("| `--cosy-engine"))
    assert all(f"`{name}`" in engine_row for name in (*BUILTIN, FACTORY_FORM))
    defaults = {opt.flag: opt.default for opt in OPTIONS}
    assert defaults["--cosy-stall-timeout"] == DEFAULT_STALL_TIMEOUT_S and defaults["--cosy-engine"] == FIXED
    # The tolerances and folders in the table are the options' defaults (the drift module's constants).
    for flag in ("--cosy-rtf-tolerance", "--cosy-machine-tolerance"):
        assert float(rows[flag]) == defaults[flag], flag
    for flag in ("--cosy-baseline-dir", "--cosy-report"):
        assert rows[flag] == f"`{defaults[flag]}`", flag


def test_readme_markers_match_the_registered_signatures() -> None:
    for name, help_text in MARKER_HELP.items():
        signature = help_text.split(":", 1)[0]           # e.g. "rtf(max=1.0, warmup=1, repeat=1)"
        keywords = re.findall(r"(\w+)=", signature) or re.findall(r"\((\w+)\)", signature)
        assert f"`{name}" in README, f"README does not mention marker {name}"
        shown = re.search(rf"`{name}\(([^`]*)\)`", README)
        if shown:
            assert [k.strip() for k in shown.group(1).split(",") if k.strip()] == keywords, name


def test_readme_gate_variables_and_defaults_are_the_suites() -> None:
    from suites.limits import GateLimits

    rows = dict(re.findall(r"\| `(COSY_GATE_[A-Z_]+)` \| ([0-9.]+) \|", README))
    expected = {GateLimits.variable(f.name): f.default for f in fields(GateLimits)}
    assert set(rows) == set(expected)
    assert {k: float(v) for k, v in rows.items()} == expected


def test_pictures_and_links_in_the_readme_exist() -> None:
    targets = re.findall(r"\]\(((?:docs|suites|baselines)/[^)#]+)\)", README)
    assert targets, "the README links nothing under docs/"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links missing files {missing}"
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        data = (ROOT / img).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{img} is not a real picture"


def test_gpu_workflow_example_uses_existing_options() -> None:
    import yaml

    text = (ROOT / "docs" / "examples" / "gpu-gate.yml").read_text()
    known = {opt.flag for opt in OPTIONS}
    assert set(re.findall(r"--cosy-[a-z0-9-]+", text)) <= known
    assert "pytest suites" in text
    env = yaml.safe_load(text)["jobs"]["gate"]["env"]
    from suites.limits import GateLimits

    gate_vars = {k for k in env if k.startswith("COSY_GATE_")}
    assert gate_vars <= {GateLimits.variable(f.name) for f in fields(GateLimits)}


def test_the_plugin_layout_table_names_every_module() -> None:
    """docs/plugin.md's 'Where the plugin's parts live' names each module of pytest_cosyvoice, and
    every module it names exists."""
    text = (ROOT / "docs" / "plugin.md").read_text(encoding="utf-8")
    section = text[text.index("## Where the plugin's parts live"):]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    named: set[str] = set()
    for line in table:
        where, what = line.split("|")[1:3]
        for token in re.findall(r"`([a-z_/]+(?:\.py)?)`", where):
            if token.endswith("/"):
                room = token.rstrip("/")
                named |= {f"{room}/{m}.py" for m in re.findall(r"`([a-z_]+)`", what)}
            else:
                named.add(token)
    actual = {str(p.relative_to(ROOT / "pytest_cosyvoice")) for p in (ROOT / "pytest_cosyvoice").rglob("*.py")
              if p.name != "__init__.py"}
    assert named == actual, f"named but missing: {sorted(named - actual)}; not named: {sorted(actual - named)}"
