"""The status counts read from an app database (failed files, dead letters, pending deliveries): written by
the state modules the operators use, read by ``instances/observe.ledger_counts`` on real PostgreSQL."""

from __future__ import annotations

from contextlib import closing
from types import SimpleNamespace
from typing import Any

import psycopg2
import pytest

from b2b_integrations.factory.plan import TaskPlan
from b2b_integrations.instances.observe import ledger_counts
from b2b_integrations.state import deliveries, event_deliveries, ledger
from helpers import PG


def _flow(flow: str, kind: str, conn_id: str) -> Any:
    task = TaskPlan("step", kind, "x.Operator", {"db_conn_id": conn_id})
    return SimpleNamespace(flow=flow, tasks=(task,))


PLANS = [
    _flow("files", "sftp_import", "ledgerdb"),
    _flow("events", "deliver_events", "ledgerdb"),
    _flow("reports", "deliver", "ledgerdb"),
]


def _entry(customer: str, name: str, sha: str, status: str, at: str) -> ledger.LedgerEntry:
    return ledger.LedgerEntry(customer, "obs", "files", name, sha * 64, 1, 1, status, 0, 0, None, at)


def test_open_failures_per_flow_and_other_customers_left_out(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LEDGERDB", f"{PG}/{pg_db}")
    # No ledger table yet: nothing was ever recorded, which is zero, not a failure.
    empty = ledger_counts("acme", "obs", PLANS)
    assert empty.unreachable == {}
    assert empty.counts == {
        "files": {"failed_files": 0},
        "events": {"dead_letters": 0},
        "reports": {"pending_deliveries": 0},
    }

    with closing(psycopg2.connect(f"{PG}/{pg_db}")) as conn:
        ledger.ensure_ledger(conn)
        event_deliveries.ensure_tables(conn)
        deliveries.ensure_table(conn)
        for entry in (
            _entry("acme", "a.csv", "1", ledger.FAILED, "2026-12-01T10:00:00+00:00"),
            # a corrected a.csv loaded later: the failure is handled
            _entry("acme", "a.csv", "2", ledger.LOADED, "2026-12-01T11:00:00+00:00"),
            _entry("acme", "b.csv", "3", ledger.FAILED, "2026-12-01T12:00:00+00:00"),
            _entry("globex", "c.csv", "4", ledger.FAILED, "2026-12-01T12:00:00+00:00"),
        ):
            ledger.record_now(conn, "%s", entry)
        for customer, event in (("acme", "e1"), ("acme", "e2"), ("globex", "e3")):
            scope = event_deliveries.TargetScope(customer, "obs", "events", "crm")
            event_deliveries.dead_letter(conn, "%s", scope, event, "k", "2026-12-01", {}, 5, "HTTP 503")
        # e2 delivered by a replay: no longer open
        acme = event_deliveries.TargetScope("acme", "obs", "events", "crm")
        event_deliveries.record(conn, "%s", acme, "e2", "k", "2026-12-01", "delivered", 6)
        for customer in ("acme", "globex"):
            key = deliveries.DeliveryKey(customer, "obs", "monthly", "2026-11", "sftp")
            deliveries.record_failed(conn, "%s", key, target_type="sftp", flow="reports", error="refused")

    found = ledger_counts("acme", "obs", PLANS)
    assert found.unreachable == {}
    assert found.counts == {
        "files": {"failed_files": 1},
        "events": {"dead_letters": 1},
        "reports": {"pending_deliveries": 1},
    }


def test_a_database_that_cannot_be_read_leaves_its_flows_counts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GONEDB", f"{PG}/b2b_no_such_database")
    found = ledger_counts("acme", "obs", [_flow("files", "sftp_import", "gonedb")])
    assert found.counts == {}
    assert found.unreachable == {
        "files": "the database of connection 'gonedb' could not be read (OperationalError)"
    }
