"""Creating our tables on first use, safely when many customers' first runs do it at the same moment.

PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` is not safe against itself: two sessions can both find the
table missing, and the slower fails with a ``UniqueViolation`` on ``pg_type_typname_nsp_index`` (seen with
ten customers starting together: 45 failures in 50 tries). A transaction-scoped advisory lock per table
makes the creators take turns; the lock ends with the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Any


def is_postgres(conn: Any) -> bool:
    return type(conn).__module__.split(".")[0] in ("psycopg", "psycopg2")


def create_tables(conn: Any, statements: Sequence[str], lock_name: str) -> None:
    """Run ``CREATE ... IF NOT EXISTS`` statements in one transaction of their own, one creator at a time."""
    try:
        with closing(conn.cursor()) as cur:
            if is_postgres(conn):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"b2b_ddl:{lock_name}",))
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
