"""Rollouts between template versions on real files: the dry run checks every affected instance with the
loader and changes nothing; the real rollout writes the ok ones through the instance store (ETag-guarded,
history kept), on the shipped templates and on ones that make instances fail."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from b2b_integrations.cli import main
from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.instances.history import History
from b2b_integrations.instances.rollout import apply_rollout, plan_rollout
from b2b_integrations.instances.store import InstanceStore
from helpers import REPO, minimal_customer, minimal_template, write_include


def _snapshot(include: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(include.rglob("*.yaml"))}


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include)
    return include


def test_dry_run_then_rollout_of_the_shipped_crm_contacts_from_1_to_2(shipped: Path, tmp_path: Path) -> None:
    before = _snapshot(shipped)
    plan = plan_rollout(shipped, "crm_contacts", "2")
    assert plan.ok and plan.problems == [] and [i.customer for i in plan.items] == ["acme"]
    item = plan.items[0]
    assert (item.from_version, item.to_version, item.file) == ("1", "2", "include/customers/acme.yaml")
    assert item.settings["version"] == "2" and item.settings["config"] == {"page_size": 200}
    assert {c["path"]: (c.get("from"), c.get("to")) for c in item.changes} == {
        "config.page_limit": (200, None),
        "config.page_size": (None, 200),
        "version": ("1", "2"),
    }
    assert _snapshot(shipped) == before  # planning wrote nothing

    store = InstanceStore(shipped, History(tmp_path / "history"))
    outcomes = apply_rollout(store, plan, actor="ops@example.com")
    assert [(o.item.customer, o.applied) for o in outcomes] == [("acme", True)]
    project = load_project(shipped)
    assert project.problems == []
    acme = {p.dag_id: p for p in plan_project(project) if p.customer_id == "acme"}
    assert acme["acme__crm_contacts__contacts"].params["page_size"]["default"] == 200
    assert "page_limit" not in acme["acme__crm_contacts__contacts"].params
    latest = store.versions("acme", "crm_contacts")[-1]
    assert (latest.by, latest.action, latest.number) == ("ops@example.com", "rollout", outcomes[0].version)
    # The other instances of acme and the other customers' files are untouched.
    after = _snapshot(shipped)
    assert {p for p in after if after[p] != before[p]} == {str(shipped / "customers" / "acme.yaml")}
    # Done once: a second plan has nothing left to move.
    again = plan_rollout(shipped, "crm_contacts", "2")
    assert again.items == [] and again.unchanged == ["acme"]
    # A rollback is a rollout to version 1, whose upgrade block renames the value back.
    back = plan_rollout(shipped, "crm_contacts", "1")
    assert back.ok and back.items[0].settings["config"] == {"page_limit": 200}
    assert [o.applied for o in apply_rollout(store, back, actor="ops@example.com")] == [True]
    assert load_project(shipped).problems == [] and _snapshot(shipped) != after


def _templates(include: Path, v2: dict[str, Any]) -> None:
    """``sync``: current file at version 2 (``v2``), version 1 = the minimal template."""
    write_include(include, {"sync": v2})
    folder = include / "integrations" / "versions" / "sync"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.yaml").write_text(yaml.safe_dump(minimal_template(version="1")), encoding="utf-8")


def _customers(include: Path, **customers: dict[str, Any]) -> None:
    write_include(include, customers=customers)


def _with_new_required_variable(**upgrade: Any) -> dict[str, Any]:
    template = minimal_template(version="2", upgrade=upgrade)
    template["config"]["warehouse"] = {"type": "string", "description": "Warehouse code."}  # no default
    return template


def test_dry_run_lists_every_instance_that_would_fail_and_why(tmp_path: Path) -> None:
    include = tmp_path / "include"
    _templates(include, _with_new_required_variable())
    _customers(
        include,
        acme=minimal_customer("acme", version="1"),
        globex=minimal_customer("globex", version="1", config={"region": "eu", "warehouse": "W1"}),
        initech=minimal_customer(
            "initech", version="1", config={"region": "eu", "threshold": 3, "colour": "red"}
        ),
    )
    before = _snapshot(include)
    plan = plan_rollout(include, "sync", "2")
    assert not plan.ok
    verdicts = {i.customer: [str(p) for p in i.problems] for i in plan.items}
    assert verdicts["globex"] == []
    assert verdicts["acme"] == [
        "include/customers/acme.yaml:5: integrations.sync.config: missing required value 'warehouse' of type "
        "string (Warehouse code.)"
    ]
    assert any(
        "integrations.sync.config.colour: unknown config variable 'colour'" in p for p in verdicts["initech"]
    )
    assert _snapshot(include) == before

    outcomes = apply_rollout(InstanceStore(include, History(tmp_path / "history")), plan, actor="t")
    assert {o.item.customer: o.applied for o in outcomes} == {"acme": False, "globex": True, "initech": False}
    assert [o.reason for o in outcomes if not o.applied] == ["would fail", "would fail"]
    after = _snapshot(include)
    assert {Path(p).name for p in after if after[p] != before[p]} == {"globex.yaml"}


def test_upgrade_defaults_and_renames_carry_instances_over(tmp_path: Path) -> None:
    include = tmp_path / "include"
    v2 = _with_new_required_variable(
        defaults={"warehouse": "MAIN"}, renames={"connections": {"database": "db"}}
    )
    _templates(include, v2)
    old = minimal_template(version="1")
    old["connections"] = {"database": {"type": "postgres"}}
    old["flows"]["snapshot"]["steps"][1]["connection"] = "database"
    (include / "integrations" / "versions" / "sync" / "1.yaml").write_text(
        yaml.safe_dump(old), encoding="utf-8"
    )
    _customers(include, acme=minimal_customer("acme", version="1", connections={"database": "acme_db"}))
    assert load_project(include).problems == []
    plan = plan_rollout(include, "sync", "2")
    assert plan.ok, [str(p) for i in plan.items for p in i.problems]
    assert plan.items[0].settings == {
        "version": "2",
        "config": {"region": "eu", "warehouse": "MAIN"},
        "connections": {"db": "acme_db"},
    }


def test_an_unreadable_customer_file_is_named_and_does_not_stop_the_others(tmp_path: Path) -> None:
    include = tmp_path / "include"
    _templates(include, minimal_template(version="2"))
    _customers(include, acme=minimal_customer("acme", version="1"), globex="id: globex\nname: [unclosed\n")
    plan = plan_rollout(include, "sync", "2")
    assert [i.customer for i in plan.items] == ["acme"] and plan.items[0].ok and not plan.ok
    assert [(p.file, "cannot be read" in p.message) for p in plan.unreadable] == [
        ("include/customers/globex.yaml", True)
    ]
    outcomes = apply_rollout(InstanceStore(include, History(tmp_path / "history")), plan, actor="t")
    assert [o.applied for o in outcomes] == [True]


def test_an_instance_changed_after_the_plan_is_not_overwritten(tmp_path: Path) -> None:
    include = tmp_path / "include"
    _templates(include, minimal_template(version="2"))
    _customers(
        include, acme=minimal_customer("acme", version="1"), globex=minimal_customer("globex", version="1")
    )
    plan = plan_rollout(include, "sync", "2")
    store = InstanceStore(include, History(tmp_path / "history"))
    edited = store.update(
        "acme",
        "sync",
        lambda s: {**s, "config": {"region": "us"}},
        if_match=None,
        actor="someone",
        action="update",
    )
    outcomes = {o.item.customer: o for o in apply_rollout(store, plan, actor="t")}
    assert not outcomes["acme"].applied and "changed since the plan" in outcomes["acme"].reason
    assert outcomes["globex"].applied
    assert store.get("acme", "sync").etag == edited.etag  # the concurrent edit stands, still on version 1


def test_plan_refuses_unknown_versions_and_customers_and_can_be_narrowed(tmp_path: Path) -> None:
    include = tmp_path / "include"
    _templates(include, minimal_template(version="2"))
    _customers(
        include,
        acme=minimal_customer("acme", version="1"),
        globex=minimal_customer("globex"),  # unpinned: on the current file, version 2
        initech=minimal_customer("initech", version="2"),
        umbrella=minimal_customer("umbrella", "other"),
    )
    assert [str(p) for p in plan_rollout(include, "sync", "9").problems] == [
        "sync: version: unknown version '9' of integration 'sync'; available: ['1', '2']"
    ]
    narrowed = plan_rollout(include, "sync", "2", customers=["acme", "nobody", "umbrella"])
    assert [i.customer for i in narrowed.items] == ["acme"]
    assert sorted(p.message for p in narrowed.problems) == [
        "customer 'umbrella' has no 'sync'",
        "no such customer",
    ]
    full = plan_rollout(include, "sync", "2")
    assert full.unchanged == ["initech"]
    globex = next(i for i in full.items if i.customer == "globex")
    assert (globex.from_version, globex.pinned, globex.changes) == (
        "2",
        False,
        [{"path": "version", "to": "2"}],
    )
    back = plan_rollout(include, "sync", "1")  # a rollback is a rollout to the older version
    assert sorted(i.customer for i in back.items) == ["globex", "initech"] and back.ok


def test_cli_rollout_dry_run_and_real_run(
    shipped: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("B2B_INSTANCES_HISTORY_DIR", str(tmp_path / "history"))
    before = _snapshot(shipped)
    args = ["rollout", "crm_contacts", "--to", "2", "--include-dir", str(shipped)]
    assert main([*args, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert (
        "acme: crm_contacts 1 -> 2: ok\n  config.page_limit: 200 -> (removed)\n  config.page_size: (unset) -> 200"
        in out
    )
    assert "1 instance(s) of crm_contacts to version 2: 0 failing (dry run: nothing written)" in err
    assert _snapshot(shipped) == before
    assert main([*args, "--customer", "acme", "--actor", "cli:test"]) == 0
    out, _ = capsys.readouterr()
    assert "acme: crm_contacts 1 -> 2: applied (instance version 2)" in out
    assert (
        yaml.safe_load((shipped / "customers" / "acme.yaml").read_text())["integrations"]["crm_contacts"][
            "version"
        ]
        == "2"
    )
    assert main(["rollout", "crm_contacts", "--to", "7", "--include-dir", str(shipped)]) == 1
    assert (
        "unknown version '7' of integration 'crm_contacts'; available: ['1', '2']" in capsys.readouterr().err
    )
