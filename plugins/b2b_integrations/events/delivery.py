"""Deliver events to one target: plan (ordering, ledger), send lanes in parallel, settle each outcome.

Shared by the ``deliver_events`` step and the dead-letter replay, so both follow the same rules.
The database connection stays on the calling thread (SQLite connections may not cross threads): worker
threads only send, and the caller records each outcome as it arrives, one commit per event, so a task
that dies mid-run resends at most the events in flight (receivers deduplicate by ``webhook-id``).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from b2b_integrations.events.ordering import OutgoingEvent, plan_deliveries
from b2b_integrations.events.senders import EventSender, Outcome, deliver_with_retries, sender_from_config
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.state import event_deliveries as ledger

PROGRESS_EVERY = 500


def deliver(
    events: list[OutgoingEvent],
    conn: Any,
    placeholder: str,
    scope: ledger.TargetScope,
    target: dict[str, Any],
    retry: RetryPolicy,
    coalesce: bool,
    concurrency: int,
    log: Any,
) -> dict[str, int]:
    """Send what the ledger says is due; return counts (events, delivered, already_delivered,
    superseded, dead_lettered)."""
    p = placeholder
    ledger.ensure_tables(conn)
    plan = plan_deliveries(
        events,
        ledger.settled_ids(conn, p, scope, (e.event_id for e in events)),
        ledger.newest_delivered(conn, p, scope, (e.key for e in events)),
        coalesce,
    )
    for event in plan.superseded:
        ledger.record(conn, p, scope, event.event_id, event.key, event.occurred_at, "superseded", 0)
        ledger.close_dead_letter(conn, p, scope, event.event_id)
    counts = {
        "events": len(events),
        "delivered": 0,
        "already_delivered": len(plan.already_delivered),
        "superseded": len(plan.superseded),
        "dead_lettered": 0,
    }
    log.info(
        "%d event(s) for %s: %d to send in %d key lane(s), %d delivered before, %d superseded",
        len(events),
        scope.target,
        plan.to_send,
        len(plan.lanes),
        len(plan.already_delivered),
        len(plan.superseded),
    )
    if plan.lanes:
        sender = sender_from_config(
            target, f"customer {scope.customer_id}, integration {scope.integration}, flow {scope.flow}", log
        )
        try:
            _send_lanes(sender, plan.lanes, plan.to_send, retry, concurrency, conn, p, scope, counts, log)
        finally:
            sender.close()
    return counts


def _send_lanes(
    sender: EventSender,
    lanes: list[list[OutgoingEvent]],
    total: int,
    retry: RetryPolicy,
    concurrency: int,
    conn: Any,
    p: str,
    scope: ledger.TargetScope,
    counts: dict[str, int],
    log: Any,
) -> None:
    outcomes: queue.Queue[tuple[OutgoingEvent, Outcome | BaseException]] = queue.Queue()
    stop = threading.Event()

    def run_lane(lane: list[OutgoingEvent]) -> None:
        for event in lane:
            if stop.is_set():
                return
            try:
                outcomes.put((event, deliver_with_retries(sender.send, event, retry)))
            except BaseException as e:  # a bug, not a delivery failure: fail the task, keep the ledger
                outcomes.put((event, e))
                return

    settled = 0
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(lanes)))) as pool:
        futures = [pool.submit(run_lane, lane) for lane in lanes]
        try:
            while settled < total:
                try:
                    event, outcome = outcomes.get(timeout=0.5)
                except queue.Empty:
                    if all(f.done() for f in futures) and outcomes.empty():
                        break  # cannot happen unless a lane died without reporting; do not hang
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                _settle(conn, p, scope, event, outcome, counts, log)
                settled += 1
                if settled % PROGRESS_EVERY == 0 or settled == total:
                    log.info("Settled %d of %d event(s) for %s", settled, total, scope.target)
        finally:
            stop.set()


def _settle(
    conn: Any,
    p: str,
    scope: ledger.TargetScope,
    event: OutgoingEvent,
    outcome: Outcome,
    counts: dict[str, int],
    log: Any,
) -> None:
    if outcome.delivered:
        ledger.record(
            conn, p, scope, event.event_id, event.key, event.occurred_at, "delivered", outcome.attempts
        )
        counts["delivered"] += 1
        return
    log.warning(
        "Event %s (key %s) not delivered to %s after %d attempt(s): %s",
        event.event_id,
        event.key,
        scope.target,
        outcome.attempts,
        outcome.error,
    )
    ledger.dead_letter(
        conn,
        p,
        scope,
        event.event_id,
        event.key,
        event.occurred_at,
        event.payload,
        outcome.attempts,
        outcome.error,
    )
    counts["dead_lettered"] += 1
