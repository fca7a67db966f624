"""Ledger of app events delivered to third parties, and the dead letters, kept in the app's database.

``b2b_event_deliveries`` has one row per (customer, integration, flow, target, event id) once the event is
settled: ``delivered``, ``superseded`` (a newer event of its key went out first, so it must never be sent)
or ``dead`` (the retry budget ran out; the payload and the last error wait in ``b2b_dead_letters`` for a
replay). A row is committed right after its event settled, so a retried task re-sends nothing delivered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from b2b_integrations.state.ddl import create_tables

DELIVERIES_TABLE = "b2b_event_deliveries"
DEAD_LETTERS_TABLE = "b2b_dead_letters"

_CREATE = (
    f"""
CREATE TABLE IF NOT EXISTS {DELIVERIES_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    target VARCHAR(120) NOT NULL,
    event_id VARCHAR(255) NOT NULL,
    event_key VARCHAR(255) NOT NULL,
    occurred_at VARCHAR(40) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    detail VARCHAR(1000),
    updated_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (customer_id, integration, flow, target, event_id)
)
""",
    f"""
CREATE TABLE IF NOT EXISTS {DEAD_LETTERS_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    target VARCHAR(120) NOT NULL,
    event_id VARCHAR(255) NOT NULL,
    event_key VARCHAR(255) NOT NULL,
    occurred_at VARCHAR(40) NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error VARCHAR(1000) NOT NULL,
    dead_at VARCHAR(32) NOT NULL,
    replayed_at VARCHAR(32),
    PRIMARY KEY (customer_id, integration, flow, target, event_id)
)
""",
)

FINAL_STATUSES = ("delivered", "superseded")
_SCOPE = "customer_id = {p} AND integration = {p} AND flow = {p} AND target = {p}"


@dataclass(frozen=True)
class TargetScope:
    """Whose deliveries: one customer flow's one target."""

    customer_id: str
    integration: str
    flow: str
    target: str

    def values(self) -> tuple[str, str, str, str]:
        return (self.customer_id, self.integration, self.flow, self.target)


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    event_key: str
    occurred_at: str
    payload: dict[str, Any]
    attempts: int
    last_error: str
    dead_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def ensure_tables(conn: Any) -> None:
    create_tables(conn, _CREATE, DELIVERIES_TABLE)


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def settled_ids(conn: Any, p: str, scope: TargetScope, event_ids: Iterable[str]) -> set[str]:
    """The ids among ``event_ids`` already delivered or superseded for this target."""
    found: set[str] = set()
    with closing(conn.cursor()) as cur:
        for chunk in _chunks(sorted(set(event_ids))):
            cur.execute(
                f"SELECT event_id FROM {DELIVERIES_TABLE} WHERE {_SCOPE.format(p=p)} "
                f"AND status IN ({p}, {p}) AND event_id IN ({', '.join([p] * len(chunk))})",
                (*scope.values(), *FINAL_STATUSES, *chunk),
            )
            found.update(row[0] for row in cur.fetchall())
    conn.commit()
    return found


def newest_delivered(conn: Any, p: str, scope: TargetScope, keys: Iterable[str]) -> dict[str, str]:
    """Key -> ``occurred_at`` of the newest event delivered for it (the keys that have one)."""
    newest: dict[str, str] = {}
    with closing(conn.cursor()) as cur:
        for chunk in _chunks(sorted(set(keys))):
            cur.execute(
                f"SELECT event_key, MAX(occurred_at) FROM {DELIVERIES_TABLE} WHERE {_SCOPE.format(p=p)} "
                f"AND status = {p} AND event_key IN ({', '.join([p] * len(chunk))}) GROUP BY event_key",
                (*scope.values(), "delivered", *chunk),
            )
            newest.update({key: occurred for key, occurred in cur.fetchall()})
    conn.commit()
    return newest


def record(
    conn: Any,
    p: str,
    scope: TargetScope,
    event_id: str,
    key: str,
    occurred_at: str,
    status: str,
    attempts: int,
    detail: str | None = None,
) -> None:
    """Settle an event for the target and commit (replacing an earlier ``dead`` row, if any)."""
    values = (status, attempts, (detail or "")[:1000] or None, _now())
    try:
        with closing(conn.cursor()) as cur:
            cur.execute(
                f"UPDATE {DELIVERIES_TABLE} SET status = {p}, attempts = {p}, detail = {p}, updated_at = {p} "
                f"WHERE {_SCOPE.format(p=p)} AND event_id = {p}",
                (*values, *scope.values(), event_id),
            )
            if cur.rowcount == 0:
                cur.execute(
                    f"INSERT INTO {DELIVERIES_TABLE} (customer_id, integration, flow, target, event_id, "
                    "event_key, occurred_at, status, attempts, detail, updated_at) "
                    f"VALUES ({', '.join([p] * 11)})",
                    (*scope.values(), event_id, key[:255], occurred_at, *values),
                )
            if status == "delivered":
                cur.execute(
                    f"UPDATE {DEAD_LETTERS_TABLE} SET replayed_at = {p} "
                    f"WHERE {_SCOPE.format(p=p)} AND event_id = {p} AND replayed_at IS NULL",
                    (_now(), *scope.values(), event_id),
                )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def dead_letter(
    conn: Any,
    p: str,
    scope: TargetScope,
    event_id: str,
    key: str,
    occurred_at: str,
    payload: dict[str, Any],
    attempts: int,
    error: str,
) -> None:
    """Keep an event whose retry budget ran out, with its payload and last error, and commit."""
    try:
        with closing(conn.cursor()) as cur:
            cur.execute(
                f"DELETE FROM {DEAD_LETTERS_TABLE} WHERE {_SCOPE.format(p=p)} AND event_id = {p}",
                (*scope.values(), event_id),
            )
            cur.execute(
                f"INSERT INTO {DEAD_LETTERS_TABLE} (customer_id, integration, flow, target, event_id, event_key, "
                f"occurred_at, payload, attempts, last_error, dead_at, replayed_at) "
                f"VALUES ({', '.join([p] * 11)}, NULL)",
                (
                    *scope.values(),
                    event_id,
                    key[:255],
                    occurred_at,
                    json.dumps(payload, ensure_ascii=False, default=str),
                    attempts,
                    error[:1000],
                    _now(),
                ),
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    record(conn, p, scope, event_id, key, occurred_at, "dead", attempts, error)


def open_dead_letters(
    conn: Any, p: str, scope: TargetScope, event_id: str | None = None, limit: int | None = None
) -> list[DeadLetter]:
    """Dead letters not replayed yet, oldest event first (one, when ``event_id`` is given; the first
    ``limit``, when given)."""
    extra, args = ("", ()) if event_id is None else (f" AND event_id = {p}", (event_id,))
    extra += " ORDER BY occurred_at, event_id" + ("" if limit is None else f" LIMIT {int(limit)}")
    with closing(conn.cursor()) as cur:
        cur.execute(
            f"SELECT event_id, event_key, occurred_at, payload, attempts, last_error, dead_at "
            f"FROM {DEAD_LETTERS_TABLE} WHERE {_SCOPE.format(p=p)} AND replayed_at IS NULL{extra}",
            (*scope.values(), *args),
        )
        rows = cur.fetchall()
    conn.commit()
    return [
        DeadLetter(row[0], row[1], row[2], json.loads(row[3]), int(row[4]), row[5], row[6]) for row in rows
    ]


def close_dead_letter(conn: Any, p: str, scope: TargetScope, event_id: str) -> None:
    """Mark a dead letter handled without a delivery (it was superseded by a newer event of its key)."""
    with closing(conn.cursor()) as cur:
        cur.execute(
            f"UPDATE {DEAD_LETTERS_TABLE} SET replayed_at = {p} WHERE {_SCOPE.format(p=p)} AND event_id = {p}",
            (_now(), *scope.values(), event_id),
        )
    conn.commit()
