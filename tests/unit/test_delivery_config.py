"""Delivery targets without servers: config validation, naming, placeholders, ids, and the deliver step's plan."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import load_project
from b2b_integrations.delivery.base import DeliveryContext, ReportFile, delivery_id
from b2b_integrations.delivery.config import parse_targets
from b2b_integrations.delivery.messages import check_file_name, check_template, render
from b2b_integrations.delivery.slack import base_url, message_text, webhook_url
from b2b_integrations.delivery.smtp import address_list, html_body, message_id
from b2b_integrations.errors import FatalStepError
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.operators.deliver import force_requested, is_true
from helpers import write_include

SFTP = {"type": "sftp", "connection": "partner_sftp", "folder": "/outbox"}
EMAIL = {"type": "email", "connection": "smtp", "to": ["ap@example.com"]}
SLACK = {"type": "slack", "connection": "slack", "mode": "upload", "channel": "C0123ABCD"}
HTTP = {"type": "http", "connection": "upload_api", "endpoint": "/reports", "method": "PUT", "mode": "raw"}
LOCAL = {"type": "local", "path": "/data/exports"}


def names(raw: list[dict[str, Any]]) -> list[str]:
    return [t.target_name for t in parse_targets(raw)]


def problem(raw: list[dict[str, Any]]) -> str:
    with pytest.raises(ValueError) as caught:
        parse_targets(raw)
    return str(caught.value)


# ------------------------------------------------------------------------------------------------- naming


def test_unnamed_targets_are_named_after_their_type_with_a_suffix_from_the_second_on() -> None:
    assert names([SFTP, EMAIL, SLACK, HTTP, LOCAL]) == ["sftp", "email", "slack", "http", "local"]
    assert names([EMAIL, SFTP, EMAIL, EMAIL]) == ["email", "sftp", "email_2", "email_3"]


def test_appending_a_target_does_not_rename_the_earlier_ones() -> None:
    assert names([EMAIL]) == ["email"]
    assert names([EMAIL, EMAIL])[0] == "email"


def test_explicit_names_win_and_do_not_count_for_the_suffix() -> None:
    assert names([{**EMAIL, "name": "finance"}, EMAIL, EMAIL]) == ["finance", "email", "email_2"]


def test_duplicate_names_are_refused_with_their_positions() -> None:
    message = problem([{**SFTP, "name": "email_2"}, EMAIL, EMAIL])
    assert "'email_2' is used by targets [0, 2]" in message and "explicit 'name'" in message
    assert "[0, 1]" in problem([{**SFTP, "name": "out"}, {**LOCAL, "name": "out"}])


def test_names_must_be_identifiers() -> None:
    assert "targets[0].name" in problem([{**SFTP, "name": "Partner SFTP"}])


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("target", "where", "expected"),
    [
        ({**EMAIL, "to": "not-an-address"}, "targets[0].to", "not an email address"),
        ({**EMAIL, "to": []}, "targets[0]", "at least one address"),
        ({**EMAIL, "subject": "{report} for {perod}"}, "targets[0].subject", "unknown placeholder(s) {perod}"),
        ({**EMAIL, "max_attachment_mb": 0}, "targets[0].max_attachment_mb", "greater than 0"),
        ({**SFTP, "folder": ""}, "targets[0].folder", "at least 1 character"),
        ({"type": "sftp", "folder": "/outbox"}, "targets[0].connection", "Field required"),
        ({**SFTP, "file_name": "../etc/passwd"}, "targets[0].file_name", "not a plain file name"),
        ({**SFTP, "colour": "blue"}, "targets[0].colour", "Extra inputs are not permitted"),
        ({**SLACK, "channel": None}, "targets[0]", "needs 'channel'"),
        ({**SLACK, "channel": "#general"}, "targets[0]", "not a Slack channel id"),
        ({**SLACK, "mode": "webhook"}, "targets[0]", "remove 'channel'"),
        ({**SLACK, "mode": "dm"}, "targets[0].mode", "'webhook' or 'upload'"),
        ({**HTTP, "form": {"a": "b"}}, "targets[0]", "only sent in mode 'multipart'"),
        ({**HTTP, "headers": {"Authorization": "Bearer x"}}, "targets[0]", "carry credentials"),
        ({**HTTP, "auth": {"type": "magic"}}, "targets[0].auth.type", "auth type must be one of"),
        ({**HTTP, "method": "GET"}, "targets[0].method", "'POST' or 'PUT'"),
        ({**HTTP, "mode": "multipart", "form": {"file": "x"}}, "targets[0]", "the name of the file field"),
        ({**LOCAL, "timeout": 5}, "targets[0].timeout", "Extra inputs are not permitted"),
        ({**SFTP, "timeout": 0}, "targets[0].timeout", "greater than 0"),
        ({"type": "ftp", "connection": "x"}, "targets[0]", "does not match any of the expected tags"),
    ],
)  # fmt: skip
def test_invalid_target_options_are_explained_at_their_position(
    target: dict[str, Any], where: str, expected: str
) -> None:
    message = problem([LOCAL, target]).replace("targets[1]", "targets[0]")
    assert f"{where}: " in message and expected in message


def test_a_file_name_with_placeholders_is_checked_once_rendered() -> None:
    assert names([{**SFTP, "file_name": "{report}/{period}.pdf"}]) == ["sftp"]  # see the context test below


def test_addresses_may_be_one_string_and_references_are_checked_once_resolved() -> None:
    email = parse_targets([{**EMAIL, "to": "ap@example.com; cfo@example.com", "cc": "x@example.com"}])[0]
    assert email.to == ["ap@example.com", "cfo@example.com"] and email.cc == ["x@example.com"]  # type: ignore[attr-defined]
    deferred = parse_targets([{**EMAIL, "to": "${config.ap_emails}", "from_email": "${config.sender}"}])[0]
    assert deferred.to == "${config.ap_emails}"  # type: ignore[attr-defined]
    assert address_list("a@x.io, b@x.io") == ["a@x.io", "b@x.io"]


# ------------------------------------------------------------------------------------------- placeholders


SUMMARY = {"Total revenue": 1234.5, "Invoices": 12}
VALUES = {"customer": "acme", "report": "invoices", "period": "2025-01-31", "rows": 12}


def test_placeholders_are_filled_with_report_values_and_summary_figures() -> None:
    text = "{customer}: {report} for {period}, {rows} rows, revenue {summary.Total revenue}"
    assert render(text, VALUES, SUMMARY) == "acme: invoices for 2025-01-31, 12 rows, revenue 1234.5"
    assert render("Figures:\n{summary}", VALUES, SUMMARY) == "Figures:\nTotal revenue: 1234.5\nInvoices: 12"


def test_a_figure_kept_per_currency_is_written_per_currency() -> None:
    summary = {"Total amount": {"EUR": 1300.49, "USD": 20.0}, "Invoices": 3}
    assert render("{summary.Total amount}", VALUES, summary) == "EUR 1300.49, USD 20.0"
    assert render("{summary}", VALUES, summary) == "Total amount: EUR 1300.49, USD 20.0\nInvoices: 3"


def test_braces_that_are_not_placeholders_stay_as_written() -> None:
    text = 'JSON {"a": 1}, Jinja {{ ds }}, empty {}'
    check_template(text)
    assert render(text, VALUES, SUMMARY) == text


def test_a_summary_label_the_report_lacks_is_an_error_naming_what_it_has() -> None:
    with pytest.raises(
        ValueError, match=r"no summary figure 'Revenue' \(it has: 'Total revenue', 'Invoices'\)"
    ):
        render("{summary.Revenue}", VALUES, SUMMARY)


def test_unknown_placeholders_are_listed_with_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        check_template("{client} {period} {row}")
    message = str(caught.value)
    assert "{client}, {row}" in message and "{customer}" in message and "{summary.<label>}" in message


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b.pdf", "a\\b.pdf", "a\nb.pdf", "x" * 256])
def test_file_names_must_be_plain(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        check_file_name(name)


def test_report_file_from_xcom(tmp_path: Path) -> None:
    path = tmp_path / "r.pdf"
    path.write_bytes(b"%PDF-1.7 test")
    xcom = {"file": str(path), "name": "r.pdf", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size, "report": "invoices", "period": "2025-01-31", "rows": 3,
            "summary": SUMMARY, "format": "pdf", "content_type": "application/pdf"}  # fmt: skip
    report = ReportFile.from_xcom(xcom)
    report.verify()
    assert (report.rows, report.summary, report.content_type) == (3, SUMMARY, "application/pdf")
    with pytest.raises(ValueError, match=r"has no \['sha256'\]"):
        ReportFile.from_xcom({**xcom, "sha256": ""})
    with pytest.raises(ValueError, match="not a plain file name"):
        ReportFile.from_xcom({**xcom, "name": "../r.pdf"})
    with pytest.raises(ValueError, match="got list"):
        ReportFile.from_xcom([xcom])
    path.write_bytes(b"%PDF-1.7 TEST")  # same size, other content
    with pytest.raises(FatalStepError, match="changed since the report step wrote it"):
        report.verify()


def test_delivery_context_renders_file_names_and_url_paths(tmp_path: Path) -> None:
    report = ReportFile(tmp_path / "r.pdf", "r.pdf", "0" * 64, 10, "sales report", "2025-01-31", format="pdf")
    context = DeliveryContext("acme", "reports", "monthly", "id", log=None)
    assert context.file_name("{customer}_{period}.{format}", report) == "acme_2025-01-31.pdf"
    assert context.file_name(None, report) == "r.pdf"
    assert (
        context.render("/up/{report}/{period}", report, "r.pdf", quote=True)
        == "/up/sales%20report/2025-01-31"
    )
    with pytest.raises(FatalStepError, match="not a plain file name"):
        context.file_name("{report}/x.pdf", report.__class__(**{**report.__dict__, "report": "a/b"}))
    context.protect("s3cr3t-token", None, "")
    assert context.redact("Bearer s3cr3t-token rejected") == "Bearer *** rejected"


# ---------------------------------------------------------------------------------------- ids and texts


def test_delivery_ids_are_stable_per_key_and_new_per_forced_resend() -> None:
    key = ("acme", "reports", "invoices", "2025-01-31", "email")
    assert delivery_id(*key, generation=0) == delivery_id(*key, generation=0)
    assert delivery_id(*key, generation=0) != delivery_id(*key, generation=1)
    assert delivery_id(*key, generation=0) != delivery_id(*key[:4], "email_2", generation=0)
    assert delivery_id("a", "bc", "d", "e", "f", 0) != delivery_id("ab", "c", "d", "e", "f", 0)
    assert message_id("abc123", "Reports <reports@b2b.example>") == "<b2b.abc123@b2b.example>"


def test_texts_for_email_and_slack() -> None:
    assert html_body("Total: <1>\nBye") == (
        '<html><body><div style="white-space: pre-wrap; font-family: sans-serif">Total: &lt;1&gt;\nBye</div>'
        "</body></html>"
    )
    assert (
        message_text("Report ready", "https://portal.example/r/1")
        == "Report ready\nhttps://portal.example/r/1"
    )
    assert base_url(None, None, "https://slack.com/api") == "https://slack.com/api"
    assert base_url("http://127.0.0.1:9000/api/", None, "x") == "http://127.0.0.1:9000/api"
    assert base_url("slack.example", 8443, "x") == "https://slack.example:8443"
    assert (
        webhook_url("https://hooks.slack.com/services/T/B/X", None, None)
        == "https://hooks.slack.com/services/T/B/X"
    )
    assert webhook_url("T/B/X", None, None) == "https://hooks.slack.com/services/T/B/X"
    with pytest.raises(FatalStepError, match="no password"):
        webhook_url(None, None, None)


class _Run:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf


def test_force_resend_is_an_explicit_opt_in() -> None:
    assert [is_true(v) for v in (True, "True", " yes ", 1, "1")] == [True] * 5
    assert [is_true(v) for v in (False, "False", "", None, 0, 2, "no")] == [False] * 7
    assert force_requested(False, {}) is None
    assert force_requested(False, {"params": {"force_resend": False}, "dag_run": _Run({})}) is None
    assert force_requested("{{ x }}", {}) is None
    assert force_requested("true", {}) == "the force argument"
    assert force_requested(False, {"params": {"force_resend": True}}) == "params['force_resend']"
    assert (
        force_requested(False, {"dag_run": _Run({"force_resend": "true"})})
        == "the run's conf['force_resend']"
    )


# ---------------------------------------------------------------------------------- the deliver step kind


TEMPLATE: dict[str, Any] = {
    "name": "reports",
    "config": {"ap_email": {"type": "string", "default": "ap@example.com"}},
    "connections": {
        "app_db": {"type": "postgres"},
        "partner_sftp": {"type": "sftp"},
        "smtp": {"type": "smtp"},
    },
    "flows": {
        "monthly": {
            "trigger": {"type": "schedule", "schedule": "@monthly"},
            "steps": [
                {"id": "render", "kind": "transform", "callable": "b2b_integrations.transforms.demo.generate_inventory"},
                {
                    "id": "send",
                    "kind": "deliver",
                    "db_connection": "app_db",
                    "targets": [
                        {"type": "sftp", "connection": "partner_sftp", "folder": "/outbox"},
                        {"type": "email", "connection": "smtp", "to": "${config.ap_email}", "subject": "{report}"},
                        {"type": "email", "connection": "smtp", "to": ["cfo@example.com"], "name": "cfo"},
                        {"type": "local", "path": "/data/exports/${customer.id}"},
                    ],
                },
            ],
        }
    },
}  # fmt: skip
CUSTOMER = {
    "id": "acme",
    "name": "Acme",
    "integrations": {
        "reports": {"connections": {"app_db": "acme_db", "partner_sftp": "acme_sftp", "smtp": "acme_smtp"}}
    },
}


def test_a_deliver_step_plans_with_each_target_bound_to_the_customers_connection(tmp_path: Path) -> None:
    project = load_project(write_include(tmp_path / "include", {"reports": TEMPLATE}, {"acme": CUSTOMER}))
    assert project.problems == [], [str(p) for p in project.problems]
    (plan,) = plan_project(project)
    send = plan.tasks[1]
    assert send.operator == "b2b_integrations.operators.deliver.DeliverOperator"
    arguments = send.arguments
    assert arguments["db_conn_id"] == "acme_db" and "db_connection" not in arguments
    assert arguments["target_conn_ids"] == {"sftp": "acme_sftp", "email": "acme_smtp", "cfo": "acme_smtp"}
    assert [t["name"] for t in arguments["targets"]] == ["sftp", "email", "cfo", "local"]
    assert arguments["targets"][1]["to"] == "ap@example.com"
    assert arguments["targets"][3]["path"] == "/data/exports/acme"
    assert arguments["input_task_id"] == "render"
    # ${config.*} is re-resolved from the run's params; the slot stays a slot there, the ids come from the map.
    assert arguments["config_refs"]["targets"][1]["to"] == "${config.ap_email}"
    assert not [p for p in project.problems if "not yet available" in p.message]


def test_target_connection_slots_are_validated_with_their_key_path(tmp_path: Path) -> None:
    template = copy.deepcopy(TEMPLATE)
    targets = template["flows"]["monthly"]["steps"][1]["targets"]
    targets[0]["connection"] = "partner_ftp"
    targets[1]["to"] = "${config.ap_mail}"
    project = load_project(write_include(tmp_path / "include", {"reports": template}))
    found = {p.key_path: p.message for p in project.problems}
    assert "unknown connection slot 'partner_ftp'" in found["flows.monthly.steps[1].targets[0].connection"]
    assert "ap_mail" in found["flows.monthly.steps[1].targets[1].to"]


def test_bad_target_options_are_config_problems_at_their_key_path(tmp_path: Path) -> None:
    template = copy.deepcopy(TEMPLATE)
    template["flows"]["monthly"]["steps"][1]["targets"][2]["subject"] = "{report} for {periode}"
    project = load_project(write_include(tmp_path / "bad_option", {"reports": template}))
    messages = {p.key_path: p.message for p in project.problems}
    assert "{periode}" in messages["flows.monthly.steps[1].targets[2].subject"]

    template = copy.deepcopy(TEMPLATE)
    template["flows"]["monthly"]["steps"][1]["targets"].append(
        {"type": "email", "connection": "smtp", "to": ["x@example.com"], "name": "cfo"}
    )
    project = load_project(write_include(tmp_path / "duplicate", {"reports": template}))
    messages = {p.key_path: p.message for p in project.problems}
    assert "'cfo' is used by targets [2, 4]" in messages["flows.monthly.steps[1].targets"]
