"""The validation CLI and the published JSON Schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from b2b_integrations.cli import main
from b2b_integrations.config.schema import SCHEMA_FILES, render
from helpers import REPO, minimal_customer, minimal_template, write_include


def test_validate_clean_folder_exits_0(capsys) -> None:
    assert main(["validate", str(REPO / "include")]) == 0
    out = capsys.readouterr().out
    from b2b_integrations.config.loader import load_project
    from b2b_integrations.factory.planner import plan_project

    planned = len(plan_project(load_project(REPO / "include")))
    assert "0 errors" in out and f"{planned} DAGs would be generated" in out


def test_validate_prints_every_problem_in_every_file_and_exits_1(tmp_path: Path, capsys) -> None:
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template(), "bad": "name: bad\nflows: {x: 1}\n"},
        {
            "acme": minimal_customer("acme", config={"region": "mars", "threshold": "x"}),
            "globex": minimal_customer("globex", integration="nope"),
        },
    )
    assert main(["validate", str(include)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.out.splitlines() if line.startswith("error: ")]
    assert any("include/integrations/bad.yaml:2: flows.x" in e for e in errors)
    assert any("include/customers/acme.yaml:6: integrations.sync.config.region" in e for e in errors)
    assert any("include/customers/acme.yaml:" in e and "config.threshold" in e for e in errors)
    assert any("include/customers/globex.yaml:" in e and "unknown integration 'nope'" in e for e in errors)
    assert "4 files checked: 4 errors" in captured.err


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "validate", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "include folder does not exist" in result.stdout


def test_published_schemas_are_in_sync_with_the_models() -> None:
    for name, model in SCHEMA_FILES.items():
        published = (REPO / "include" / "schema" / name).read_text(encoding="utf-8")
        assert published == render(model), (
            f"include/schema/{name} is stale: run python -m b2b_integrations schema"
        )


def test_schema_describes_step_kinds_for_editors() -> None:
    schema = json.loads((REPO / "include" / "schema" / "integration.schema.json").read_text())
    kinds = {d["properties"]["kind"]["const"] for n, d in schema["$defs"].items() if n.endswith("Step")}
    assert {
        "transform",
        "load",
        "http_import",
        "sftp_import",
        "report_export",
        "deliver",
        "deliver_events",
    } <= kinds


def test_the_entry_module_does_nothing_when_airflows_plugin_loader_imports_it() -> None:
    """Without plugins/.airflowignore, Airflow imports every .py under plugins/ as module "__main__"."""
    import importlib.machinery
    import importlib.util

    path = REPO / "plugins" / "b2b_integrations" / "__main__.py"
    loader = importlib.machinery.SourceFileLoader("__main__", str(path))
    spec = importlib.util.spec_from_loader("__main__", loader)
    assert spec is not None
    loader.exec_module(importlib.util.module_from_spec(spec))  # would raise SystemExit if main() ran
