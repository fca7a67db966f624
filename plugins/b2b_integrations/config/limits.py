"""A customer's share of the deployment: how many of its runs and tasks may hold worker slots at once, and
the weight its tasks carry when slots are scarce (``limits:`` of a customer file).

The defaults change nothing in the DAGs: a flow keeps its template's ``max_active_runs`` (1, a synchronous
flow 16), tasks stay in Airflow's ``default_pool`` with Airflow's weight of 1. Set by the data engineer
(customer files and the engineers-only customer endpoints), never by a customer token.
"""

from __future__ import annotations

from pydantic import Field

from b2b_integrations.config.base import StrictModel

POOL_PREFIX = "b2b_customer_"
"""Airflow pool of a customer with ``max_active_tasks``: ``b2b_customer_<id>`` (ids are lower_snake_case, so
no two customers share a pool name)."""


def customer_pool(customer_id: str) -> str:
    return f"{POOL_PREFIX}{customer_id}"


class CustomerLimits(StrictModel):
    """Caps and weight of one customer's work, so one customer's backlog cannot hold every worker slot."""

    max_active_tasks: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Tasks of this customer running or queued at once, over all its flows: its tasks run in "
        "the Airflow pool b2b_customer_<id> with this many slots (kept by `python -m b2b_integrations pools` "
        "and the customer endpoints). Unset: Airflow's default_pool, bounded only by each flow's "
        "max_active_runs.",
    )
    max_active_runs: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Upper bound on every flow's max_active_runs for this customer (a template's higher "
        "value is lowered to it). Unset: the template's value (1; synchronous flows 16).",
    )
    priority_weight: int = Field(
        1,
        ge=1,
        le=100,
        description="Weight of every task of this customer (Airflow's priority_weight, summed downstream as "
        "usual, so a flow's steps keep their order): when slots are scarce, higher goes first.",
    )
