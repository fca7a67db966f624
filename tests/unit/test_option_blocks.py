"""Typed option blocks: one model checks a block at config time (at its key path, references allowed in its
leaves), again once references are filled in, and when the operator builds it from the resolved values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.clients.http_api import auth_from_config
from b2b_integrations.config.http_options import AuthOptions, IncrementalOptions
from b2b_integrations.config.loader import load_project
from b2b_integrations.sources.incremental import incremental_from_config
from helpers import REPO, minimal_customer, shipped_template, write_include

IMPORT_STEP = {
    "id": "pull",
    "kind": "http_import",
    "connection": "api",
    "endpoint": "/contacts",
    "db_connection": "db",
    "table": "contacts",
    "key": ["id"],
    "schema": {"fields": [{"name": "id", "type": "integer"}]},
}


def _template(**options: Any) -> dict[str, Any]:
    return {
        "name": "pull",
        "config": {
            "auth_type": {"type": "string", "default": "bearer"},
            "since": {"type": "string", "default": "2024-01-01"},
        },
        "connections": {"api": {"type": "http"}, "db": {"type": "postgres"}},
        "flows": {
            "contacts": {
                "trigger": {"type": "schedule", "schedule": "@hourly"},
                "steps": [{**IMPORT_STEP, **options}],
            }
        },
    }


def _problems(tmp_path: Path, template: dict[str, Any], customer: dict[str, Any] | None = None) -> list[str]:
    customers = {"acme": customer} if customer else {}
    return [
        str(p)
        for p in load_project(write_include(tmp_path / "include", {"pull": template}, customers)).problems
    ]


def test_a_reference_leaf_loads_and_is_checked_once_filled_in(tmp_path: Path) -> None:
    template = _template(
        auth={"type": "${config.auth_type}"}, incremental={"cursor_field": "u", "param": "since"}
    )
    assert _problems(tmp_path, template) == []
    wrong = minimal_customer(
        integration="pull", config={"auth_type": "magic"}, connections={"api": "a", "db": "d"}
    )
    (problem,) = _problems(tmp_path, template, wrong)
    assert "customers/acme.yaml" in problem and "integrations.pull.config.auth_type" in problem
    assert "flow 'contacts' step 'pull'" in problem and "auth.type: auth type must be one of" in problem


@pytest.mark.parametrize(
    ("options", "key_path", "message"),
    [
        ({"auth": {"type": "magic"}}, "steps[0].auth.type", "auth type must be one of ['none', 'basic'"),
        ({"auth": {"type": "basic", "realm": "x"}}, "steps[0].auth", "unknown auth option(s) ['realm']"),
        ({"auth": {"type": "api_key", "header": ""}}, "steps[0].auth.header", "at least 1 character"),
        ({"incremental": {"cursor_field": "u"}}, "steps[0].incremental", "incremental needs ['param']"),
        ({"incremental": {"cursor_field": "u", "param": "p", "end": 1}}, "steps[0].incremental", "['end']"),
    ],
)
def test_a_wrong_leaf_is_reported_at_its_own_key_path(
    tmp_path: Path, options: dict[str, Any], key_path: str, message: str
) -> None:
    problems = _problems(tmp_path, _template(**options))
    assert any(f"flows.contacts.{key_path}: " in p and message in p for p in problems), problems


def test_blocks_dump_as_written_so_operators_get_the_template_s_options() -> None:
    assert AuthOptions.model_validate({"type": "bearer"}).model_dump() == {"type": "bearer"}
    assert IncrementalOptions(cursor_field="u", param="p").model_dump() == {"cursor_field": "u", "param": "p"}


def test_run_time_builders_validate_with_the_same_models() -> None:
    assert auth_from_config(None).header == "X-API-Key"
    assert auth_from_config({"type": "api_key", "header": "X-Key"}).header == "X-Key"
    with pytest.raises(ValueError, match=r"^auth.type: auth type must be one of"):
        auth_from_config({"type": "magic"})
    sync = incremental_from_config({"cursor_field": "u", "param": "p", "start": 5})
    assert sync is not None and sync.start == "5"


def test_the_json_schema_describes_every_key_of_the_typed_blocks() -> None:
    schema = json.loads((REPO / "include" / "schema" / "integration.schema.json").read_text())
    defs = schema["$defs"]
    for name in (
        "AuthOptions",
        "IncrementalOptions",
        "WebhookEventTarget",
        "ApiEventTarget",
        "RedisEventTarget",
    ):
        assert defs[name]["additionalProperties"] is False, name
    assert defs["HttpImportStep"]["properties"]["auth"]["$ref"] == "#/$defs/AuthOptions"
    # A leaf that is not text takes a reference as text: editors accept "${config.auth_type}" there.
    type_leaf = defs["AuthOptions"]["properties"]["type"]["anyOf"]
    assert {
        "enum": ["none", "basic", "api_key", "bearer", "oauth2_client_credentials"],
        "type": "string",
    } in type_leaf
    assert any(option.get("pattern") == r"\$\{" for option in type_leaf)
    customer = json.loads((REPO / "include" / "schema" / "customer.schema.json").read_text())
    assert customer["$defs"]["AlertOptions"]["additionalProperties"] is False


def test_shipped_templates_keep_their_option_blocks_as_written() -> None:
    from b2b_integrations.config.models import IntegrationTemplate

    raw = shipped_template("crm_contacts")
    template = IntegrationTemplate.model_validate(copy.deepcopy(raw))
    dumped = [s.model_dump(by_alias=True) for flow in template.flows.values() for s in flow.steps]
    written = [s for flow in raw["flows"].values() for s in flow["steps"]]
    for mine, theirs in zip(dumped, written, strict=True):
        for block in ("auth", "incremental"):
            if block in theirs:
                assert mine[block] == theirs[block], block


def test_a_file_format_takes_references_in_its_leaves_and_checks_the_rest() -> None:
    from b2b_integrations.config.format_options import FileFormat
    from b2b_integrations.formats.readers import options_from_dict

    written = {"format": "csv", "delimiter": "${config.delimiter}", "header": "${config.header}"}
    assert FileFormat.model_validate(written).model_dump() == written
    with pytest.raises(ValueError, match=r"^delimiter: delimiter must be a single character"):
        options_from_dict({"format": "csv", "delimiter": ";;"})
    with pytest.raises(ValueError, match=r"^columns are required when header is false"):
        options_from_dict({"format": "csv", "header": False})
    assert options_from_dict({"format": "tsv"}).effective_delimiter == "\t"


def test_render_is_typed_and_its_rules_across_keys_wait_for_references() -> None:
    from b2b_integrations.config.render_options import RenderOptions
    from b2b_integrations.reports.config import report_spec_from_config

    written = {
        "columns": ["a", {"name": "b", "decimals": "${config.decimals}"}],
        "csv": {"delimiter": "${config.d}"},
    }
    assert RenderOptions.model_validate(written).model_dump() == {
        "columns": [{"name": "a"}, {"name": "b", "decimals": "${config.decimals}"}],
        "csv": {"delimiter": "${config.d}"},
    }
    # The summary names a column that is not listed: reported only once nothing is left to fill in.
    RenderOptions.model_validate({**written, "summary": [{"op": "sum", "column": "c"}]})
    with pytest.raises(ValueError, match=r"^render.summary\[0\].column: column 'c' is not in render.columns"):
        report_spec_from_config("csv", {"columns": ["a"], "summary": [{"op": "sum", "column": "c"}]})
    with pytest.raises(ValueError, match=r"^render.csv.delimiter: expected one character"):
        report_spec_from_config("csv", {"csv": {"delimiter": ";;"}})
    assert report_spec_from_config("csv", {"csv": {"delimiter": "\t"}}).csv.delimiter == "\t"


def test_every_render_key_is_in_the_json_schema() -> None:
    defs = json.loads((REPO / "include" / "schema" / "integration.schema.json").read_text())["$defs"]
    for name in (
        "RenderOptions",
        "CsvRender",
        "XmlRender",
        "XlsxRender",
        "PageRender",
        "RenderChart",
        "SummaryFigure",
    ):
        assert defs[name]["additionalProperties"] is False, name
    assert set(defs["RenderOptions"]["properties"]) == {
        "title",
        "columns",
        "summary",
        "chart",
        "logo",
        "csv",
        "xml",
        "xlsx",
        "page",
    }
    quoting = defs["CsvRender"]["properties"]["quoting"]["anyOf"]
    assert any(o.get("enum") == ["minimal", "all", "nonnumeric", "none"] for o in quoting), quoting


def test_a_render_mistake_in_a_template_is_reported_at_its_key_path(tmp_path: Path) -> None:
    template = shipped_template("invoice_reports")
    step = next(s for f in template["flows"].values() for s in f["steps"] if s["kind"] == "report_export")
    step["render"] = {**step.get("render", {}), "page": {"size": "B5"}}
    problems = [
        str(p)
        for p in load_project(write_include(tmp_path / "include", {"invoice_reports": template})).problems
    ]
    assert any(
        ".render.page.size: expected one of ['A4', 'A3', 'letter', 'legal'], got 'B5'" in p for p in problems
    ), problems


def test_a_row_schema_keeps_the_form_it_was_written_in_and_names_the_field() -> None:
    from b2b_integrations.config.row_schema import RowSchemaOptions
    from b2b_integrations.formats.validation import schema_from_dict

    as_mapping = {"fields": {"id": {"type": "integer"}, "note": None}, "extra_fields": "reject"}
    assert RowSchemaOptions.model_validate(as_mapping).model_dump() == {
        "fields": {"id": {"type": "integer"}, "note": None},
        "extra_fields": "reject",
    }
    assert [rule.name for rule in schema_from_dict(as_mapping).fields] == ["id", "note"]
    with pytest.raises(ValueError, match=r"^schema.fields\[0\].type: field 'id': type must be one of"):
        schema_from_dict({"fields": [{"name": "id", "type": "int"}]})
    defs = json.loads((REPO / "include" / "schema" / "integration.schema.json").read_text())["$defs"]
    assert defs["FieldRuleOptions"]["additionalProperties"] is False
    assert defs["RowSchemaOptions"]["additionalProperties"] is False
