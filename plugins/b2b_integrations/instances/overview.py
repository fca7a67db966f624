"""The engineers' overview: one row per customer x integration, filtered, searched and paged (pure, no I/O).

The facts come from a few grouped queries (``instances/overview_facts.py``); this module turns them into
rows with the same health rule as an instance's status (``health.decide``), so the grid and the status
route never disagree on a word. Rows are ordered most urgent first (config problem, failing, degraded,
never run, paused, healthy), then by customer and integration, so the first page answers "what is broken".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from b2b_integrations.errors import Problem
from b2b_integrations.instances.health import FlowFacts, Health, InstanceFacts, decide

URGENCY: dict[Health, int] = {
    "config problem": 0,
    "failing": 1,
    "degraded": 2,
    "never run": 3,
    "paused": 4,
    "healthy": 5,
}
COUNT_NAMES = (
    "rows_loaded_24h",
    "quarantined_records_24h",
    "quarantined_messages",
    "failed_files",
    "dead_letters",
    "pending_deliveries",
)


@dataclass(frozen=True)
class RunRef:
    run_id: str
    at: datetime | None
    """When the run ended (or was due, for one that has not ended)."""


@dataclass(frozen=True)
class DagFacts:
    """What the metadata DB and the ledgers say about one flow's DAG."""

    dag_id: str
    customer: str
    integration: str
    flow: str
    pattern: str
    is_paused: bool
    next_run: datetime | None = None
    latest_state: str | None = None
    last_success: RunRef | None = None
    last_failure: RunRef | None = None
    failed_task: str | None = None
    """The failed step of the last failed run (its log is one click from the grid)."""
    failure_reason: str | None = None
    """The public reason of the last failure (a step's own message, else which step failed)."""
    retried: bool = False
    counts: dict[str, int | None] = field(default_factory=dict)
    """``COUNT_NAMES`` -> count; None when the ledger's database could not be read."""


@dataclass(frozen=True)
class InstanceKey:
    customer: str
    customer_name: str
    integration: str
    active: bool


@dataclass(frozen=True)
class Filters:
    customer: str | None = None
    integration: str | None = None
    pattern: str | None = None
    health: Health | None = None
    search: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _last_finished(flow: DagFacts) -> str | None:
    done = [r for r in (flow.last_success, flow.last_failure) if r is not None]
    if not done:
        return None
    newest = max(done, key=lambda r: (r.at is not None, r.at or datetime.min))
    return "success" if newest is flow.last_success else "failed"


def flow_facts(flow: DagFacts) -> FlowFacts:
    """The facts ``decide`` takes, named as the status route names them."""
    counts = flow.counts
    set_aside = {
        "quarantined records in the last 24 h": counts.get("quarantined_records_24h") or 0,
        **{
            k: counts.get(k) or 0
            for k in COUNT_NAMES
            if k not in ("rows_loaded_24h", "quarantined_records_24h")
        },
    }
    return FlowFacts(
        flow.flow,
        is_paused=flow.is_paused,
        last_state=_last_finished(flow),
        has_runs=flow.latest_state is not None,
        retried=flow.retried and _last_finished(flow) is not None,
        set_aside=set_aside,
    )


def build_row(key: InstanceKey, flows: Sequence[DagFacts], problems: Sequence[Problem]) -> dict[str, Any]:
    """One grid row: health word and reasons, last success, last failure (with its reason and failed
    step), next run and the counts summed over the instance's flows."""
    health, reasons = decide(InstanceFacts(key.active, len(problems), [flow_facts(f) for f in flows]))
    success = max(
        (f for f in flows if f.last_success),
        key=lambda f: f.last_success.at or datetime.min,
        default=None,  # type: ignore[union-attr]
    )
    failure = max(
        (f for f in flows if f.last_failure),
        key=lambda f: f.last_failure.at or datetime.min,
        default=None,  # type: ignore[union-attr]
    )
    upcoming = min(
        (f for f in flows if f.next_run and not f.is_paused), key=lambda f: f.next_run, default=None
    )  # type: ignore[arg-type,return-value]
    counts: dict[str, int | None] = {}
    for name in COUNT_NAMES:
        values = [f.counts[name] for f in flows if name in f.counts]
        counts[name] = None if any(v is None for v in values) else sum(v or 0 for v in values)
    patterns = sorted({f.pattern for f in flows if f.pattern})
    return {
        "customer": key.customer,
        "customer_name": key.customer_name,
        "integration": key.integration,
        "patterns": patterns,
        "active": key.active,
        "health": health,
        "reasons": reasons,
        "last_success": None
        if success is None
        else {
            "dag_id": success.dag_id,
            "flow": success.flow,
            "run_id": success.last_success.run_id,  # type: ignore[union-attr]
            "at": _iso(success.last_success.at),
        },  # type: ignore[union-attr]  # fmt: skip
        "last_failure": None
        if failure is None
        else {
            "dag_id": failure.dag_id,
            "flow": failure.flow,
            "run_id": failure.last_failure.run_id,  # type: ignore[union-attr]
            "at": _iso(failure.last_failure.at),
            "task_id": failure.failed_task,  # type: ignore[union-attr]
            "reason": failure.failure_reason,
        },  # fmt: skip
        "next_run": None
        if upcoming is None
        else {"dag_id": upcoming.dag_id, "flow": upcoming.flow, "at": _iso(upcoming.next_run)},
        "counts": counts,
        "config_problems": len(problems),
        "flows": [
            {"flow": f.flow, "dag_id": f.dag_id, "is_paused": f.is_paused, "latest_state": f.latest_state}
            for f in sorted(flows, key=lambda f: f.flow)
        ],
    }


def matches(row: Mapping[str, Any], filters: Filters) -> bool:
    if filters.customer and row["customer"] != filters.customer:
        return False
    if filters.integration and row["integration"] != filters.integration:
        return False
    if filters.pattern and filters.pattern not in row["patterns"]:
        return False
    if filters.health and row["health"] != filters.health:
        return False
    if filters.search:
        needle = filters.search.casefold()
        haystack = (row["customer"], row["customer_name"], row["integration"], *(row["reasons"] or ()))
        if not any(needle in str(text).casefold() for text in haystack):
            return False
    return True


def overview(
    instances: Iterable[InstanceKey],
    flows_of: Mapping[tuple[str, str], Sequence[DagFacts]],
    problems_of: Mapping[tuple[str, str], Sequence[Problem]],
    filters: Filters,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """The page of rows, the total after filtering, and per health word the count (of the filtered rows
    but for the health filter itself, so the page can say "12 failing" while showing the healthy ones)."""
    rows = [
        build_row(
            key,
            flows_of.get((key.customer, key.integration), ()),
            problems_of.get((key.customer, key.integration), ()),
        )
        for key in instances
    ]
    unhealthy_filter = Filters(filters.customer, filters.integration, filters.pattern, None, filters.search)
    by_health: dict[str, int] = dict.fromkeys(URGENCY, 0)
    for row in rows:
        if matches(row, unhealthy_filter):
            by_health[row["health"]] += 1
    kept = [row for row in rows if matches(row, filters)]
    kept.sort(key=lambda r: (URGENCY[r["health"]], r["customer"], r["integration"]))
    return {
        "total": len(kept),
        "offset": offset,
        "limit": limit,
        "by_health": by_health,
        "items": kept[offset : offset + limit],
    }
