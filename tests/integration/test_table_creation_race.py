"""Many customers' first runs create the same table at the same moment (real PostgreSQL, one connection
each, released together): with the advisory lock every creator succeeds; bare ``IF NOT EXISTS`` does not."""

from __future__ import annotations

import threading
import uuid

import psycopg2

from b2b_integrations.state.ddl import create_tables
from helpers import PG

CREATORS = 10
ROUNDS = 5


def _race(pg_db: str, create) -> list[str]:  # noqa: ANN001
    errors: list[str] = []
    for _ in range(ROUNDS):
        table = f"race_{uuid.uuid4().hex[:8]}"
        statement = f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, v TEXT)"
        conns = [psycopg2.connect(f"{PG}/{pg_db}") for _ in range(CREATORS)]
        start = threading.Barrier(CREATORS)

        def creator(conn, table=table, statement=statement, start=start) -> None:  # noqa: ANN001
            start.wait()
            try:
                create(conn, statement, table)
            except psycopg2.Error as e:
                conn.rollback()
                errors.append(type(e).__name__)

        threads = [threading.Thread(target=creator, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in conns:
            c.close()
    return errors


def _bare(conn, statement: str, table: str) -> None:  # noqa: ANN001
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.commit()


def test_concurrent_first_runs_all_create_the_table(pg_db: str) -> None:
    assert _race(pg_db, lambda conn, statement, table: create_tables(conn, [statement], table)) == []


def test_without_the_lock_the_race_is_real(pg_db: str) -> None:
    # Shows what the lock is for; if PostgreSQL ever makes IF NOT EXISTS safe, this test says so.
    assert _race(pg_db, _bare), "no creator failed without the lock"
