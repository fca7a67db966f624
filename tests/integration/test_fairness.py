"""One customer's backlog does not hold back another customer's run (``limits`` of a customer file).

A real scheduler (LocalExecutor, 4 task slots), dag-processor and API server. Customer ``hog`` has a flow
its template lets run 64 at once, and a backlog of 40 runs triggered through the REST API, each earlier
than anything else (Airflow starts scheduled tasks by priority, then by logical date, so without a cap
every one of hog's 40 tasks is ahead of the other customer's). ``hog`` is capped with
``limits.max_active_tasks: 1``; its pool is created by ``python -m b2b_integrations pools``, as a deployment
does. Customer ``other`` then triggers one run: it must finish while hog's backlog is still there, with
hog holding no more than its one slot the whole time.

Without the cap (the same test with ``limits`` removed) ``other``'s task starts only after hog's 40.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import write_include

pytestmark = pytest.mark.airflow_stack

BACKLOG = 40
HOG, OTHER = "hog__fair__work", "other__fair__work"


def _template() -> dict[str, Any]:
    return {
        "name": "fair",
        "defaults": {"retries": 0},
        "flows": {
            "work": {
                "trigger": {"type": "manual"},
                "max_active_runs": 64,  # the template allows a burst: only the customer's cap holds it
                "steps": [
                    {
                        "id": "generate",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.demo.generate_inventory",
                        "options": {"warehouse": "${customer.id}", "sku_count": 3, "as_of": "2026-01-01"},
                    }
                ],
            }
        },
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    include = tmp_path_factory.mktemp("fair") / "include"
    write_include(
        include,
        templates={"fair": _template()},
        customers={
            "hog": {
                "id": "hog",
                "name": "Hog",
                "limits": {"max_active_tasks": 1},
                "integrations": {"fair": {}},
            },
            "other": {"id": "other", "name": "Other", "integrations": {"fair": {}}},
        },
    )
    airflow = start_airflow_stack(include, {"AIRFLOW__CORE__PARALLELISM": "4"})
    try:
        yield airflow
    finally:
        airflow.stop()


def _trigger(stack: AirflowStack, headers: dict[str, str], dag_id: str, run_id: str, when: datetime) -> None:
    body = {"dag_run_id": run_id, "logical_date": when.isoformat()}
    answer = httpx.post(f"{stack.url}/api/v2/dags/{dag_id}/dagRuns", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text


def test_a_capped_backlog_leaves_room_for_another_customer(stack: AirflowStack) -> None:
    stack.wait_for(
        "both customers' DAGs",
        lambda: stack.sql(f"SELECT count(*) FROM dag WHERE dag_id IN ('{HOG}', '{OTHER}')")[0][0] == 2,
        timeout=180,
    )
    pools = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "pools"],
        env=stack.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert pools.returncode == 0, pools.stderr[-3000:]
    assert "created: b2b_customer_hog" in pools.stdout
    assert stack.sql("SELECT slots FROM slot_pool WHERE pool = 'b2b_customer_hog'") == [(1,)]
    # Idempotent: a second sync changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "pools"],
        env=stack.env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    # Nothing created, resized or pruned, and hog's pool among the unchanged (the other test of this module
    # may have left pools of its own customer, in any order).
    changes = [
        line for line in again.stdout.splitlines() if line.startswith(("created:", "resized:", "pruned:"))
    ]
    assert changes == [] and "b2b_customer_hog" not in again.stdout, again.stdout
    assert int(again.stdout.splitlines()[-1].split()[0]) >= 1, again.stdout

    headers = {"Authorization": f"Bearer {stack.token()}"}
    base = datetime.now(UTC) - timedelta(days=1)
    for i in range(BACKLOG):
        _trigger(stack, headers, HOG, f"backlog_{i:03d}", base + timedelta(seconds=i))
    stack.wait_for(
        "hog's backlog to be running",
        lambda: (
            stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{HOG}' AND state = 'running'")[0][0]
            >= 10
        ),
        timeout=180,
    )
    _trigger(stack, headers, OTHER, "after_the_backlog", datetime.now(UTC))
    stack.wait_for(
        "other's run",
        lambda: stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{OTHER}'") == [("success",)],
        timeout=300,
    )
    other_start = stack.sql(f"SELECT start_date FROM task_instance WHERE dag_id = '{OTHER}'")[0][0]
    hog_done = stack.sql(
        f"SELECT count(*) FROM task_instance WHERE dag_id = '{HOG}' AND start_date IS NOT NULL "
        f"AND start_date < '{other_start.isoformat()}'"
    )[0][0]
    # Without the cap every one of hog's 40 tasks starts first (they are ahead by logical date).
    assert hog_done < BACKLOG // 2, f"{hog_done} of hog's tasks started before other's"
    assert {p for (p,) in stack.sql(f"SELECT DISTINCT pool FROM task_instance WHERE dag_id = '{HOG}'")} == {
        "b2b_customer_hog"
    }
    assert stack.sql(f"SELECT DISTINCT pool FROM task_instance WHERE dag_id = '{OTHER}'") == [
        ("default_pool",)
    ]
    # hog never held more than its one slot: no two of its tasks overlapped.
    overlaps = stack.sql(
        f"SELECT count(*) FROM task_instance a JOIN task_instance b ON a.dag_id = b.dag_id AND a.run_id < b.run_id "
        f"WHERE a.dag_id = '{HOG}' AND a.start_date IS NOT NULL AND b.start_date IS NOT NULL "
        "AND a.start_date < coalesce(b.end_date, now()) AND b.start_date < coalesce(a.end_date, now())"
    )[0][0]
    assert overlaps == 0


def test_customer_endpoints_keep_the_pool(stack: AirflowStack) -> None:
    """Onboarding or editing a capped customer through the API creates or resizes its pool in the same
    request; a refused cap creates nothing."""
    api = httpx.Client(
        base_url=f"{stack.url}/b2b/api/v1", headers={"Authorization": f"Bearer {stack.token()}"}, timeout=60
    )
    refused = api.post("/customers", json={"id": "bad_cap", "name": "Bad", "limits": {"max_active_tasks": 0}})
    assert refused.status_code == 422, refused.text
    assert "limits.max_active_tasks" in refused.text
    created = api.post(
        "/customers", json={"id": "capped", "name": "Capped", "limits": {"max_active_tasks": 3}}
    )
    assert created.status_code == 201, created.text
    assert stack.sql("SELECT slots FROM slot_pool WHERE pool = 'b2b_customer_capped'") == [(3,)]
    changed = api.put(
        "/customers/capped",
        json={"name": "Capped", "limits": {"max_active_tasks": 5}},
        headers={"If-Match": created.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text
    assert stack.sql("SELECT slots FROM slot_pool WHERE pool = 'b2b_customer_capped'") == [(5,)]
    assert stack.sql("SELECT count(*) FROM slot_pool WHERE pool = 'b2b_customer_bad_cap'") == [(0,)]
