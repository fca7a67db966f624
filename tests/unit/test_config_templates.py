"""Integration templates: valid ones load; every kind of mistake is reported with file, line and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import Project, load_project
from helpers import REPO, minimal_customer, minimal_template, write_include


def load(tmp_path: Path, template: dict[str, Any] | str, name: str = "sync") -> Project:
    return load_project(write_include(tmp_path / "include", {name: template}))


def messages(project: Project) -> list[str]:
    return [str(p) for p in project.problems]


def test_shipped_include_folder_is_valid() -> None:
    project = load_project(REPO / "include")
    assert project.problems == []
    assert set(project.templates) >= {
        "inventory_sync",
        "crm_contacts",
        "billing_webhooks",
        "partner_orders_sftp",
        "invoice_reports",
        "orders",
        "crm_two_way",
        "crm_hybrid",
    }
    assert {c.customer.id for c in project.customers} == {"acme", "globex", "initech", "umbrella"}


def test_minimal_template_loads(tmp_path: Path) -> None:
    project = load(tmp_path, minimal_template())
    assert project.problems == []
    assert project.templates["sync"].flows["snapshot"].steps[1].kind == "load"


def _mutated(change: Any) -> dict[str, Any]:
    template = copy.deepcopy(minimal_template())
    change(template)
    return template


def _flow(t: dict[str, Any]) -> dict[str, Any]:
    return t["flows"]["snapshot"]


@pytest.mark.parametrize(
    ("change", "key_path", "expected"),
    [
        (lambda t: t.update(flws={}), "flws", "unknown key"),
        (
            lambda t: _flow(t)["trigger"].update(schedule="61 * * * *"),
            "flows.snapshot.trigger.schedule",
            "invalid cron",
        ),
        (
            lambda t: _flow(t)["trigger"].update(schedule="every hour"),
            "flows.snapshot.trigger.schedule",
            "5-field cron",
        ),
        (
            lambda t: _flow(t)["trigger"].update(schedule="@fortnightly"),
            "flows.snapshot.trigger.schedule",
            "unknown schedule preset",
        ),
        (
            lambda t: _flow(t).update(trigger={"type": "telepathy"}),
            "flows.snapshot.trigger.type",
            "unknown type",
        ),
        (
            lambda t: _flow(t)["steps"][1].pop("table"),
            "flows.snapshot.steps[1].table",
            "required key is missing",
        ),
        (
            lambda t: _flow(t)["steps"][1].update(kind="teleport"),
            "flows.snapshot.steps[1].kind",
            "unknown kind 'teleport'",
        ),
        (
            lambda t: _flow(t)["steps"][1].update(id="generate"),
            "flows.snapshot.steps[1].id",
            "duplicate step id 'generate'",
        ),
        (
            lambda t: _flow(t)["steps"][1].update(connection="warehouse"),
            "flows.snapshot.steps[1].connection",
            "unknown connection slot 'warehouse'",
        ),
        (lambda t: _flow(t)["steps"][1].update(key=[]), "flows.snapshot.steps[1]", "needs 'key'"),
        (
            lambda t: _flow(t)["steps"][1].update(table="levels; DROP TABLE x"),
            "flows.snapshot.steps[1].table",
            "should match pattern",
        ),
        (
            lambda t: _flow(t)["steps"][0]["options"].update(n="${config.missing}"),
            "flows.snapshot.steps[0].options.n",
            "unknown config name in reference 'missing'",
        ),
        (
            lambda t: _flow(t)["steps"][0]["options"].update(n="${secret.password}"),
            "flows.snapshot.steps[0].options.n",
            "malformed reference",
        ),
        (
            lambda t: _flow(t)["steps"][0].update(callable="os.system"),
            "flows.snapshot.steps[0].callable",
            "outside the allowed packages",
        ),
        (lambda t: _flow(t).update(steps=[]), "flows.snapshot.steps", "at least 1 item"),
        (
            lambda t: t["config"]["threshold"].update(default="ten"),
            "config.threshold",
            "default 'ten' is invalid: expected integer",
        ),
        (lambda t: t["config"]["threshold"].update(type="decimal"), "config.threshold.type", "decimal"),
        (
            lambda t: t["config"].update(Bad_Name={"type": "string"}),
            "config.Bad_Name",
            "invalid name 'Bad_Name': use lower_snake_case",
        ),
        (lambda t: t.update(flows={"a__b": _flow(t)}), "flows.a__b", "invalid name 'a__b'"),
        (lambda t: t.update(name="other"), "name", "must equal the file name 'sync'"),
    ],
)
def test_invalid_template_is_reported_precisely(
    tmp_path: Path, change: Any, key_path: str, expected: str
) -> None:
    project = load(tmp_path, _mutated(change))
    assert "sync" not in project.templates
    matching = [p for p in project.problems if p.key_path == key_path and expected in p.message]
    assert matching, f"no problem at {key_path!r} containing {expected!r} in {messages(project)}"
    assert matching[0].file == "include/integrations/sync.yaml"
    assert matching[0].line is not None


def test_asset_trigger_references_are_checked(tmp_path: Path) -> None:
    template = minimal_template()
    steps = _flow(template)["steps"]
    template["flows"].update(
        {
            "self_loop": {"trigger": {"type": "asset", "flow": "self_loop"}, "steps": steps},
            "dangling": {"trigger": {"type": "asset", "flow": "nowhere"}, "steps": steps},
            "ping": {"trigger": {"type": "asset", "flow": "pong"}, "steps": steps},
            "pong": {"trigger": {"type": "asset", "flow": "ping"}, "steps": steps},
        }
    )
    found = messages(load(tmp_path, template))
    assert any(
        "flows.self_loop.trigger.flow: a flow cannot be triggered by its own output" in m for m in found
    )
    assert any("flows.dangling.trigger.flow: unknown flow 'nowhere'" in m for m in found)
    assert sum("asset triggers form a cycle" in m for m in found) == 1


def test_every_problem_in_a_file_is_reported_not_just_the_first(tmp_path: Path) -> None:
    template = minimal_template()
    _flow(template)["steps"][1]["connection"] = "nope"
    _flow(template)["steps"][0]["options"]["x"] = "${config.nope}"
    template["flows"]["second"] = {
        "trigger": {"type": "asset", "flow": "missing"},
        "steps": _flow(template)["steps"],
    }
    paths = {p.key_path for p in load(tmp_path, template).problems}
    assert {
        "flows.snapshot.steps[1].connection",
        "flows.snapshot.steps[0].options.x",
        "flows.second.trigger.flow",
        "flows.second.steps[1].connection",
    } <= paths


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    project = load(tmp_path, "name: sync\nflows:\n  a: [\n")
    assert len(project.problems) == 1
    assert project.problems[0].line == 4 and "invalid YAML" in project.problems[0].message


def test_duplicate_yaml_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    text = "name: sync\nname: sync\nflows: {}\n"
    problem = load(tmp_path, text).problems[0]
    assert (problem.key_path, problem.line) == ("name", 2)
    assert "duplicate key" in problem.message


def test_non_mapping_document_is_rejected(tmp_path: Path) -> None:
    assert "expected a mapping" in load(tmp_path, "- just\n- a list\n").problems[0].message


def test_line_numbers_point_at_the_offending_key(tmp_path: Path) -> None:
    text = (
        (REPO / "include/integrations/inventory_sync.yaml")
        .read_text()
        .replace("        table: inventory_levels", "        tabel: inventory_levels")
    )
    project = load(tmp_path, text, name="inventory_sync")
    unknown = next(p for p in project.problems if p.key_path.endswith("tabel"))
    assert text.splitlines()[unknown.line - 1].strip().startswith("tabel:")


def test_transform_prefixes_are_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = minimal_template()
    _flow(template)["steps"][0]["callable"] = "acme_transforms.clean.run"
    assert load(tmp_path / "a", template).problems
    monkeypatch.setenv("B2B_TRANSFORM_PREFIXES", "acme_transforms")
    assert load(tmp_path / "b", template).problems == []


def test_customer_of_a_broken_template_names_the_template_file(tmp_path: Path) -> None:
    broken = minimal_template()
    broken["flows"] = "not a mapping"
    include = write_include(tmp_path / "include", {"sync": broken}, {"acme": minimal_customer()})
    found = messages(load_project(include))
    assert any(
        "include/customers/acme.yaml" in m
        and "integration template 'sync' is invalid (see include/integrations/sync.yaml)" in m
        for m in found
    )


def _sftp_template(**step_overrides: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "import_files",
        "kind": "sftp_import",
        "connection": "sftp",
        "folder": "/in",
        "format": {"format": "csv", "delimiter": ";"},
        "schema": {"fields": [{"name": "id", "type": "integer", "required": True}]},
        "db_connection": "db",
        "table": "orders",
        "key": ["id"],
    }
    step.update(step_overrides)
    return {
        "name": "files",
        "connections": {"sftp": {"type": "sftp"}, "db": {"type": "postgres"}},
        "flows": {"orders": {"trigger": {"type": "schedule", "schedule": "15m"}, "steps": [step]}},
    }


def test_sftp_import_step_is_checked_at_config_time(tmp_path: Path) -> None:
    assert load(tmp_path / "ok", _sftp_template(), name="files").problems == []
    cases = {
        "bad-format": (
            _sftp_template(format={"format": "pdf"}),
            "flows.orders.steps[0].format.format",
            "pdf",
        ),
        "bad-schema-type": (
            _sftp_template(schema={"fields": [{"name": "id", "type": "money"}]}),
            "flows.orders.steps[0].schema.fields[0].type",
            "field 'id': type must be one of",
        ),
        "unknown-db-slot": (
            _sftp_template(db_connection="warehouse"),
            "flows.orders.steps[0].db_connection",
            "unknown connection slot",
        ),
        "folder-escape": (
            _sftp_template(failed_folder="../x"),
            "flows.orders.steps[0].failed_folder",
            "pattern",
        ),
    }
    for case, (template, key_path, expected) in cases.items():
        project = load(tmp_path / case, template, name="files")
        assert any(p.key_path == key_path and expected in p.message for p in project.problems), (
            case,
            messages(project),
        )


def test_field_formats_are_checked_at_their_key_paths(tmp_path: Path) -> None:
    fields = [
        {"name": "id", "type": "integer", "required": True},
        {"name": "day", "type": "date", "format": "%d.%m.%Y"},
        {"name": "amount", "type": "number", "decimal_separator": ",", "thousands_separator": "."},
    ]
    good = _sftp_template(schema={"fields": fields, "decimal_separator": ",", "thousands_separator": " "})
    assert load(tmp_path / "ok", good, name="files").problems == []
    at = "flows.orders.steps[0].schema"
    cases = {
        "no-year": ({"fields": [fields[0], {**fields[1], "format": "%d.%m"}]}, f"{at}.fields[1].format", "year"),
        "not-a-date": ({"fields": [fields[0], {"name": "day", "format": "%d"}]}, f"{at}.fields[1].format", "string"),
        "separator": ({"fields": [{**fields[2], "decimal_separator": ";"}]}, f"{at}.fields[0].decimal_separator", "';'"),
        "same": ({"fields": [fields[0]], "thousands_separator": "."}, f"{at}.thousands_separator", "decimal"),
        "mapping": ({"fields": {"day": {"type": "date", "format": 3}}}, f"{at}.fields.day.format", "string"),
    }  # fmt: skip
    for case, (schema, key_path, expected) in cases.items():
        project = load(tmp_path / case, _sftp_template(schema=schema), name="files")
        assert [(p.key_path, expected in p.message) for p in project.problems] == [(key_path, True)], (
            case,
            messages(project),
        )


def test_field_formats_given_by_reference_are_checked_with_each_customers_values(tmp_path: Path) -> None:
    day = {"name": "day", "type": "date", "format": "${config.day_format}"}
    template = _sftp_template(schema={"fields": [day], "decimal_separator": "${config.decimal}"})
    template["config"] = {
        "day_format": {"type": "string", "default": "%d.%m.%Y"},
        "decimal": {"type": "string", "default": ","},
    }
    entry = {
        "config": {"day_format": "%m.%Y", "decimal": ","},
        "connections": {"sftp": "a_sftp", "db": "a_db"},
    }
    customer = {"id": "acme", "name": "Acme", "integrations": {"files": entry}}
    project = load_project(write_include(tmp_path / "include", {"files": template}, {"acme": customer}))
    assert [
        (p.file, "schema.fields.0.format" in p.message, "whole date" in p.message) for p in project.problems
    ] == [("include/customers/acme.yaml", True, True)], messages(project)


def test_a_report_transform_must_come_from_an_allowed_package(tmp_path: Path) -> None:
    template = minimal_template()
    _flow(template)["steps"].append(
        {
            "id": "render",
            "kind": "report_export",
            "report": "levels",
            "format": "csv",
            "transform": "os.system",
        }
    )
    (problem,) = load(tmp_path, template).problems
    assert (
        problem.key_path.endswith("steps[2].transform") and "outside the allowed packages" in problem.message
    )


def _api_template(pagination: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "api",
        "config": {"page_size": {"type": "integer", "default": 50}},
        "connections": {"api": {"type": "http"}, "db": {"type": "postgres"}},
        "flows": {
            "pull": {
                "trigger": {"type": "schedule", "schedule": "@hourly"},
                "steps": [
                    {
                        "id": "fetch",
                        "kind": "http_import",
                        "connection": "api",
                        "endpoint": "/items",
                        "pagination": pagination,
                        "schema": {"fields": [{"name": "id", "type": "integer"}]},
                        "db_connection": "db",
                        "table": "items",
                        "key": ["id"],
                    }
                ],
            }
        },
    }


@pytest.mark.parametrize(
    ("pagination", "key_path", "expected"),
    [
        # a typo beside a ${...}: reported at the typo's own key, not at the step
        (
            {"style": "cursor", "next_cursor_pth": "next", "limit": "${config.page_size}"},
            "flows.pull.steps[0].pagination.next_cursor_pth",
            "unknown key",
        ),
        ({"style": "pages"}, "flows.pull.steps[0].pagination.style", "unknown style 'pages'"),
        (
            {"style": "offset", "limit": 0},
            "flows.pull.steps[0].pagination.limit",
            "integer >= 1",
        ),
        ({"style": "offset", "limit": "ten"}, "flows.pull.steps[0].pagination.limit", "got 'ten'"),
    ],
)
def test_pagination_options_are_typed_per_style(
    tmp_path: Path, pagination: dict[str, Any], key_path: str, expected: str
) -> None:
    problems = load(tmp_path, _api_template(pagination), name="api").problems
    assert any(p.key_path == key_path and expected in p.message for p in problems), [str(p) for p in problems]


def test_pagination_leaves_may_hold_references_checked_once_filled_in(tmp_path: Path) -> None:
    ok = {"style": "page_number", "page_size": "${config.page_size}", "page_param": "p"}
    assert load(tmp_path / "ok", _api_template(ok), name="api").problems == []
    include = write_include(
        tmp_path / "bad",
        {"api": _api_template(ok)},
        {"acme": {"id": "acme", "name": "Acme", "integrations": {"api": {
            "config": {"page_size": 0}, "connections": {"api": "acme_api", "db": "acme_db"}}}}},
    )  # fmt: skip
    (problem,) = load_project(include).problems
    assert problem.key_path == "integrations.api.config.page_size" and "page_size" in problem.message


def test_a_broken_flow_costs_only_that_flow_and_the_flows_chained_on_it(tmp_path: Path) -> None:
    from b2b_integrations.factory.planner import plan_project

    template = minimal_template()
    good = copy.deepcopy(_flow(template))
    broken = copy.deepcopy(good)
    broken["steps"][0]["callable"] = "os.system"  # outside the allowed packages
    broken["steps"][1]["tabel"] = "typo"  # and an unknown key: a pydantic error inside the flow
    chained = {"trigger": {"type": "asset", "flow": "orders"}, "steps": [good["steps"][1]]}
    template["flows"] = {"snapshot": good, "orders": broken, "after_orders": chained}
    customer = minimal_customer(flows={"orders": {"enabled": False}})
    project = load_project(write_include(tmp_path / "include", {"sync": template}, {"acme": customer}))
    problems = {(p.key_path, p.message.split(";")[0]) for p in project.problems}
    assert (
        "flows.orders.steps[1].tabel",
        "unknown key (check the spelling against the documented keys)",
    ) in problems
    assert (
        "flows.after_orders.trigger.flow",
        "runs on the output of flow 'orders', which has problems: not built either",
    ) in problems
    assert all(p.file == "include/integrations/sync.yaml" for p in project.problems)  # acme's file is fine
    assert [plan.dag_id for plan in plan_project(project)] == ["acme__sync__snapshot"]


def test_a_problem_outside_the_flows_still_costs_the_template(tmp_path: Path) -> None:
    template = minimal_template()
    template["connections"]["db"]["tipe"] = "postgres"
    project = load_project(
        write_include(tmp_path / "include", {"sync": template}, {"acme": minimal_customer()})
    )
    assert "sync" not in project.templates
    assert any("integration template 'sync' is invalid" in p.message for p in project.problems)
