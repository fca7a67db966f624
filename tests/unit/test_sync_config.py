"""Sync flows from config to DAG: trigger options, validation, the plan, the built DAG, the endpoint's routes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.config.loader import Project, load_project
from b2b_integrations.factory.planner import SYNC_MAX_ACTIVE_RUNS, plan_project
from b2b_integrations.sync.outcome import CALLBACK_TASK_ID
from b2b_integrations.sync.routes import SyncRoutes, sync_routes_of
from helpers import REPO, shipped_template, write_include

CUSTOMER = {
    "id": "umbrella",
    "name": "Umbrella",
    "integrations": {
        "orders": {
            "connections": {"payments_api": "u_pay", "warehouse_api": "u_wh", "callback_secret": "u_cb"}
        }
    },
}


def _project(tmp_path: Path, template: dict[str, Any], customer: dict[str, Any] | None = None) -> Project:
    include = write_include(tmp_path / "include", {"orders": template}, {"umbrella": customer or CUSTOMER})
    return load_project(include)


def _orders() -> dict[str, Any]:
    return copy.deepcopy(shipped_template("orders"))


def _messages(project: Project) -> list[str]:
    return [str(p) for p in project.problems]


def test_the_shipped_example_validates_and_plans_a_sync_dag() -> None:
    project = load_project(REPO / "include")
    assert project.problems == [] and project.warnings == []
    [plan] = [p for p in plan_project(project) if p.dag_id == "umbrella__orders__place_order"]
    assert plan.pattern == "synchronous" and plan.schedule is None and plan.schedule_asset is None
    assert plan.max_active_runs == SYNC_MAX_ACTIVE_RUNS
    assert [t.task_id for t in plan.tasks] == ["charge_payment", "create_fulfilment"]
    assert plan.sync is not None and plan.sync.result_task_id == "create_fulfilment"
    callback = plan.sync.callback
    assert callback.task_id == CALLBACK_TASK_ID
    assert callback.arguments["secret_conn_id"] == "umbrella_callback_secret"
    assert callback.arguments["steps"] == ["charge_payment", "create_fulfilment"]
    charge = plan.tasks[0].arguments
    assert charge["http_conn_id"] == "umbrella_payments" and "connection" not in charge
    assert charge["failure_statuses"] == [402] and charge["idempotency_header"] == "Idempotency-Key"
    assert "POST /b2b/sync/umbrella/orders/place_order" in plan.doc_md


@pytest.mark.parametrize(
    ("change", "key_path", "expected"),
    [
        (lambda t: t["trigger"].update(result_step="nope"), "flows.place_order.trigger.result_step", "unknown step 'nope'"),
        (lambda t: t["trigger"].update(callback_secret_connection="nope"), "flows.place_order.trigger.callback_secret_connection", "unknown connection slot 'nope'"),
        (lambda t: t["trigger"].update(timeout_seconds=200, max_timeout_seconds=100), "flows.place_order.trigger", "more than max_timeout_seconds"),
        (lambda t: t["trigger"].update(input_schema={"type": "objekt"}), "flows.place_order.trigger.input_schema", "not a valid JSON Schema"),
        (lambda t: t["steps"][0].update(per="run", endpoint="/c/{order_id}"), "flows.place_order.steps[0]", "cannot use '{field}'"),
        (lambda t: t["steps"][0].update(failure_statuses=[200]), "flows.place_order.steps[0].failure_statuses[0]", "greater than or equal to 400"),
        (lambda t: t["steps"][0].update(auth={"type": "magic"}), "flows.place_order.steps[0].auth.type", "auth type must be one of"),
        (lambda t: t["steps"][0].update(idempotency_header="Idem Key"), "flows.place_order.steps[0].idempotency_header", "should match pattern"),
    ],
)  # fmt: skip
def test_sync_and_http_call_mistakes_are_reported_where_they_are(
    tmp_path: Path, change: Any, key_path: str, expected: str
) -> None:
    template = _orders()
    change(template["flows"]["place_order"])
    found = [m for m in _messages(_project(tmp_path, template)) if f": {key_path}: " in m]
    assert any(expected in m for m in found), _messages(_project(tmp_path, template))


def test_a_first_step_that_cannot_read_the_request_is_a_warning(tmp_path: Path) -> None:
    template = _orders()
    template["flows"]["place_order"]["steps"].insert(
        0,
        {
            "id": "prepare",
            "kind": "transform",
            "callable": "b2b_integrations.transforms.common.select_columns",
        },
    )
    project = _project(tmp_path, template)
    assert project.problems == []
    assert any(
        "flows.place_order.steps[0].kind" in str(w) and "gets no input" in str(w) for w in project.warnings
    )


def test_result_step_and_max_active_runs_can_be_set(tmp_path: Path) -> None:
    template = _orders()
    template["flows"]["place_order"]["trigger"]["result_step"] = "charge_payment"
    template["flows"]["place_order"]["max_active_runs"] = 2
    [plan] = plan_project(_project(tmp_path, template))
    assert plan.sync is not None and plan.sync.result_task_id == "charge_payment"
    assert plan.max_active_runs == 2


def test_routes_know_steps_result_and_whether_callbacks_are_signed(tmp_path: Path) -> None:
    routes = sync_routes_of(_project(tmp_path, _orders()))
    route = routes[("umbrella", "orders", "place_order")]
    assert route.dag_id == "umbrella__orders__place_order"
    assert route.steps == ("charge_payment", "create_fulfilment") and route.result_step == "create_fulfilment"
    assert (route.timeout_seconds, route.max_timeout_seconds) == (30, 120)
    assert route.callbacks and route.input_schema is not None and "order_id" in route.input_schema["required"]
    unsigned = copy.deepcopy(CUSTOMER)
    del unsigned["integrations"]["orders"]["connections"]["callback_secret"]
    route = sync_routes_of(_project(tmp_path / "unsigned", _orders(), unsigned))[
        ("umbrella", "orders", "place_order")
    ]
    assert not route.callbacks


def test_disabled_flows_have_no_route_and_changes_are_picked_up(tmp_path: Path) -> None:
    include = write_include(tmp_path / "include", {"orders": _orders()}, {"umbrella": CUSTOMER})
    routes = SyncRoutes(include)
    assert routes.find("umbrella", "orders", "place_order") is not None
    assert routes.find("umbrella", "orders", "other") is None
    disabled = copy.deepcopy(CUSTOMER)
    disabled["integrations"]["orders"]["flows"] = {"place_order": {"enabled": False}}
    write_include(include, customers={"umbrella": disabled})
    assert routes.find("umbrella", "orders", "place_order") is None


def test_the_built_dag_ends_with_a_teardown_callback_and_marks_the_result(tmp_path: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from b2b_integrations.factory.build import build_dag

    [plan] = plan_project(_project(tmp_path, _orders()))
    dag = build_dag(plan)
    order = [t.task_id for t in dag.topological_sort()]
    assert order == ["charge_payment", "create_fulfilment", CALLBACK_TASK_ID]
    callback = dag.task_dict[CALLBACK_TASK_ID]
    assert callback.is_teardown and callback.trigger_rule == "all_done_setup_success"
    assert dag.task_dict["create_fulfilment"].returns_dag_result
    assert not dag.task_dict["charge_payment"].returns_dag_result
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.task_dict[CALLBACK_TASK_ID].is_teardown
