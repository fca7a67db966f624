"""Pub/sub import end to end on a real Airflow: a message published on Redis -> the triggerer's asset
watcher -> an asset event -> the customer's DAG -> a row in the app database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import PG, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

CHANNEL = "partner.pubco.orders"
TEMPLATE = {
    "name": "order_events",
    "description": "Order events the partner publishes on Redis.",
    "connections": {"broker": {"type": "redis"}, "app_db": {"type": "postgres"}},
    "flows": {
        "orders": {
            "trigger": {"type": "pubsub", "channel": "partner.${customer.id}.orders", "connection": "broker"},
            "steps": [
                {
                    "id": "pick",
                    "kind": "transform",
                    "callable": "b2b_integrations.transforms.common.select_columns",
                    "options": {"columns": ["order_id", "status"]},
                },
                {
                    "id": "load_orders",
                    "kind": "load",
                    "connection": "app_db",
                    "table": "pubsub_orders",
                    "key": ["order_id"],
                },
            ],
        }
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("pubsub") / "include",
        {"order_events": TEMPLATE},
        {
            "pubco": {
                "id": "pubco",
                "name": "Pub Co",
                "integrations": {
                    "order_events": {"connections": {"broker": "pubco_redis", "app_db": "pubco_db"}}
                },
            }
        },
    )
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE pubsub_orders (order_id VARCHAR(40) PRIMARY KEY, status VARCHAR(20))")
    stack = start_airflow_stack(
        include,
        {"AIRFLOW_CONN_PUBCO_REDIS": "redis://127.0.0.1:6379/7", "AIRFLOW_CONN_PUBCO_DB": f"{PG}/{pg_db}"},
        components=("api-server", "scheduler", "dag-processor", "triggerer"),
    )
    try:
        yield stack
    finally:
        stack.stop()


def test_a_published_message_starts_the_customers_flow(stack: AirflowStack, pg_db: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=7)
    message = json.dumps({"order_id": "PO-1", "status": "confirmed", "extra": "dropped"})
    # Publish once the triggerer's watcher has subscribed (PUBLISH answers the number of subscribers).
    stack.wait_for(
        "the triggerer to subscribe to the channel",
        lambda: client.publish(CHANNEL, message) > 0,
        timeout=120,
        every=1,
    )
    stack.wait_for(
        "the message's order in the app database",
        lambda: rows(pg_db, "SELECT order_id, status FROM pubsub_orders") == [("PO-1", "confirmed")],
        timeout=120,
    )
    stack.wait_for(
        "the run to succeed",
        lambda: (
            ("asset_triggered", "success")
            in stack.sql("SELECT run_type, state FROM dag_run WHERE dag_id = 'pubco__order_events__orders'")
        ),
    )
