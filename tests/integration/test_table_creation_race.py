"""Two customers' first runs create the same table at the same moment (real PostgreSQL, one connection
each). The interleaving that fails is made to happen every time rather than hoped for: the first creator's
transaction is held open after its CREATE until the second one is seen waiting on it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors

from b2b_integrations.state.ddl import create_tables
from helpers import PG


def _statement(table: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, v TEXT)"


def _second_creator_meets_the_first(
    pg_db: str, first: Callable[[Any, str], None], second: Callable[[Any, str], None]
) -> tuple[str, BaseException | None]:
    """``first`` runs and keeps its transaction open; ``second`` runs in a thread until PostgreSQL shows
    it waiting for a lock; then ``first`` commits. Returns the table and what ``second`` raised."""
    table = f"race_{uuid.uuid4().hex[:8]}"
    holder, creator = (psycopg2.connect(f"{PG}/{pg_db}") for _ in range(2))
    outcome: list[BaseException | None] = []
    try:
        first(holder, table)  # its CREATE is done, not committed
        with creator.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]

        def run_second() -> None:
            try:
                second(creator, table)
                outcome.append(None)
            except psycopg2.Error as e:
                creator.rollback()
                outcome.append(e)

        thread = threading.Thread(target=run_second, daemon=True)
        thread.start()
        with psycopg2.connect(f"{PG}/{pg_db}") as observer, observer.cursor() as cur:
            deadline = time.monotonic() + 30
            while True:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cur.fetchone() == ("Lock",):
                    break
                assert thread.is_alive(), f"the second creator did not wait for the first: {outcome}"
                assert time.monotonic() < deadline, "the second creator never waited for a lock"
                time.sleep(0.01)
        holder.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        holder.close()
        creator.close()
    return table, outcome[0]


def _begin_create_with_the_lock(conn: Any, table: str) -> None:
    # What create_tables does before its commit (the lock's name is create_tables' own).
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"b2b_ddl:{table}",))
        cur.execute(_statement(table))


def _begin_bare_create(conn: Any, table: str) -> None:
    with conn.cursor() as cur:
        cur.execute(_statement(table))


def _bare_create(conn: Any, table: str) -> None:
    _begin_bare_create(conn, table)
    conn.commit()


def test_a_creator_that_meets_another_mid_create_waits_for_it_and_succeeds(pg_db: str) -> None:
    table, error = _second_creator_meets_the_first(
        pg_db, _begin_create_with_the_lock, lambda conn, t: create_tables(conn, [_statement(t)], t)
    )
    assert error is None
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        assert cur.fetchone() == (True,)


def test_without_the_lock_the_same_meeting_fails(pg_db: str) -> None:
    # What the lock is for: bare IF NOT EXISTS finds the table missing, waits on the first creator's
    # catalogue row and then fails on the type's unique index. If PostgreSQL ever makes it safe, this says so.
    _, error = _second_creator_meets_the_first(pg_db, _begin_bare_create, _bare_create)
    assert isinstance(error, psycopg2.errors.UniqueViolation), error
    assert "pg_type_typname_nsp_index" in str(error)
