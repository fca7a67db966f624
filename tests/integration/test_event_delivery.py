"""Event export delivery: signed webhooks to the demo app's real inbound sink, ledger and dead letters in
PostgreSQL, retries, per-key order, replay; and Redis pub/sub publishing."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.events.delivery import deliver
from b2b_integrations.events.ordering import OutgoingEvent
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.state import event_deliveries as ledger
from crm_server import CrmServer
from helpers import pg_rows, write_include

SECRET = "whsec_" + base64.b64encode(b"export-signing-key-for-tests-01").decode()
FAST = RetryPolicy(attempts=4, base_seconds=0.0, max_seconds=0.0)
log = logging.getLogger("test_event_delivery")


@pytest.fixture
def sink(crm: CrmServer) -> str:
    """A fresh inbound sink name on the demo app."""
    return f"hooks_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conns(crm: CrmServer, pg_db: str, monkeypatch: pytest.MonkeyPatch, sink: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    ids = {"hook": f"partner_hooks_{suffix}", "db": f"app_db_{suffix}"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{ids['hook'].upper()}",
        json.dumps(
            {"conn_type": "http", "host": crm.host, "port": crm.port, "schema": "http", "password": SECRET}
        ),
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{ids['db'].upper()}", f"postgresql://postgres@127.0.0.1:5432/{pg_db}")
    return ids


def _events(key: str, count: int, start_minute: int = 0) -> list[OutgoingEvent]:
    out = []
    for i in range(count):
        event_id = f"evt_{key}_{start_minute + i}_{uuid.uuid4().hex[:6]}"
        at = f"2026-11-29T08:{start_minute + i:02d}:00.000000+00:00"
        payload = {"type": "contact.updated", "id": event_id, "occurred_at": at, "data": {"id": key, "v": i}}
        out.append(OutgoingEvent(event_id, key, at, payload))
    return out


def _deliver(
    conns: dict[str, str], sink: str, events: list[OutgoingEvent], scope: ledger.TargetScope, **kw: Any
):
    hook, _ = get_db_hook(conns["db"])
    target = {"type": "webhook", "connection": conns["hook"], "endpoint": f"/inbound/{sink}", "timeout": 5}
    with hook.get_conn() as conn:
        return deliver(
            events,
            conn,
            hook.placeholder,
            scope,
            target,
            kw.pop("retry", FAST),
            kw.pop("coalesce", False),
            kw.pop("concurrency", 4),
            log,
        )


def _accepted(crm: CrmServer, sink: str) -> list[dict[str, Any]]:
    """Deliveries the sink answered 2xx, each checked with the standardwebhooks library."""
    received = crm.admin_get(f"inbound/{sink}")
    entries = received["deliveries"] if isinstance(received, dict) else received
    accepted = [e for e in entries if 200 <= e["status"] < 300]
    for entry in accepted:
        assert Webhook(SECRET).verify(entry["body"], entry["headers"]) == json.loads(entry["body"])
    return accepted


def _scope(name: str = "webhook") -> ledger.TargetScope:
    return ledger.TargetScope(f"cust_{uuid.uuid4().hex[:6]}", "crm_sync", "contacts_out", name)


def test_a_receiver_failing_three_times_gets_each_event_exactly_once(
    crm: CrmServer, sink: str, conns
) -> None:
    crm.admin(f"inbound/{sink}/responses", {"statuses": [500, 503, 500]})
    events = _events("c1", 2) + _events("c2", 2) + _events("c3", 1)
    counts = _deliver(conns, sink, events, _scope(), concurrency=1)
    assert counts["delivered"] == 5 and counts["dead_lettered"] == 0
    accepted = _accepted(crm, sink)
    by_id = Counter(e["headers"]["webhook-id"] for e in accepted)
    assert by_id == Counter({e.event_id: 1 for e in events})


def test_a_rerun_sends_nothing_again_and_older_events_are_superseded(
    crm: CrmServer, sink: str, conns
) -> None:
    scope = _scope()
    events = _events("k", 3, start_minute=10)
    assert _deliver(conns, sink, events, scope)["delivered"] == 3
    older = _events("k", 1, start_minute=1)  # an update from before the newest one delivered
    again = _deliver(conns, sink, [*events, *older], scope)
    assert again == {"events": 4, "delivered": 0, "already_delivered": 3, "superseded": 1, "dead_lettered": 0}
    assert len(_accepted(crm, sink)) == 3


def test_per_key_order_holds_under_retries(crm: CrmServer, sink: str, conns) -> None:
    crm.admin(f"inbound/{sink}/responses", {"statuses": [500, 429, 503, 500, 502]})
    events = _events("a", 4) + _events("b", 3) + _events("c", 3)
    # More attempts than scripted failures: the three senders share the five failures in whatever order the
    # host schedules them, and one key drawing four of them must not dead-letter it.
    retry = RetryPolicy(attempts=6, base_seconds=0.0, max_seconds=0.0)
    counts = _deliver(conns, sink, list(reversed(events)), _scope(), concurrency=3, retry=retry)
    assert counts["delivered"] == 10
    seen: dict[str, list[int]] = {}
    for entry in _accepted(crm, sink):
        data = json.loads(entry["body"])["data"]
        seen.setdefault(data["id"], []).append(data["v"])
    assert seen == {"a": [0, 1, 2, 3], "b": [0, 1, 2], "c": [0, 1, 2]}


def test_a_client_error_is_not_retried_and_goes_to_the_dead_letters(
    crm: CrmServer, sink: str, conns, pg_db
) -> None:
    crm.admin(f"inbound/{sink}/responses", {"statuses": [400]})
    scope = _scope()
    (event,) = _events("x", 1)
    counts = _deliver(conns, sink, [event], scope)
    assert counts["dead_lettered"] == 1
    rows = pg_rows(
        pg_db,
        f"SELECT attempts, last_error FROM b2b_dead_letters WHERE event_id = '{event.event_id}'",
    )
    assert rows[0][0] == 1 and rows[0][1].startswith("HTTP 400 from http://")
    assert SECRET not in rows[0][1]


def test_a_permanently_failing_receiver_dead_letters_and_replay_delivers(
    crm: CrmServer, sink: str, conns, pg_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2b_integrations.cli import main

    customer = f"deadco{uuid.uuid4().hex[:4]}"
    include = write_include(
        tmp_path / "include",
        {
            "crm_sync": {
                "name": "crm_sync",
                "connections": {"partner_hooks": {"type": "http"}, "app_db": {"type": "postgres"}},
                "flows": {
                    "contacts_out": {
                        "trigger": {"type": "app_event", "events": ["contact.updated"]},
                        "steps": [
                            {
                                "id": "send",
                                "kind": "deliver_events",
                                "db_connection": "app_db",
                                "target": {
                                    "type": "webhook",
                                    "connection": "partner_hooks",
                                    "endpoint": f"/inbound/{sink}",
                                },
                                "retry_attempts": 3,
                                "retry_base_seconds": 0,
                                "retry_max_seconds": 0,
                            }
                        ],
                    }
                },
            }
        },
        {
            customer: {
                "id": customer,
                "name": "Dead Co",
                "integrations": {
                    "crm_sync": {"connections": {"partner_hooks": conns["hook"], "app_db": conns["db"]}}
                },
            }
        },
    )
    crm.admin(f"inbound/{sink}/responses", {"statuses": [500] * 6})
    scope = ledger.TargetScope(customer, "crm_sync", "contacts_out", "webhook")
    events = _events("d1", 1) + _events("d2", 1)
    counts = _deliver(
        conns, sink, events, scope, retry=RetryPolicy(attempts=3, base_seconds=0, max_seconds=0)
    )
    assert counts["dead_lettered"] == 2 and _accepted(crm, sink) == []
    dead = pg_rows(pg_db, f"SELECT event_id, attempts FROM b2b_dead_letters WHERE customer_id = '{customer}'")
    assert sorted(dead) == sorted((e.event_id, 3) for e in events)

    # The receiver is back: the replay delivers both, once; a second replay has nothing left to do.
    assert (
        main(["replay-dead-letters", customer, "crm_sync", "contacts_out", "--include-dir", str(include)])
        == 0
    )
    assert Counter(e["headers"]["webhook-id"] for e in _accepted(crm, sink)) == Counter(
        {e.event_id: 1 for e in events}
    )
    open_rows = pg_rows(
        pg_db,
        f"SELECT count(*) FROM b2b_dead_letters WHERE customer_id = '{customer}' AND replayed_at IS NULL",
    )
    assert open_rows == [(0,)]
    assert (
        main(["replay-dead-letters", customer, "crm_sync", "contacts_out", "--include-dir", str(include)])
        == 0
    )
    assert len(_accepted(crm, sink)) == 2


def test_redis_pubsub_target_publishes_each_event_in_key_order(
    conns, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    channel = f"b2b.test.{uuid.uuid4().hex[:8]}"
    conn_id = f"redis_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", "redis://127.0.0.1:6379/7")
    subscriber = redis.Redis(host="127.0.0.1", port=6379, db=7).pubsub()
    subscriber.subscribe(channel)
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    received: list[dict[str, Any]] = []
    done = threading.Event()

    def listen() -> None:
        while len(received) < 5:
            message = subscriber.get_message(timeout=5)
            if message is None:
                break
            if message["type"] == "message":
                received.append(json.loads(message["data"]))
        done.set()

    threading.Thread(target=listen, daemon=True).start()
    hook, _ = get_db_hook(conns["db"])
    events = _events("r", 5)
    with hook.get_conn() as conn:
        counts = deliver(
            events,
            conn,
            hook.placeholder,
            _scope("redis"),
            {"type": "redis", "connection": conn_id, "channel": channel},
            FAST,
            False,
            2,
            log,
        )
    assert counts["delivered"] == 5
    assert done.wait(10)
    assert [m["data"]["v"] for m in received] == [0, 1, 2, 3, 4]
    subscriber.close()


def test_api_target_applies_events_through_the_third_partys_own_api(
    crm: CrmServer, conns, monkeypatch: pytest.MonkeyPatch, pg_db: str
) -> None:
    conn_id = f"crm_api_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "http",
                "host": crm.host,
                "port": crm.port,
                "schema": "http",
                "password": crm.api_key,
            }
        ),
    )
    target = {
        "type": "api",
        "connection": conn_id,
        "method": "PATCH",
        "endpoint": "/api/contacts/{data.crm_id}",
        "body": {"first_name": "data.first_name"},
        "auth": {"type": "api_key", "header": "X-API-Key"},
    }
    events = []
    for i, (crm_id, name) in enumerate([(3, "Ada"), (4, "Bea"), (3, "Adele"), (999999, "Nobody")]):
        event_id = f"evt_api_{i}_{uuid.uuid4().hex[:6]}"
        at = f"2026-11-29T09:{i:02d}:00.000000+00:00"
        payload = {"id": event_id, "occurred_at": at, "data": {"crm_id": crm_id, "first_name": name}}
        events.append(OutgoingEvent(event_id, str(crm_id), at, payload))
    hook, _ = get_db_hook(conns["db"])
    with hook.get_conn() as conn:
        counts = deliver(events, conn, hook.placeholder, _scope("crm_api"), target, FAST, False, 2, log)
    assert (
        counts["delivered"] == 3 and counts["dead_lettered"] == 1
    )  # the unknown contact: a 404, not retried
    assert crm.api("GET", "/api/contacts/3").json()["first_name"] == "Adele"  # key order: the newest last
    assert crm.api("GET", "/api/contacts/4").json()["first_name"] == "Bea"
    (error,) = pg_rows(
        pg_db, f"SELECT last_error FROM b2b_dead_letters WHERE event_id = '{events[3].event_id}'"
    )[0]
    assert "HTTP 404" in error and crm.api_key not in error
