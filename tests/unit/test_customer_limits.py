"""A customer's share (``limits``): checked like every other key, planned into pool, weight and run caps,
built into every task, and the pools kept idempotently in the metadata DB. The scheduler honouring them
is tests/integration/test_fairness.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.build import build_dag
from b2b_integrations.factory.planner import plan_project
from helpers import minimal_customer, minimal_template, write_include


def _plans(
    tmp_path: Path, customers: dict[str, Any], template: dict[str, Any] | None = None
) -> dict[str, Any]:
    include = write_include(tmp_path / "include", {"sync": template or minimal_template()}, customers)
    project = load_project(include)
    assert project.problems == [], [str(p) for p in project.problems]
    return {p.customer_id: p for p in plan_project(project)}


def _capped(customer_id: str, **limits: Any) -> dict[str, Any]:
    return {**minimal_customer(customer_id, connections={"db": "x"}), "limits": limits}


def test_defaults_leave_the_dag_as_airflow_builds_it(tmp_path: Path) -> None:
    plan = _plans(tmp_path, {"acme": minimal_customer()})["acme"]
    assert plan.pool is None and plan.priority_weight is None and plan.max_active_runs == 1
    task = build_dag(plan, auto_register=False).tasks[0]
    assert task.pool == "default_pool" and task.priority_weight == 1


def test_limits_become_pool_weight_and_run_cap(tmp_path: Path) -> None:
    template = minimal_template()
    template["flows"]["snapshot"]["max_active_runs"] = 32
    plans = _plans(
        tmp_path,
        {
            "big": _capped("big", max_active_tasks=3, max_active_runs=4, priority_weight=7),
            "small": _capped("small", max_active_runs=64),  # a cap above the template's lowers nothing
        },
        template,
    )
    big, small = plans["big"], plans["small"]
    assert (big.pool, big.priority_weight, big.max_active_runs) == ("b2b_customer_big", 7, 4)
    assert (small.pool, small.priority_weight, small.max_active_runs) == (None, None, 32)
    dag = build_dag(big, auto_register=False)
    assert {(t.pool, t.priority_weight) for t in dag.tasks} == {("b2b_customer_big", 7)}
    assert dag.max_active_runs == 4


@pytest.mark.parametrize(
    ("limits", "key", "words"),
    [
        ({"max_active_tasks": 0}, "limits.max_active_tasks", "greater than or equal to 1"),
        ({"priority_weight": 101}, "limits.priority_weight", "less than or equal to 100"),
        ({"max_active_runs": "many"}, "limits.max_active_runs", "valid integer"),
        ({"max_tasks": 2}, "limits.max_tasks", "unknown key"),
    ],
)
def test_bad_limits_are_the_customers_problem_only(
    tmp_path: Path, limits: dict[str, Any], key: str, words: str
) -> None:
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template()},
        {"acme": {**minimal_customer(), "limits": limits}, "globex": minimal_customer("globex")},
    )
    project = load_project(include)
    assert [(p.file, p.key_path) for p in project.problems] == [("include/customers/acme.yaml", key)]
    assert words in project.problems[0].message
    assert [p.customer_id for p in plan_project(project)] == ["globex"]


def test_pools_are_created_resized_and_pruned_idempotently(airflow_db: str) -> None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from b2b_integrations.config.models import Customer
    from b2b_integrations.pools import sync_pools, wanted_pools

    def customers(**caps: int | None) -> list[Customer]:
        return [
            Customer.model_validate({"id": name, "name": name, "limits": {"max_active_tasks": cap}})
            for name, cap in caps.items()
        ]

    def slots() -> dict[str, int]:
        with create_session() as session:
            rows = session.execute(select(Pool.pool, Pool.slots).where(Pool.pool.startswith("b2b_customer_")))
            return dict(rows.all())

    wanted = wanted_pools(customers(lim_a=2, lim_b=5, lim_c=None))
    assert wanted == {"b2b_customer_lim_a": 2, "b2b_customer_lim_b": 5}
    with create_session() as session:
        first = sync_pools(wanted, session)
    assert first.created == ["b2b_customer_lim_a", "b2b_customer_lim_b"]
    with create_session() as session:
        second = sync_pools(wanted, session)
    assert second.created == second.updated == [] and len(second.unchanged) == 2
    with create_session() as session:
        third = sync_pools(wanted_pools(customers(lim_a=4)), session)
    assert third.updated == ["b2b_customer_lim_a"] and third.orphaned == ["b2b_customer_lim_b"]
    assert slots() == {"b2b_customer_lim_a": 4, "b2b_customer_lim_b": 5}  # reported, not dropped
    with create_session() as session:
        pruned = sync_pools(wanted_pools(customers(lim_a=4)), session, prune=True)
    assert pruned.pruned == ["b2b_customer_lim_b"]
    # One customer's write (the API's path) touches only its pool, never reports others as orphans.
    with create_session() as session:
        one = sync_pools({"b2b_customer_lim_c": 1}, session, complete=False)
    assert one.created == ["b2b_customer_lim_c"] and one.orphaned == []
    assert slots() == {"b2b_customer_lim_a": 4, "b2b_customer_lim_c": 1}
    with create_session() as session:
        sync_pools({}, session, prune=True)
    assert slots() == {}
