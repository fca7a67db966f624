"""Customer pools in Airflow's metadata DB: one ``b2b_customer_<id>`` pool per customer with
``limits.max_active_tasks``, its slots that value.

A DAG file cannot write to the metadata DB (the dag-processor parses without it), so the pools are kept by
whoever changes the limits: ``python -m b2b_integrations pools`` at deploy time for every customer file, and
the engineers-only customer endpoints for the customer they wrote. Idempotent: a pool that exists with the
right slots is left alone, a changed cap updates the slots in place (tasks already queued keep their
pool). Pools of customers no longer capped are reported, not dropped: a run created before the change may
still have tasks in them; ``prune`` removes those that no task instance waits in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from b2b_integrations.config.limits import POOL_PREFIX, customer_pool

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from b2b_integrations.config.models import Customer


@dataclass
class PoolSync:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    """Pools named for a customer that no longer asks for one (left in place unless pruned)."""
    pruned: list[str] = field(default_factory=list)


def wanted_pools(customers: Iterable[Customer]) -> dict[str, int]:
    """Pool name -> slots for every customer with a task cap (disabled customers build no DAGs)."""
    return {
        customer_pool(c.id): c.limits.max_active_tasks
        for c in customers
        if c.enabled and c.limits.max_active_tasks
    }


def _description(name: str) -> str:
    return f"Tasks of customer {name.removeprefix(POOL_PREFIX)} (limits.max_active_tasks; b2b_integrations)"


def sync_pools(
    wanted: dict[str, int], session: Session, *, complete: bool = True, prune: bool = False
) -> PoolSync:
    """Create or resize the pools in ``wanted``. ``complete``: ``wanted`` covers every customer, so other
    ``b2b_customer_*`` pools are orphans (reported, removed with ``prune`` when no task waits in them)."""
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select
    from sqlalchemy.exc import IntegrityError

    result = PoolSync()
    existing = {
        pool.pool: pool
        for pool in session.scalars(select(Pool).where(Pool.pool.startswith(POOL_PREFIX, autoescape=True)))
    }
    for name, slots in sorted(wanted.items()):
        pool = existing.get(name)
        if pool is None:
            try:
                # A savepoint: two API workers writing the same customer may create it at once.
                with session.begin_nested():
                    session.add(
                        Pool(pool=name, slots=slots, description=_description(name), include_deferred=False)
                    )
            except IntegrityError:
                pool = session.scalar(select(Pool).where(Pool.pool == name))
            else:
                result.created.append(name)
                continue
        if pool is not None and pool.slots != slots:
            pool.slots = slots
            result.updated.append(name)
        elif pool is not None:
            result.unchanged.append(name)
    if complete:
        for name in sorted(set(existing) - set(wanted)):
            waiting = session.scalar(
                select(func.count())
                .select_from(TaskInstance)
                .where(TaskInstance.pool == name, TaskInstance.state.in_(("scheduled", "queued", "running")))
            )
            if prune and not waiting:
                session.delete(existing[name])
                result.pruned.append(name)
            else:
                result.orphaned.append(name)
    session.flush()
    return result
