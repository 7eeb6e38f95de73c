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


def test_readme_package_bullet_lists_every_registered_marker() -> None:
    """The package bullet near the top names the markers: exactly the registered ones."""
    bullet = re.search(r"^- `pytest_cosyvoice`, the plugin .*?\n(?=\n|- )", README, re.M | re.S)
    assert bullet, "README has no `pytest_cosyvoice` package bullet"
    listed = re.search(r"markers ((?:`\w+`(?:, )?)+)", bullet.group(0).replace("\n  ", " "))
    assert listed, "the package bullet lists no markers"
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(MARKER_HELP)


QUOTED = "## The figures the README quotes"


def _quoted_rows() -> list[dict[str, str]]:
    text = DOCS["reports.md"]
    section = text[text.index(QUOTED):]
    section = section[:section.index("\n## ", 1)]
    lines = [ln for ln in section.splitlines() if ln.startswith("| `")]
    names = ["file", "condition", "scope", "verdict", "count", "of", "share", "ci"]
    return [dict(zip(names, (c.strip().strip("`") for c in ln.strip("|").split("|")), strict=True)) for ln in lines]


def test_the_quoted_figures_table_is_recounted_from_the_kept_results() -> None:
    """docs/reports.md's table of the figures the README quotes: each count recounted from the raw
    results it names, and its share and Clopper-Pearson 95 % interval recomputed."""
    import json

    from scipy.stats import binomtest

    rows = _quoted_rows()
    assert len(rows) >= 6
    for row in rows:
        runs = [r for r in json.loads((ROOT / "benchmarks" / "results" / row["file"]).read_text())
                if r["label"] == row["condition"]]
        assert runs, f"{row['file']} has no runs labelled {row['condition']!r}"
        if row["scope"] == "per test":
            verdicts = [v for r in runs for v in r["verdicts"].values()]
        else:
            assert row["scope"] == "pooled", row
            verdicts = [r["pooled_verdict"]["RTF"] for r in runs]
        k, n = sum(v == row["verdict"] for v in verdicts), len(verdicts)
        assert (int(row["count"]), int(row["of"])) == (k, n), row
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert row["share"] == f"{100 * k / n:.1f} %", row
        assert row["ci"] == f"{100 * ci.low:.1f}-{100 * ci.high:.1f} %", row


def test_every_verdict_figure_the_readme_quotes_is_in_the_table() -> None:
    """Each 'k of n ... (low-high %)' in the README's paragraph on what the verdicts are worth is a row of
    the table in docs/reports.md, and the paragraph links that table."""
    start = README.index("What the verdicts are worth on real reruns")
    paragraph = README[start:README.index("\n\n", start)].replace("\n", " ")
    assert "docs/reports.md#the-figures-the-readme-quotes" in paragraph
    quoted = re.findall(r"(\d+) of (\d+)[^()]*?\((?:95 % CI )?(\d+\.\d-\d+\.\d %)\)", paragraph)
    assert len(quoted) >= 4, quoted
    table = {(r["count"], r["of"], r["ci"]) for r in _quoted_rows()}
    missing = [q for q in quoted if q not in table]
    assert not missing, f"README quotes figures that are not in docs/reports.md's table: {missing}"
    # Every measured rate (one decimal, as the table gives them) is one of those intervals' ends.
    ends = {e for q in quoted for e in q[2].rstrip(" %").split("-")}
    stray = [p for p in re.findall(r"(\d+\.\d+) %", paragraph) if p not in ends]
    assert not stray, f"README's verdict paragraph quotes rates without a row: {stray}"


def test_ab_headline_examples_can_happen() -> None:
    """Every 'over N tests, M pairs' example can come out of the suites: N at most their RTF tests, and M
    a sum of N per-test pair counts at the default looks (10 or 20, plus 30 or 60 for a candidate)."""
    import ast

    from pytest_cosyvoice.tracking.paired import Rule
    from suites.inputs import TEXTS

    rtf_marked = [p for p in (ROOT / "suites").glob("test_*.py") if "mark.rtf" in p.read_text(encoding="utf-8")]
    assert [p.name for p in rtf_marked] == ["test_modes.py"]
    # test_modes.py reads the gate limits at import (only under pytest's configure): read MODES from its source.
    tree = ast.parse(rtf_marked[0].read_text(encoding="utf-8"))
    modes = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "MODES" for t in node.targets))
    stream = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "test_stream")
    assert "rtf" in ast.unparse(stream.decorator_list[1]), "test_stream is the RTF test"
    rtf_tests = len(modes) * len(TEXTS)           # test_stream: every mode x every text
    assert f"suites' {rtf_tests} RTF tests" in README
    # A test ends at a screen look, or at a screen look plus a confirmation look (fresh pairs).
    rule = Rule()
    per_test = set(rule.screen_looks) | {s + c for s in rule.screen_looks for c in rule.confirm_looks}
    examples = [(name, int(n), int(m)) for name, text in (("README.md", README), *DOCS.items())
                for n, m in re.findall(r"over (\d+) tests, (\d+) pairs", text)]
    assert examples
    for name, n, m in examples:
        assert n <= rtf_tests, (name, n, m)
        sums = {0}
        for _ in range(n):
            sums = {a + b for a in sums for b in per_test}
        assert m in sums, (name, n, m)


def test_a_new_checkpoint_ab_leaves_the_quality_module_out() -> None:
    """In A/B mode the quality tests compare each call with the base's same-seed call; with other weights
    every one would fail. The docs' and workflow's new-checkpoint runs deselect them by their mark, which
    only the quality module carries."""
    marked = [p.name for p in (ROOT / "suites").glob("*.py") if "mark.quality" in p.read_text(encoding="utf-8")]
    assert marked == ["test_quality.py"]
    gpu = DOCS["gpu-ci.md"].replace("\n  ", " ")
    command = re.search(r"`--cosy-model \S+ --cosy-base-model \S+ ([^`]*)`", gpu)
    assert command and command.group(1) == '-m "not quality"', command
    workflow = (ROOT / "docs" / "examples" / "gpu-gate.yml").read_text(encoding="utf-8")
    assert re.search(r"--cosy-base-model \S+ AND -m \"not quality\"", workflow)


def test_gpu_docs_thresholds_are_the_workflows() -> None:
    """The gate variables docs/gpu-ci.md suggests for a GPU runner are the example workflow's gate job's."""
    import yaml

    suggested = dict(re.findall(r"(COSY_GATE_[A-Z_]+)=([0-9.]+)", DOCS["gpu-ci.md"]))
    assert len(suggested) >= 5
    env = yaml.safe_load((ROOT / "docs" / "examples" / "gpu-gate.yml").read_text())["jobs"]["gate"]["env"]
    assert {k: v for k, v in env.items() if k.startswith("COSY_GATE_")} == suggested


def test_baseline_lock_files_stay_out_of_git() -> None:
    """The stores lock `<file>.lock` beside each baseline and goldens folder (baselines/<runner>/...): the
    repository ignores them at any depth, and the workflow's commit step leaves them out."""
    import shutil
    import subprocess

    from pytest_cosyvoice.tracking.baseline import BaselineStore
    from pytest_cosyvoice.tracking.goldens import GoldenStore
    from pytest_cosyvoice.tracking.runkey import RunKey

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: .gitignore cannot be asked")
    key = RunKey(runner="r1", device_kind="cpu", dtype="fp32", engine="fixed", model_name="m", model_hash="0" * 10)
    for path in (BaselineStore(ROOT / "baselines").path_for(key), GoldenStore(ROOT / "baselines").path_for(key)):
        lock = path.with_name(path.name + ".lock").relative_to(ROOT)
        kept = path.relative_to(ROOT)
        ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", str(lock)], cwd=ROOT).returncode
        assert ignored == 0, f"{lock} is not ignored by .gitignore"
        assert subprocess.run(["git", "check-ignore", "--no-index", "-q", str(kept)], cwd=ROOT).returncode == 1, kept
    workflow = (ROOT / "docs" / "examples" / "gpu-gate.yml").read_text(encoding="utf-8")
    assert "git add baselines/ ':(exclude)baselines/**/*.lock'" in workflow


def test_readme_first_quality_session_counts_the_quality_module() -> None:
    """'17 passed' / '17 without golden' in the README is the quality module's test count: every mode x
    length x (streamed, not) and voice conversion, read from the module's source."""
    import ast

    source = (ROOT / "suites" / "test_quality.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    lists = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    tests = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            count = 1
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "pytest.mark.parametrize":
                    values = deco.args[1]
                    count *= len(lists[values.id] if isinstance(values, ast.Name) else ast.literal_eval(values))
            tests += count
    assert f"`{tests} passed` for the quality module" in README
    assert f"`{tests} without golden`" in README
