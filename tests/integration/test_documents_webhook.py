"""Documents with line items from webhook payloads: a generated DAG (parsed from a template by the DagBag) runs
for real with dag.test() against the migrated metadata DB, its inbox filled through the webhook event store as
the endpoint fills it, loading into PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_poison_messages import _cli, _deploy, _states, _store

from helpers import PG, pg_rows

pytestmark = pytest.mark.e2e

TEMPLATE: dict[str, Any] = {
    "name": "shop",
    "connections": {"app_db": {"type": "postgres"}, "webhook_secret": {"type": "generic"}},
    "defaults": {"retries": 0},
    "flows": {
        "orders": {
            "trigger": {"type": "webhook", "signature": "standard_webhooks", "secret_connection": "webhook_secret"},
            "steps": [
                {
                    "id": "load",
                    "kind": "load",
                    "connection": "app_db",
                    "table": "shop_orders",
                    "key": ["order_id"],
                    "create_table": True,
                    "columns": {"order_id": "VARCHAR(20)", "buyer": "VARCHAR(40)", "currency": "CHAR(3)"},
                    "document": {
                        "header_paths": {"currency": "total.@currency"},
                        "lines": [
                            {
                                "path": "items",
                                "table": "shop_order_items",
                                "min_items": 1,
                                "fields": [
                                    {"name": "sku", "required": True},
                                    {"name": "qty", "type": "integer", "required": True, "minimum": 1},
                                ],
                                "columns": {"sku": "VARCHAR(20)", "qty": "INTEGER"},
                            }
                        ],
                    },
                }
            ],
        }
    },
}  # fmt: skip


def _order(order_id: str, *items: tuple[str, Any]) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "buyer": "Initech",
        "total": {"@currency": "EUR", "#text": "10.00"},
        "items": [{"sku": sku, "qty": qty} for sku, qty in items],
    }


def test_webhook_orders_land_with_their_lines_a_new_version_replaces_them_a_bad_line_is_quarantined(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _deploy(tmp_path, monkeypatch, "shopco", f"{PG}/{pg_db}", template=TEMPLATE)
    assert dag.test().state == "success"  # registers the DAG and its inbox
    _store(
        "shopco",
        "shop",
        "orders",
        [
            ("m1", _order("W-1", ("A", 1), ("B", 2)), True),
            ("m2", _order("W-2", ("C", 1)), True),
            ("m3", _order("W-1", ("B", 5)), True),  # W-1 again, changed: only B left
            ("m4", _order("W-3", ("D", 1), ("E", 0)), True),  # a bad second line
        ],
    )
    run = dag.test()
    assert run.state == "success", _states(run)
    assert pg_rows(pg_db, "SELECT order_id, buyer, currency FROM shop_orders ORDER BY 1") == [
        ("W-1", "Initech", "EUR"),
        ("W-2", "Initech", "EUR"),
    ]
    assert pg_rows(pg_db, "SELECT order_id, line_no, sku, qty FROM shop_order_items ORDER BY 1, 2") == [
        ("W-1", 1, "B", 5),
        ("W-2", 1, "C", 1),
    ]
    listed = _cli("quarantine", "list", "shopco")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [line for line in listed.stdout.splitlines() if line.startswith("shop/orders ")]
    assert entry.split()[1] == "m4" and "step load, record 4" in entry, (
        entry
    )  # numbered within the run's batch
    assert "items[2]: field 'qty': 0 is below the minimum 1" in entry
