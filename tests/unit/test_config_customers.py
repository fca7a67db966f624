"""Customer files: values are checked against the template's declarations, each problem located."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import Project, load_project
from helpers import minimal_customer, minimal_template, write_include


def load(
    tmp_path: Path, customer: dict[str, Any] | str, customer_id: str = "acme", **templates: Any
) -> Project:
    templates = templates or {"sync": minimal_template()}
    return load_project(write_include(tmp_path / "include", templates, {customer_id: customer}))


def only_problem(project: Project) -> tuple[str, str]:
    assert len(project.problems) == 1, [str(p) for p in project.problems]
    problem = project.problems[0]
    assert problem.file == "include/customers/acme.yaml" and problem.line is not None
    return problem.key_path, problem.message


def test_valid_customer_loads(tmp_path: Path) -> None:
    project = load(tmp_path, minimal_customer())
    assert project.problems == []
    assert list(project.customers[0].integrations) == ["sync"]


@pytest.mark.parametrize(
    ("settings", "key_path", "expected"),
    [
        (
            {"config": {"region": "eu", "threshold": "ten"}},
            "integrations.sync.config.threshold",
            "expected integer, got str 'ten'",
        ),
        (
            {"config": {"region": "eu", "threshold": True}},
            "integrations.sync.config.threshold",
            "expected integer, got bool",
        ),
        ({"config": {"region": "eu", "threshold": -1}}, "integrations.sync.config.threshold", "must be >= 0"),
        ({"config": {"region": "apac"}}, "integrations.sync.config.region", "expected one of ['eu', 'us']"),
        (
            {"config": {"region": "eu", "colour": "red"}},
            "integrations.sync.config.colour",
            "unknown config variable 'colour' of integration 'sync'",
        ),
        ({"config": {}}, "integrations.sync.config", "missing required value 'region'"),
        (
            {"config": {"region": "eu", "label": "{{ conn.db.password }}"}},
            "integrations.sync.config.label",
            "Jinja markers",
        ),
        (
            {"connections": {}},
            "integrations.sync.connections",
            "missing connection id for required slot 'db'",
        ),
        (
            {"connections": {"db": "x", "ftp": "y"}},
            "integrations.sync.connections.ftp",
            "unknown connection slot 'ftp'",
        ),
        (
            {"connections": {"db": "bad id!"}},
            "integrations.sync.connections.db",
            "invalid Airflow connection id",
        ),
        ({"flows": {"nightly": {}}}, "integrations.sync.flows.nightly", "unknown flow 'nightly'"),
        (
            {"flows": {"snapshot": {"schedule": "0 25 * * *"}}},
            "integrations.sync.flows.snapshot.schedule",
            "invalid cron",
        ),
        (
            {"flows": {"snapshot": {"enabeld": False}}},
            "integrations.sync.flows.snapshot.enabeld",
            "unknown key",
        ),
        ({"enabled": "sometimes"}, "integrations.sync.enabled", "valid boolean"),
    ],
)
def test_invalid_customer_settings(
    tmp_path: Path, settings: dict[str, Any], key_path: str, expected: str
) -> None:
    project = load(tmp_path, minimal_customer(**settings))
    path, message = only_problem(project)
    assert path == key_path and expected in message, (path, message)
    assert project.customers[0].integrations == {}  # the broken integration builds nothing


def test_unknown_integration(tmp_path: Path) -> None:
    path, message = only_problem(load(tmp_path, minimal_customer(integration="crm")))
    assert path == "integrations.crm"
    assert "unknown integration 'crm'; expected one of ['sync']" in message


def test_schedule_override_needs_a_scheduled_flow(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["snapshot"]["trigger"] = {"type": "manual"}
    project = load(tmp_path, minimal_customer(flows={"snapshot": {"schedule": "@daily"}}), sync=template)
    path, message = only_problem(project)
    assert path == "integrations.sync.flows.snapshot.schedule" and "no schedule to override" in message


def test_customer_id_must_match_file_name(tmp_path: Path) -> None:
    path, message = only_problem(load(tmp_path, minimal_customer(customer_id="acme_corp")))
    assert path == "id" and "must equal the file name 'acme'" in message


def test_customer_name_cannot_smuggle_jinja(tmp_path: Path) -> None:
    customer = minimal_customer()
    customer["name"] = "Acme {{ conn.other_db.password }}"
    path, message = only_problem(load(tmp_path, customer))
    assert path == "name" and "Jinja markers" in message


def test_customer_header_errors(tmp_path: Path) -> None:
    customer = minimal_customer()
    del customer["name"]
    customer["id"] = "Acme"
    project = load(tmp_path, customer)
    assert {p.key_path for p in project.problems} == {"name", "id"}
    assert project.customers == []


def test_one_bad_integration_keeps_the_customers_other_integrations(tmp_path: Path) -> None:
    customer = minimal_customer()
    customer["integrations"]["other"] = {"config": {"region": "mars"}, "connections": {"db": "x"}}
    project = load(tmp_path, customer, sync=minimal_template(), other=minimal_template("other"))
    assert [p.key_path for p in project.problems] == ["integrations.other.config.region"]
    assert list(project.customers[0].integrations) == ["sync"]


def test_defaults_fill_missing_optional_values(tmp_path: Path) -> None:
    project = load(tmp_path, minimal_customer())
    settings = project.customers[0].integrations["sync"]
    assert "threshold" not in settings.config  # default applied at planning, see test_planner
    assert project.templates["sync"].config["threshold"].default == 10


def test_bad_alert_settings_are_a_located_problem(tmp_path: Path) -> None:
    customer = minimal_customer()
    customer["alerts"] = {"slack": "acme_slack", "pager": "x"}
    project = load_project(
        write_include(tmp_path / "include", {"sync": minimal_template()}, {"acme": customer})
    )
    (problem,) = project.problems
    assert problem.key_path == "alerts" and "unknown key(s) pager" in problem.message


def test_duplicate_key_inside_one_integration_costs_only_that_integration(tmp_path: Path) -> None:
    text = (
        "id: acme\nname: Acme\nintegrations:\n"
        "  sync:\n    config: {region: eu}\n    connections: {db: acme_db}\n"
        "  other:\n    config:\n      region: eu\n      region: us\n    connections: {db: acme_db}\n"
    )
    project = load(tmp_path, text, sync=minimal_template(), other=minimal_template("other"))
    assert [(p.key_path, p.line) for p in project.problems] == [("integrations.other.config.region", 10)]
    assert "duplicate key" in project.problems[0].message
    assert list(project.customers[0].integrations) == ["sync"]


def test_duplicate_key_in_the_customer_header_costs_the_customer(tmp_path: Path) -> None:
    text = "id: acme\nname: Acme\nname: Acme Corp\nintegrations:\n  sync: {config: {region: eu}, connections: {db: a}}\n"
    project = load(tmp_path, text)
    assert [(p.key_path, p.line) for p in project.problems] == [("name", 3)]
    assert project.customers == []


def test_a_broken_file_falls_back_to_its_last_valid_copy_whole(tmp_path: Path) -> None:
    from b2b_integrations.config.last_valid import LastValidStore

    store = LastValidStore(tmp_path / "last_valid")
    include = write_include(tmp_path / "include", {"sync": minimal_template()}, {"acme": minimal_customer()})
    project = load_project(include, last_valid=store)
    assert project.problems == [] and project.on_last_valid == {}
    for kind, name, path in project.valid_files:
        store.save(kind, name, path)
    broken = minimal_customer(config={"region": "eu", "threshold": -1})
    write_include(include, customers={"acme": broken})
    project = load_project(include, last_valid=store)
    assert "include/customers/acme.yaml" in project.on_last_valid
    assert project.customers[0].integrations["sync"].config == {"region": "eu"}  # the copy, not the edit
    messages = [p.message for p in project.problems]
    assert any("keep running on the last valid version" in m for m in messages)
    assert any("threshold" in p.key_path for p in project.problems)
    # A copy that no longer loads (here: its template now requires a value it lacks) is not used.
    template = minimal_template()
    template["config"]["label"].pop("default")
    write_include(include, {"sync": template})
    project = load_project(include, last_valid=store)
    assert project.customers[0].integrations == {} and project.on_last_valid == {}
    assert any("does not load either" in w.message for w in project.warnings)


def _sftp_template(**encoding: Any) -> dict[str, Any]:
    from helpers import shipped_template

    template = shipped_template("partner_orders_sftp")
    template["config"]["encoding"] = {"type": "string", **encoding}
    return template


def _sftp_customer(**config: Any) -> dict[str, Any]:
    return {
        "id": "acme",
        "name": "Acme",
        "integrations": {
            "partner_orders_sftp": {
                "config": config,
                "connections": {"partner_sftp": "acme_sftp", "app_db": "acme_db"},
            }
        },
    }


def test_option_blocks_with_references_are_checked_with_the_customers_values(tmp_path: Path) -> None:
    """A ${config.*} inside a block no longer hides that block from validation (checked per customer)."""
    project = load(tmp_path, _sftp_customer(encoding="no-such-codec"), partner_orders_sftp=_sftp_template())
    key_path, message = only_problem(project)
    assert key_path == "integrations.partner_orders_sftp.config.encoding"
    assert "flow 'orders' step" in message and "config.encoding='no-such-codec'" in message
    assert "unknown encoding 'no-such-codec'" in message
    assert project.customers[0].integrations == {}
    # The same customer with a codec that exists is fine.
    assert (
        load(
            tmp_path / "ok", _sftp_customer(encoding="latin-1"), partner_orders_sftp=_sftp_template()
        ).problems
        == []
    )


def test_a_typo_beside_a_reference_is_reported_on_the_template(tmp_path: Path) -> None:
    template = _sftp_template(default="utf-8")
    step = next(s for s in template["flows"]["orders"]["steps"] if s["kind"] == "sftp_import")
    step["format"]["bogus"] = 1
    project = load(tmp_path, _sftp_customer(), partner_orders_sftp=template)
    template_problems = [p for p in project.problems if p.file.endswith("partner_orders_sftp.yaml")]
    assert len(template_problems) == 1, [str(p) for p in project.problems]
    problem = template_problems[0]
    # The typed block checks its keys while a leaf still holds a reference: no need to fill it in first.
    assert problem.key_path == "flows.orders.steps[0].format" and problem.line is not None
    assert "unknown format option(s) ['bogus']" in problem.message
