"""Two-way sync conflict rules on real PostgreSQL, through each driver's sink (psycopg COPY with its stage,
psycopg2 multi-row upsert): the newest ``updated_at`` wins, echoes and late changes are no-ops, app-owned
columns are never overwritten."""

from __future__ import annotations

import uuid

import pytest

from b2b_integrations.sinks.sql import ConflictRule, prepare_target, write_rows
from helpers import PG, pg_rows

RULE = ConflictRule(last_writer_by="updated_at", app_owned=("phone",))
FIELDS = ["id", "name", "phone", "updated_at"]


def _connect(driver: str, db: str):  # noqa: ANN202
    if driver == "psycopg":
        import psycopg

        return psycopg.connect(f"{PG}/{db}")
    import psycopg2

    return psycopg2.connect(f"{PG}/{db}")


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_newest_write_wins_and_app_owned_columns_stay(driver: str, pg_db: str) -> None:
    table = f"contacts_{uuid.uuid4().hex[:6]}"
    conn = _connect(driver, pg_db)
    columns = {"id": "INTEGER", "name": "TEXT", "phone": "TEXT", "updated_at": "TIMESTAMPTZ"}
    sink = prepare_target(conn, "postgres", "%s", table, FIELDS, ["id"], True, columns, RULE)
    write_rows(
        conn,
        sink,
        [(1, "Ann", "111", "2026-11-29T10:00:00Z"), (2, "Bob", "222", "2026-11-29T10:00:00Z")],
        100,
    )
    incoming = [
        (1, "Ann (late)", "999", "2026-11-29T09:00:00Z"),  # older than ours: ignored
        (2, "Bob (echo)", "999", "2026-11-29T10:00:00Z"),  # our own change coming back: ignored
        (3, "Cy", "333", "2026-11-29T10:00:00Z"),  # new: inserted, phone included
        (2, "Bobby", "999", "2026-11-29T12:00:00Z"),  # two changes of one key in a batch: the newest wins
        (2, "Rob", "999", "2026-11-29T11:00:00Z"),
    ]
    write_rows(conn, sink, incoming, 100)
    conn.close()
    assert pg_rows(pg_db, f"SELECT id, name, phone FROM {table} ORDER BY id") == [
        (1, "Ann", "111"),
        (2, "Bobby", "222"),
        (3, "Cy", "333"),
    ]
