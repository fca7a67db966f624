"""Template versions side by side: customers pinned to a version are checked against it and built from it;
version files and ``upgrade`` blocks are checked like any template, with file, line and key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from b2b_integrations.config.last_valid import LastValidStore
from b2b_integrations.config.live import deployed_flows
from b2b_integrations.config.loader import (
    Project,
    check_customer_text,
    load_customer_project,
    load_project,
    version_sort_key,
)
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.factory.shards import fingerprints
from helpers import REPO, minimal_customer, minimal_template, write_include


def v1_template() -> dict[str, Any]:
    """Version 1 of ``sync``: its label variable was called ``old_label``."""
    template = minimal_template(version="1")
    template["config"]["old_label"] = template["config"].pop("label")
    return template


def v2_template(**upgrade: Any) -> dict[str, Any]:
    return minimal_template(version="2", upgrade=upgrade or {"renames": {"config": {"old_label": "label"}}})


def write_version(include: Path, name: str, version: str, template: dict[str, Any] | str) -> Path:
    folder = include / "integrations" / "versions" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{version}.yaml"
    path.write_text(template if isinstance(template, str) else yaml.safe_dump(template), encoding="utf-8")
    return path


def pinned(customer_id: str, version: Any, **config: Any) -> dict[str, Any]:
    return minimal_customer(customer_id, version=version, config={"region": "eu", **config})


@pytest.fixture
def include(tmp_path: Path) -> Path:
    """``sync`` at version 2, its version 1 beside it; acme pinned to 1, globex on the current file."""
    root = write_include(
        tmp_path / "include",
        {"sync": v2_template()},
        {"acme": pinned("acme", "1", old_label="from-v1"), "globex": minimal_customer("globex")},
    )
    write_version(root, "sync", "1", v1_template())
    return root


def messages(project: Project) -> list[str]:
    return [str(p) for p in project.problems]


def test_pinned_customer_is_built_from_its_version_with_the_same_dag_ids(include: Path) -> None:
    project = load_project(include)
    assert project.problems == []
    assert project.versions_of("sync") == ["1", "2"]
    plans = {plan.dag_id: plan for plan in plan_project(project)}
    assert set(plans) == {"acme__sync__snapshot", "globex__sync__snapshot"}
    assert plans["acme__sync__snapshot"].params["old_label"]["default"] == "from-v1"
    assert "label" not in plans["acme__sync__snapshot"].params
    assert "`sync` version 1" in plans["acme__sync__snapshot"].doc_md
    assert plans["globex__sync__snapshot"].params["label"]["default"] == "main"
    # The webhook/sync routes see the same template per customer.
    flows = {flow.customer_id: flow for flow in deployed_flows(project)}
    assert flows["acme"].config["old_label"] == "from-v1" and "label" not in flows["acme"].config


def test_a_pin_to_the_current_version_or_an_unquoted_number_is_the_current_file(include: Path) -> None:
    write_include(include, customers={"acme": pinned("acme", 2, label="x")})  # YAML int 2 -> "2"
    project = load_project(include)
    assert project.problems == []
    assert plan_project(project)[0].params["label"]["default"] == "x"


def test_unknown_version_is_reported_at_the_pin_naming_the_available_versions(include: Path) -> None:
    write_include(include, customers={"acme": pinned("acme", "7")})
    project = load_project(include)
    assert messages(project) == [
        "include/customers/acme.yaml:9: integrations.sync.version: unknown version '7' of integration "
        "'sync'; available: ['1', '2']"
    ]
    assert {plan.customer_id for plan in plan_project(project)} == {"globex"}


def test_values_are_checked_against_the_pinned_version(include: Path) -> None:
    # v1 has no variable "label": acme's value for it is unknown there.
    write_include(include, customers={"acme": pinned("acme", "1", label="x")})
    assert messages(load_project(include)) == [
        "include/customers/acme.yaml:7: integrations.sync.config.label: unknown config variable 'label' of "
        "integration 'sync'; expected one of ['old_label', 'region', 'threshold']"
    ]
    text = yaml.safe_dump(pinned("acme", "1", label="x"))
    assert [p.key_path for p in check_customer_text(include, "acme", text)] == [
        "integrations.sync.config.label"
    ]
    assert check_customer_text(include, "acme", yaml.safe_dump(pinned("acme", "1"))) == []


@pytest.mark.parametrize(
    ("change", "key_path", "expected"),
    [
        (lambda t: t.update(name="other"), "name", "must equal its folder's name 'sync'"),
        (lambda t: t.update(version="3"), "version", "version '3' must equal the file name '1'"),
        (lambda t: t.update(version="2"), "version", "version '2' must equal the file name '1'"),
        (
            lambda t: t["flows"]["snapshot"]["steps"][1].update(kind="lode"),
            "flows.snapshot.steps[1].kind",
            "lode",
        ),
    ],
)
def test_version_files_are_checked_like_templates(
    include: Path, change: Any, key_path: str, expected: str
) -> None:
    template = v1_template()
    change(template)
    write_version(include, "sync", "1", template)
    project = load_project(include)
    found = [p for p in project.problems if p.file == "include/integrations/versions/sync/1.yaml"]
    assert any(p.key_path == key_path and expected in p.message and p.line for p in found), messages(project)
    assert (
        "include/customers/acme.yaml:10: integrations.sync.version: version '1' of integration 'sync' is "
        "invalid (see include/integrations/versions/sync/1.yaml)" in "\n".join(messages(project))
    )
    assert {plan.customer_id for plan in plan_project(project)} == {"globex"}  # globex is on the current file


def test_a_version_file_repeating_the_current_version_is_refused(include: Path) -> None:
    write_version(include, "sync", "2", v2_template())
    found = [str(p) for p in load_project(include).problems]
    assert any("versions/sync/2.yaml" in p and "is also the current file's version" in p for p in found)


def test_a_version_file_name_customers_could_not_pin_is_refused(include: Path) -> None:
    write_version(include, "sync", "_x", minimal_template(version="_x"))
    assert any("invalid version file name '_x'" in p for p in messages(load_project(include)))


@pytest.mark.parametrize(
    ("upgrade", "key_path", "expected"),
    [
        (
            {"renames": {"config": {"old_label": "lable"}}},
            "upgrade.renames.config.old_label",
            "unknown config variable 'lable'",
        ),
        (
            {"renames": {"config": {"label": "region"}}},
            "upgrade.renames.config.label",
            "'label' is still a config variable",
        ),
        (
            {"renames": {"connections": {"database": "dbx"}}},
            "upgrade.renames.connections.database",
            "unknown connection slot 'dbx'",
        ),
        (
            {"renames": {"config": {"a": "label", "b": "label"}}},
            "upgrade.renames.config.b",
            "'a' is renamed to 'label' too",
        ),
        ({"defaults": {"threshold": -1}}, "upgrade.defaults.threshold", "must be >= 0"),
        ({"defaults": {"nope": 1}}, "upgrade.defaults.nope", "unknown config variable 'nope'"),
        ({"renamez": {}}, "upgrade.renamez", "unknown key"),
    ],
)
def test_upgrade_blocks_are_checked(
    tmp_path: Path, upgrade: dict[str, Any], key_path: str, expected: str
) -> None:
    include = write_include(tmp_path / "include", {"sync": v2_template(**upgrade)})
    found = load_project(include).problems
    assert [(p.key_path, expected in p.message, p.line is not None) for p in found] == [
        (key_path, True, True)
    ], found


def test_task_parse_load_reads_the_pinned_version(include: Path) -> None:
    project = load_customer_project(include, "acme")
    assert project.problems == [] and project.files_checked == 3  # acme, sync.yaml, versions/sync/1.yaml
    assert [plan.params["old_label"]["default"] for plan in plan_project(project)] == ["from-v1"]


def test_a_broken_version_file_runs_on_its_last_valid_copy(include: Path, tmp_path: Path) -> None:
    store = LastValidStore(tmp_path / "last_valid")
    project = load_project(include, last_valid=store)
    for kind, name, path in project.valid_files:
        store.save(kind, name, path)
    assert (tmp_path / "last_valid" / "integrations" / "versions" / "sync" / "1.yaml").is_file()
    broken = v1_template()
    broken["flows"]["snapshot"]["steps"][1]["kind"] = "lode"
    write_version(include, "sync", "1", broken)
    project = load_project(include, last_valid=store)
    assert any(
        p.file == "include/integrations/versions/sync/1.yaml"
        and "keep running on the last valid version" in p.message
        for p in project.problems
    )
    acme = [plan for plan in plan_project(project) if plan.customer_id == "acme"]
    assert [plan.params["old_label"]["default"] for plan in acme] == ["from-v1"]


def test_shard_fingerprint_follows_version_files(include: Path) -> None:
    before = fingerprints(include, 1, None)
    write_version(include, "sync", "1", {**v1_template(), "description": "edited"})
    assert fingerprints(include, 1, None) != before


def test_version_order_compares_numbers_as_numbers() -> None:
    assert sorted(["1.10", "1.9", "2", "1.9.1", "10"], key=version_sort_key) == [
        "1.9",
        "1.9.1",
        "1.10",
        "2",
        "10",
    ]


def test_shipped_version_is_pinned_by_a_demo_customer() -> None:
    project = load_project(REPO / "include")
    assert project.versions_of("crm_contacts") == ["1", "2"]
    acme = next(c for c in project.customers if c.customer.id == "acme")
    assert acme.integrations["crm_contacts"].version == "1"
    assert (
        project.template_for("crm_contacts", acme.integrations["crm_contacts"])
        is (project.template_versions["crm_contacts"]["1"])
    )
    current = project.templates["crm_contacts"]
    assert current.upgrade is not None and current.upgrade.renames.config == {"page_limit": "page_size"}
