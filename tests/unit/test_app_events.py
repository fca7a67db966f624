"""App events: envelope parsing, subscription routing, delivery ordering and the retry loop (pure parts)."""

from __future__ import annotations

from typing import Any

import pytest

from b2b_integrations.config.loader import load_project
from b2b_integrations.events.envelope import AppEvent, EventRejected, normalize_instant, parse_events
from b2b_integrations.events.ordering import OutgoingEvent, key_of, plan_deliveries
from b2b_integrations.events.routes import matches, subscriptions_of
from b2b_integrations.events.senders import Attempt, deliver_with_retries
from b2b_integrations.sources.retries import RetryPolicy
from helpers import write_include

EVENT = {"type": "invoice.paid", "id": "evt_1", "occurred_at": "2026-11-29T09:15:00+01:00", "data": {"n": 1}}


def test_an_event_is_parsed_with_its_time_in_fixed_width_utc() -> None:
    (event,) = parse_events(EVENT)
    assert event == AppEvent("invoice.paid", "evt_1", "2026-11-29T08:15:00.000000+00:00", {"n": 1})
    assert normalize_instant("2026-11-29T08:15:00Z") == event.occurred_at
    assert (
        parse_events({"events": [EVENT, {**EVENT, "id": "evt_2", "origin": "acme/crm"}]})[1].origin
        == "acme/crm"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**EVENT, "type": "Invoice Paid"}, "event.type: must be dotted lower-case words"),
        ({**EVENT, "id": ""}, "event.id: must be a non-empty string"),
        (
            {**EVENT, "occurred_at": "2026-11-29T08:15:00"},
            "event.occurred_at: '2026-11-29T08:15:00' is not an ISO-8601 time with a zone",
        ),
        ({**EVENT, "occurred_at": "yesterday"}, "event.occurred_at: 'yesterday' is not"),
        ({k: v for k, v in EVENT.items() if k != "occurred_at"}, "event.occurred_at: required"),
        ({**EVENT, "data": [1]}, "event.data: must be an object, got list"),
        ({**EVENT, "extra": 1}, "event.extra: unknown field"),
        ([EVENT, "nope"], "events[1]: must be an object, got str"),
        ([], "no events in the body"),
    ],
)
def test_bad_events_are_rejected_with_every_error_located(body: Any, message: str) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_events(body)
    assert any(error.startswith(message) or message in error for error in caught.value.errors), (
        caught.value.errors
    )


def test_all_errors_of_a_batch_are_reported_at_once() -> None:
    with pytest.raises(EventRejected) as caught:
        parse_events([{**EVENT, "id": ""}, EVENT, {**EVENT, "data": None, "type": "x y"}])
    assert [e.split(":")[0] for e in caught.value.errors] == [
        "events[0].id",
        "events[2].type",
        "events[2].data",
    ]


def test_filters_match_dotted_paths_and_lists_of_values() -> None:
    data = {"account": {"id": "acme", "tier": "gold"}, "amount": 12}
    assert matches({}, data)
    assert matches({"account.id": "acme", "amount": 12}, data)
    assert matches({"account.tier": ["gold", "silver"]}, data)
    assert not matches({"account.id": "globex"}, data)
    assert not matches({"account.region": "eu"}, data)
    assert not matches({"amount.value": 12}, data)


def _project(tmp_path) -> Any:
    template = {
        "name": "billing_export",
        "config": {"min_amount": {"type": "integer", "default": 0}},
        "connections": {"hooks": {"type": "http"}, "app_db": {"type": "postgres"}},
        "flows": {
            "invoices_out": {
                "trigger": {
                    "type": "app_event",
                    "events": ["invoice.paid", "invoice.voided"],
                    "filter": {"account_id": "${customer.id}"},
                },
                "steps": [
                    {
                        "id": "send",
                        "kind": "deliver_events",
                        "db_connection": "app_db",
                        "target": {"type": "webhook", "connection": "hooks", "endpoint": "/hooks"},
                    }
                ],
            }
        },
    }
    customers = {
        cid: {
            "id": cid,
            "name": cid.title(),
            "integrations": {"billing_export": {"connections": {"hooks": f"{cid}_hooks", "app_db": "app"}}},
        }
        for cid in ("acme", "globex")
    }
    customers["globex"]["integrations"]["billing_export"]["flows"] = {"invoices_out": {"enabled": False}}
    customers["initech"] = {**customers["acme"], "id": "initech", "name": "Initech"}
    return load_project(write_include(tmp_path / "include", {"billing_export": template}, customers))


def test_subscriptions_resolve_filters_per_customer_and_skip_disabled_flows(tmp_path) -> None:
    project = _project(tmp_path)
    assert project.problems == []
    subs = subscriptions_of(project)
    assert sorted(subs) == ["invoice.paid", "invoice.voided"]
    assert [(s.customer_id, dict(s.filter)) for s in subs["invoice.paid"]] == [
        ("acme", {"account_id": "acme"}),
        ("initech", {"account_id": "initech"}),
    ]
    (acme, _) = subs["invoice.paid"]
    assert acme.asset_uri == "b2b://acme/billing_export/invoices_out/inbox"
    event = AppEvent("invoice.paid", "e1", "2026-11-29T08:00:00.000000+00:00", {"account_id": "acme"})
    assert acme.wants(event)
    assert not acme.wants(AppEvent("invoice.created", "e1", event.occurred_at, event.data))
    # Echo suppression: a change that came in through this very integration is not sent back to it.
    assert not acme.wants(
        AppEvent("invoice.paid", "e1", event.occurred_at, event.data, origin="acme/billing_export")
    )
    assert acme.wants(AppEvent("invoice.paid", "e1", event.occurred_at, event.data, origin="acme/other"))


def test_the_delivery_step_binds_its_target_connection_slot(tmp_path) -> None:
    from b2b_integrations.factory.planner import plan_project

    (plan,) = [p for p in plan_project(_project(tmp_path)) if p.customer_id == "acme"]
    assert plan.inbox is not None and plan.schedule_asset == plan.inbox
    (task,) = plan.tasks
    assert task.arguments["target"] == {"type": "webhook", "connection": "hooks", "endpoint": "/hooks"}
    assert task.arguments["target_conn_id"] == "acme_hooks"
    assert task.arguments["db_conn_id"] == "app"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"type": "sms", "connection": "hooks"},
            "'sms' .* does not match any of the expected tags: 'webhook', 'api', 'redis'",
        ),
        ({"type": "redis", "connection": "hooks"}, r"target\.redis\.channel\n  Field required"),
        (
            {"type": "webhook", "connection": "hooks", "url": "x"},
            r"target\.webhook\.url\n  Extra inputs are not permitted",
        ),
        (
            {"type": "api", "connection": "hooks", "endpoint": "/x", "method": "GET"},
            r"target\.api\.method\n  Value error, method must be POST, PUT, PATCH or DELETE",
        ),
        (
            {"type": "api", "connection": "hooks", "endpoint": "/x", "auth": {"type": "x"}},
            r"target\.api\.auth\.type\n  Value error, auth type must be one of",
        ),
    ],
)
def test_bad_targets_are_refused_at_config_time(target: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    from b2b_integrations.config.steps import DeliverEventsStep

    with pytest.raises(ValidationError, match=message):
        DeliverEventsStep(id="send", kind="deliver_events", db_connection="app_db", target=target)


def _event(event_id: str, key: str, minute: int) -> OutgoingEvent:
    return OutgoingEvent(event_id, key, f"2026-11-29T08:{minute:02d}:00.000000+00:00", {"id": event_id})


def test_plan_orders_each_key_and_skips_what_is_settled_or_older_than_delivered() -> None:
    events = [_event("a2", "a", 2), _event("b1", "b", 1), _event("a1", "a", 1), _event("a0", "a", 0)]
    events += [_event("a1", "a", 1)]  # the same event twice in one batch
    plan = plan_deliveries(
        events, delivered_ids={"b1"}, newest_delivered={"a": "2026-11-29T08:01:00.000000+00:00"}
    )
    assert [[e.event_id for e in lane] for lane in plan.lanes] == [["a1", "a2"]]
    assert [e.event_id for e in plan.already_delivered] == ["b1"]
    assert [e.event_id for e in plan.superseded] == ["a0"]


def test_coalesce_sends_only_the_newest_event_per_key() -> None:
    plan = plan_deliveries(
        [_event("a1", "a", 1), _event("a3", "a", 3), _event("a2", "a", 2)], set(), {}, True
    )
    assert [[e.event_id for e in lane] for lane in plan.lanes] == [["a3"]]
    assert sorted(e.event_id for e in plan.superseded) == ["a1", "a2"]


def test_key_of_reads_dotted_paths() -> None:
    assert key_of({"data": {"id": 7}}, "data.id") == "7"
    assert key_of({"data": {}}, "data.id") is None
    assert key_of({"data": {"id": None}}, "data.id") is None


class _Script:
    """A send function answering from a list of statuses (None = transport failure)."""

    def __init__(self, statuses: list[int | None], retry_after: str | None = None) -> None:
        self.statuses, self.retry_after, self.calls = list(statuses), retry_after, 0

    def __call__(self, event: OutgoingEvent) -> Attempt:
        self.calls += 1
        status = self.statuses.pop(0)
        ok = status is not None and status < 300
        return Attempt(ok, status, "" if ok else f"status {status}", self.retry_after)


@pytest.mark.parametrize(
    ("statuses", "delivered", "calls"),
    [
        ([500, None, 503, 202], True, 4),
        ([408, 429, 200], True, 3),
        ([400], False, 1),
        ([404], False, 1),
        ([500, 500, 500, 500, 200], False, 4),
    ],
)
def test_retry_loop_retries_transient_failures_only(
    statuses: list[int | None], delivered: bool, calls: int
) -> None:
    send, waits = _Script(statuses), []
    outcome = deliver_with_retries(
        send, _event("e", "k", 0), RetryPolicy(attempts=4, base_seconds=0.1), waits.append
    )
    assert (outcome.delivered, outcome.attempts, send.calls) == (delivered, calls, calls)
    assert len(waits) == calls - 1 and all(0 <= w <= 0.8 for w in waits)


def test_retry_after_is_honoured() -> None:
    waits: list[float] = []
    outcome = deliver_with_retries(
        _Script([429, 200], retry_after="7"), _event("e", "k", 0), RetryPolicy(), waits.append
    )
    assert outcome.delivered and waits == [7.0]


def test_outbox_rows_become_envelopes_or_reasons() -> None:
    from datetime import datetime

    from b2b_integrations.events.outbox import OutboxTable, to_event

    good = to_event((7, "contact.updated", "evt_7", datetime(2026, 11, 29, 8), '{"id": 3}', "acme/crm"))
    assert good.event == {
        "type": "contact.updated",
        "id": "evt_7",
        "occurred_at": "2026-11-29T08:00:00.000000+00:00",
        "data": {"id": 3},
        "origin": "acme/crm",
    }
    assert to_event((8, "contact.updated", "evt_8", "2026-11-29T08:00:00Z", "{oops", None)).errors == [
        "data: not JSON"
    ]
    bad = to_event((9, "Contact Updated", "", "2026-11-29T08:00:00Z", {"id": 3}, None))
    assert bad.event is None and [e.split(":")[0] for e in bad.errors] == ["type", "id"]
    with pytest.raises(Exception, match="invalid table name"):
        OutboxTable(table="outbox; drop table x")


def test_app_yaml_declares_the_outbox_poller_dag(tmp_path) -> None:
    from b2b_integrations.factory.app_dags import OUTBOX_DAG_ID
    from b2b_integrations.factory.register import build_dags

    root = write_include(tmp_path / "include")
    (root / "app.yaml").write_text(
        "outbox:\n  connection: app_db\n  api_connection: b2b_api\n  table: events_outbox\n  columns: {id: seq}\n"
    )
    result = build_dags(root)
    assert result.problems == []
    dag = result.dags[OUTBOX_DAG_ID]
    (task,) = dag.tasks
    assert (task.db_conn_id, task.api_conn_id, task.table, task.columns) == (
        "app_db",
        "b2b_api",
        "events_outbox",
        {"id": "seq"},
    )
    assert dag.max_active_runs == 1


def test_a_bad_app_yaml_is_a_located_problem(tmp_path) -> None:
    root = write_include(tmp_path / "include")
    (root / "app.yaml").write_text(
        "outbox:\n  connection: app_db\n  api_connection: b2b_api\n  columns: {ident: x}\n"
    )
    project = load_project(root)
    assert project.app is None
    (problem,) = project.problems
    assert problem.file.endswith("app.yaml") and "outbox.columns" in problem.key_path
    assert "unknown outbox column role(s) ['ident']" in problem.message


def test_map_fields_flattens_event_payloads_and_filters_by_type() -> None:
    import pandas as pd

    from b2b_integrations.transforms.common import map_fields

    frame = pd.DataFrame(
        [
            {
                "type": "contact.updated",
                "data": {"id": 5, "first_name": "Zoë", "updated_at": "2026-11-29T08:00:00Z"},
            },
            {"type": "company.updated", "data": {"id": 9}},
            {"type": "contact.created", "data": {"id": 6}},
        ]
    )
    out = map_fields(
        frame,
        fields={"crm_id": "data.id", "first_name": "data.first_name"},
        constants={"origin": "acme/crm_two_way"},
        only={"type": ["contact.created", "contact.updated"]},
    )
    assert out.astype(object).where(out.notna(), None).to_dict(orient="records") == [
        {"crm_id": 5, "first_name": "Zoë", "origin": "acme/crm_two_way"},
        {"crm_id": 6, "first_name": None, "origin": "acme/crm_two_way"},
    ]
    empty = map_fields(frame, fields={"crm_id": "data.id"}, only={"type": "invoice.paid"})
    assert list(empty.columns) == ["crm_id"] and len(empty) == 0


def test_keep_at_least_drops_small_and_missing_amounts() -> None:
    import pandas as pd

    from b2b_integrations.transforms.common import keep_at_least

    frame = pd.DataFrame(
        [{"data": {"amount_cents": a}} for a in (500, 10_000, None, 25_000)] + [{"data": {}}]
    )
    kept = keep_at_least(frame, field="data.amount_cents", minimum=10_000)
    assert [r["data"]["amount_cents"] for r in kept.to_dict(orient="records")] == [10_000, 25_000]
