"""Re-send dead-lettered events of a customer flow, with the flow's own target and the same rules
(an event superseded by a newer delivered one of its key is closed, never sent)."""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path
from typing import Any

from b2b_integrations.alerts import redact
from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.config.loader import load_project
from b2b_integrations.events.delivery import deliver
from b2b_integrations.events.ordering import OutgoingEvent
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.naming import dag_id_for
from b2b_integrations.operators.deliver_events import bound_target
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.state import event_deliveries as ledger

log = logging.getLogger(__name__)


def delivery_steps(include_dir: Path, customer: str, integration: str, flow: str) -> list[dict[str, Any]]:
    """The planned arguments of the flow's ``deliver_events`` steps, as the DAG factory builds them."""
    wanted = dag_id_for(customer, integration, flow)
    # Only this customer's file: a whole project at 1,000 customers takes seconds to load.
    project = load_project(include_dir, customer_filter=lambda name: name == customer)
    plan = next((p for p in plan_project(project) if p.dag_id == wanted), None)
    if plan is None:
        raise LookupError(
            f"no deployed flow {wanted} in {include_dir} (customer, integration or flow unknown, or disabled)"
        )
    steps = [dict(t.arguments) for t in plan.tasks if t.kind == "deliver_events"]
    if not steps:
        raise LookupError(f"flow {wanted} has no deliver_events step")
    return steps


def list_dead_letters(
    include_dir: Path, customer: str, integration: str, flow: str, limit: int = 50
) -> list[dict[str, Any]]:
    """The open dead letters of the flow's ``deliver_events`` steps, oldest first, at most ``limit`` per
    target: what a person needs to decide on a replay (no payload, the error redacted)."""
    found = []
    for step in delivery_steps(include_dir, customer, integration, flow):
        target = bound_target(step["target"], step.get("target_conn_id"))
        name = str(target.get("name") or target.get("type"))
        hook, _ = get_db_hook(step["db_conn_id"])
        with closing(hook.get_conn()) as conn:
            ledger.ensure_tables(conn)
            scope = ledger.TargetScope(customer, integration, flow, name)
            letters = ledger.open_dead_letters(conn, hook.placeholder, scope, limit=limit)
        found += [
            {"target": name, "event_id": d.event_id, "event_key": d.event_key, "occurred_at": d.occurred_at,
             "attempts": d.attempts, "last_error": redact(d.last_error), "dead_at": d.dead_at}
            for d in letters
        ]  # fmt: skip
    return found


def replay_dead_letters(
    include_dir: Path, customer: str, integration: str, flow: str, event_id: str | None = None
) -> list[dict[str, Any]]:
    """Send the open dead letters of every ``deliver_events`` step of the flow (only ``event_id``'s, when
    given); counts per target."""
    results = []
    for step in delivery_steps(include_dir, customer, integration, flow):
        target = bound_target(step["target"], step.get("target_conn_id"))
        name = str(target.get("name") or target.get("type"))
        scope = ledger.TargetScope(customer, integration, flow, name)
        retry = RetryPolicy(
            attempts=step.get("retry_attempts", 5),
            base_seconds=step.get("retry_base_seconds", 0.5),
            max_seconds=step.get("retry_max_seconds", 30.0),
        )
        hook, _ = get_db_hook(step["db_conn_id"])
        with closing(hook.get_conn()) as conn:
            ledger.ensure_tables(conn)
            letters = ledger.open_dead_letters(conn, hook.placeholder, scope, event_id)
            events = [OutgoingEvent(d.event_id, d.event_key, d.occurred_at, d.payload) for d in letters]
            counts = (
                deliver(
                    events,
                    conn,
                    hook.placeholder,
                    scope,
                    target,
                    retry,
                    False,
                    step.get("concurrency", 4),
                    log,
                )
                if events
                else {
                    "events": 0,
                    "delivered": 0,
                    "already_delivered": 0,
                    "superseded": 0,
                    "dead_lettered": 0,
                }
            )
        results.append({"target": name, **counts})
    return results
