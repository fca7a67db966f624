"""Import layering: lower layers never import upper ones (module-level imports, read with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from b2b_integrations.naming import dag_id_for, split_dag_id
from helpers import REPO

PACKAGE = REPO / "plugins" / "b2b_integrations"


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("b2b_integrations")}


def test_naming_is_the_ground_floor() -> None:
    assert _imports(PACKAGE / "naming.py", module_level_only=False) == set()


def test_the_inbox_position_and_quarantine_sit_below_the_operators() -> None:
    assert _imports(PACKAGE / "inbox.py", module_level_only=False) == {"b2b_integrations.staging"}
    # Quarantine replay reads inbox messages from inbox.py, not from an operator module.
    assert "operators.base import inbox_messages" not in (PACKAGE / "state" / "quarantine.py").read_text()


@pytest.mark.parametrize("folder", ["sync", "webhooks", "events", "instances"])
def test_the_api_side_spells_names_without_the_planner(folder: str) -> None:
    for path in (PACKAGE / folder).glob("*.py"):
        imported = _imports(path, module_level_only=False)
        # plan_project itself is fine (replay, observe plan the project); names come from naming.py.
        source = path.read_text(encoding="utf-8")
        assert "planner import dag_id_for" not in source and "planner import inbox_asset" not in source, path
        assert "planner import DAG_ID_SEPARATOR" not in source, (path, imported)


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("config", ("b2b_integrations.operators", "b2b_integrations.factory", "b2b_integrations.api")),
        ("formats", ("b2b_integrations.operators", "b2b_integrations.factory", "b2b_integrations.api")),
        ("reports", ("b2b_integrations.operators", "b2b_integrations.factory", "b2b_integrations.api")),
        # The sync protocol and callback delivery sit below the operator that sends the callback.
        ("sync", ("b2b_integrations.operators",)),
    ],
)
def test_lower_layers_never_import_upper_ones(lower: str, upper: tuple[str, ...]) -> None:
    for path in (PACKAGE / lower).glob("*.py"):
        wrong = sorted(name for name in _imports(path, module_level_only=False) if name.startswith(upper))
        assert wrong == [], (path.name, wrong)


# What the operators are built from, and what drives them: replay sits beside the CLI, so the ledgers, the
# inbox and the event delivery it uses never import the planner or an operator to replay.
BUILDING_BLOCKS = (
    "config", "formats", "reports", "sync", "state", "events", "webhooks", "sinks", "sources", "clients",
    "delivery", "net", "triggers",
)  # fmt: skip
DRIVERS = ("operators", "factory", "api", "replay", "cli", "pages", "instances", "monitors")


@pytest.mark.parametrize("lower", BUILDING_BLOCKS)
def test_building_blocks_never_import_what_drives_them(lower: str) -> None:
    for path in (PACKAGE / lower).glob("*.py"):
        imported = _imports(path, module_level_only=False)
        wrong = sorted(name for name in imported if name.split(".")[1] in DRIVERS)
        assert wrong == [], (f"{lower}/{path.name}", wrong)


def test_option_models_do_not_import_the_run_time_builders_at_module_level() -> None:
    # The typed blocks are the one validator: the builders (formats, hooks, sources, reports) import them.
    for name in ("options", "http_options", "format_options", "render_options", "row_schema", "alerts"):
        imported = _imports(PACKAGE / "config" / f"{name}.py", module_level_only=True)
        runtime = ("b2b_integrations.formats", "b2b_integrations.clients", "b2b_integrations.sources")
        assert not [m for m in imported if m.startswith(runtime)], (name, imported)


def test_a_dag_id_splits_back_into_its_names() -> None:
    assert split_dag_id(dag_id_for("acme", "crm_contacts", "sync")) == ("acme", "crm_contacts", "sync")
    assert split_dag_id("b2b_app__outbox") is None
    assert split_dag_id("acme__crm____sync") is None
