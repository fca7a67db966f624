"""The monitors' ledger (``b2b_monitor_alerts`` in Airflow's metadata DB): each alert once, each target once.

One row per (instance, flow, kind, episode) with target ``*`` records that the alert was raised (its
insert is the claim: only the evaluation that inserted it deactivates an instance), and one row per
target (``slack:<conn>``, ``email:<conn>:<addresses>``, ``webhook``) tracks its delivery. A target row
is claimed (``sending``) and committed before anything is sent, so a retried or concurrent evaluation
never sends it again; a send that failed is tried again by the next evaluations, up to
``MAX_ATTEMPTS``. An evaluation killed between a send and its commit leaves ``sending``: taken again after
``STUCK_AFTER`` (the receiver sees the same ``webhook-id`` and can drop the repeat).
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from b2b_integrations.monitors.rules import PROBLEM_KINDS, RECOVERED, Alert

RECORD = "*"
MAX_ATTEMPTS = 5
STUCK_AFTER = timedelta(minutes=10)


@functools.cache
def alerts_table() -> Any:
    """The table (built on first use: sqlalchemy is not imported when a DAG file is parsed)."""
    import sqlalchemy as sa

    return sa.Table(
        "b2b_monitor_alerts",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(60), nullable=False),
        sa.Column("integration", sa.String(60), nullable=False),
        sa.Column("flow", sa.String(60), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("episode", sa.String(250), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("alert", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "customer_id", "integration", "flow", "kind", "episode", "target", name="b2b_monitor_alerts_once"
        ),
    )


_created: dict[str, bool] = {}
_create_lock = threading.Lock()


def ensure_table(session: Any) -> None:
    """Create the table once per process, in its own transaction (evaluations may race to it)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    if _created:
        return
    with _create_lock:
        bind = session.get_bind()
        try:
            alerts_table().create(bind, checkfirst=True)
        except SQLAlchemyError:
            if not sa.inspect(bind).has_table(alerts_table().name):  # another process won the race: fine
                raise
        _created["done"] = True


def alert_json(alert: Alert) -> str:
    return json.dumps(
        {
            "kind": alert.kind,
            "severity": alert.severity,
            "customer": alert.customer,
            "integration": alert.integration,
            "flow": alert.flow,
            "dag_id": alert.dag_id,
            "episode": alert.episode,
            "message": alert.message,
            "run_id": alert.run_id,
            "details": alert.details,
        },
        separators=(",", ":"),
        default=str,
    )


def alert_of(text: str) -> Alert:
    raw = json.loads(text)
    return Alert(
        raw["kind"], raw["severity"], raw["customer"], raw["integration"], raw["flow"], raw["dag_id"],
        raw["episode"], raw["message"], raw.get("run_id"), raw.get("details") or {},
    )  # fmt: skip


def record(session: Any, alert: Alert, observed_at: datetime, targets: list[str]) -> bool:
    """Insert the alert's record and its target rows, in the caller's transaction; False when the alert
    was recorded before (nothing is inserted then)."""
    row = {
        "customer_id": alert.customer,
        "integration": alert.integration,
        "flow": alert.flow,
        "kind": alert.kind,
        "episode": alert.episode[:250],
        "observed_at": observed_at,
        "attempts": 0,
        "alert": alert_json(alert),
    }
    if not _insert_new(session, {**row, "target": RECORD, "state": "recorded"}):
        return False
    for target in targets:
        _insert_new(session, {**row, "target": target[:500], "state": "pending"})
    return True


def _insert_new(session: Any, row: dict[str, Any]) -> bool:
    ALERTS = alerts_table()  # noqa: N806
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        done = session.execute(insert(ALERTS).values(**row).on_conflict_do_nothing().returning(ALERTS.c.id))
        return done.first() is not None
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.execute(ALERTS.insert().values(**row))
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class Delivery:
    id: int
    target: str
    alert: Alert
    observed_at: datetime
    attempts: int


def claim(session: Any, now: datetime) -> list[Delivery]:
    """Take every target row that is due (pending, failed with attempts left, or stuck in sending) and
    mark it ``sending``; committed by the caller before any send."""
    import sqlalchemy as sa

    ALERTS = alerts_table()  # noqa: N806
    stuck = now - STUCK_AFTER
    candidates = session.execute(
        sa.select(
            ALERTS.c.id,
            ALERTS.c.target,
            ALERTS.c.alert,
            ALERTS.c.observed_at,
            ALERTS.c.attempts,
            ALERTS.c.state,
        )  # fmt: skip
        .where(
            ALERTS.c.target != RECORD,
            ALERTS.c.attempts < MAX_ATTEMPTS,
            sa.or_(
                ALERTS.c.state.in_(("pending", "failed")),
                sa.and_(ALERTS.c.state == "sending", ALERTS.c.claimed_at < stuck),
            ),
        )
        .order_by(ALERTS.c.id)
    ).all()
    taken = []
    for row in candidates:
        # Conditional on the state and attempts read: a concurrent evaluation that took it first wins.
        done = session.execute(
            sa.update(ALERTS)
            .where(ALERTS.c.id == row.id, ALERTS.c.state == row.state, ALERTS.c.attempts == row.attempts)
            .values(state="sending", claimed_at=now, attempts=row.attempts + 1)
        )
        if done.rowcount == 1:
            taken.append(Delivery(row.id, row.target, alert_of(row.alert), row.observed_at, row.attempts + 1))
    return taken


def settle(session: Any, delivery_id: int, now: datetime, error: str | None) -> None:
    import sqlalchemy as sa

    ALERTS = alerts_table()  # noqa: N806
    values: dict[str, Any] = (
        {"state": "sent", "sent_at": now, "last_error": None}
        if error is None
        else {"state": "failed", "last_error": error[:2000]}
    )
    session.execute(sa.update(ALERTS).where(ALERTS.c.id == delivery_id).values(**values))


def alert_times(session: Any, dag_ids: list[str]) -> dict[str, tuple[datetime | None, datetime | None]]:
    """dag id -> (when its newest problem alert was raised, when its newest recovered alert was)."""
    import sqlalchemy as sa

    from b2b_integrations.factory.planner import DAG_ID_SEPARATOR

    ALERTS = alerts_table()  # noqa: N806
    wanted = set(dag_ids)
    problem = sa.func.max(sa.case((ALERTS.c.kind.in_(PROBLEM_KINDS), ALERTS.c.observed_at), else_=None))
    recovered = sa.func.max(sa.case((ALERTS.c.kind == RECOVERED, ALERTS.c.observed_at), else_=None))
    found: dict[str, tuple[datetime | None, datetime | None]] = {}
    for row in session.execute(
        sa.select(
            ALERTS.c.customer_id,
            ALERTS.c.integration,
            ALERTS.c.flow,
            problem.label("p"),
            recovered.label("r"),
        )  # fmt: skip
        .where(ALERTS.c.target == RECORD)
        .group_by(ALERTS.c.customer_id, ALERTS.c.integration, ALERTS.c.flow)
    ):
        dag_id = DAG_ID_SEPARATOR.join((row.customer_id, row.integration, row.flow))
        if dag_id in wanted:
            found[dag_id] = (row.p, row.r)
    return found
