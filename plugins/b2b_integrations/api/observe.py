"""``/api/v1/customers/{c}/instances/{i}``: status, run history and troubleshooting actions of an instance.

Reads need the read scope, actions the write scope; a customer token sees only its own customer (another
customer's instance answers 404 exactly like a missing one). The facts and actions themselves live in
``instances/observe.py``; this module checks the caller and the request and shapes the answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from b2b_integrations.api import models
from b2b_integrations.api.access import authorize
from b2b_integrations.api.deps import Services, Svc, Who, read_object
from b2b_integrations.api.errors import ApiError
from b2b_integrations.instances.errors import NotFound
from b2b_integrations.instances.observe import InstancePlan

router = APIRouter(prefix="/api/v1")
base = "/customers/{customer}/instances/{integration}"
_ERRORS = models.error_responses(
    {**models.COMMON_ERRORS, 404: "No such customer, instance, flow or run, or none the caller may see."}
)
_ACTION_WORDING = {
    **models.COMMON_ERRORS,
    404: "No such customer, instance, flow or run, or none the caller may see.",
    400: "The body is not a JSON object.",
    409: "The flow or run is not in a state that allows this.",
    422: "A value of the body is refused; the key is named.",
}
_ACTION_ERRORS = models.error_responses(_ACTION_WORDING)
_REPLAY_ERRORS = models.error_responses(
    {**_ACTION_WORDING, 503: "A dead letter's database or target cannot be reached."}
)


def _instance(svc: Services, customer: str, integration: str) -> tuple[dict[str, Any], InstancePlan]:
    from b2b_integrations.instances.observe import plan_instance

    record = svc.store.get(customer, integration)  # 404 for a missing customer or instance
    return record.settings, plan_instance(svc.include_dir, customer, integration)


def _flow(instance: InstancePlan, customer: str, integration: str, flow: str) -> Any:
    plan = instance.flow(flow)
    if plan is None:
        raise NotFound(f"{customer}/{integration} has no deployed flow {flow!r}")
    return plan


@router.get(
    base + "/status", tags=["observe"], response_model=models.InstanceStatus, responses=_ERRORS,
    summary="Health word, and per flow the last and next run and counts (rows loaded, quarantined, dead letters)",
)  # fmt: skip
def status(customer: str, integration: str, who: Who, svc: Svc) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.instances.observe import instance_status

    authorize(who, "read")
    who.confine(customer)
    settings, instance = _instance(svc, customer, integration)
    with create_session() as session:
        return instance_status(
            session, instance, customer, integration, active=settings.get("active") is not False
        )


@router.get(
    base + "/flows/{flow}/runs", tags=["observe"], response_model=models.RunList, responses=_ERRORS,
    summary="A flow's runs, newest first; a failed run names its failed step, public error and a log excerpt",
)  # fmt: skip
def runs(
    customer: str,
    integration: str,
    flow: str,
    who: Who,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.instances.observe import connection_secrets, instance_conn_ids, run_history

    authorize(who, "read")
    who.confine(customer)
    settings, instance = _instance(svc, customer, integration)
    plan = _flow(instance, customer, integration, flow)
    secrets = connection_secrets(instance_conn_ids(instance, settings))
    with create_session() as session:
        total, found = run_history(session, plan, limit, offset, secrets)
    return {
        "customer": customer,
        "integration": integration,
        "flow": flow,
        "total": total,
        "offset": offset,
        "limit": limit,
        "runs": found,
    }


@router.post(
    base + "/flows/{flow}/runs", tags=["observe"], status_code=201, response_model=models.RunStarted,
    responses=_ACTION_ERRORS,
    summary="Run a flow now, optionally overriding config values for this run only",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": models.RunRequest.model_json_schema()}}}},
)  # fmt: skip
async def run_now(
    customer: str, integration: str, flow: str, request: Request, who: Who, svc: Svc
) -> dict[str, Any]:
    from b2b_integrations.instances.observe import check_overrides, dag_rows, trigger_run

    authorize(who, "write")
    who.confine(customer)
    body = await read_object(request)
    unknown = sorted(set(body) - {"config"})
    if unknown:
        raise ApiError(422, "invalid", f"{unknown[0]}: unknown key (the body takes 'config' only)")
    overrides = body.get("config", {})
    if not isinstance(overrides, dict):
        raise ApiError(422, "invalid", "config: must be an object of config values")

    def start() -> dict[str, Any]:
        from airflow.utils.session import create_session

        _, instance = _instance(svc, customer, integration)
        plan = _flow(instance, customer, integration, flow)
        refused = check_overrides(plan, instance.template, overrides)
        if refused:
            raise ApiError(422, "invalid", refused, key=refused.split(":", 1)[0])
        with create_session() as session:
            row = dag_rows(session, [plan.dag_id]).get(plan.dag_id)
        if row is None or row.is_stale:
            raise ApiError(409, "not_deployed", f"flow {flow} is not deployed yet: try again in a minute")
        if row.is_paused:
            raise ApiError(409, "paused", f"flow {flow} is paused: activate the instance first")
        from airflow.exceptions import DagNotFound

        try:
            run_id = trigger_run(plan.dag_id, overrides, who.name)
        except DagNotFound:
            raise ApiError(
                409, "not_deployed", f"flow {flow} is not deployed yet: try again in a minute"
            ) from None
        except ValueError as e:  # the deployed DAG's params refuse it (it predates a template change)
            raise ApiError(
                409, "refused", f"flow {flow}'s deployed DAG refused the run ({type(e).__name__}): try again "
                "once the latest change is deployed",
            ) from None  # fmt: skip
        return {"customer": customer, "integration": integration, "flow": flow, "run_id": run_id,
                "config": overrides, "state": "queued"}  # fmt: skip

    return await run_in_threadpool(start)


@router.post(
    base + "/flows/{flow}/runs/{run_id}/retry", tags=["observe"], response_model=models.RunRetried,
    responses={**_ERRORS, 409: _ACTION_ERRORS[409]},
    summary="Retry a failed run: its failed steps (and those they held back) run again",
)  # fmt: skip
def retry(customer: str, integration: str, flow: str, run_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.instances.observe import retry_failed

    authorize(who, "write")
    who.confine(customer)
    _, instance = _instance(svc, customer, integration)
    plan = _flow(instance, customer, integration, flow)
    with create_session() as session:
        state, cleared = retry_failed(session, plan.dag_id, run_id)
    if state is None:
        raise NotFound(f"flow {flow} has no run {run_id!r}")
    if state != "failed":
        raise ApiError(409, "not_failed", f"run {run_id} is {state}: only a failed run can be retried")
    if not cleared:
        raise ApiError(
            409, "no_failed_step",
            f"run {run_id} failed without a failed step (marked failed or timed out): start a new run",
        )  # fmt: skip
    return {"customer": customer, "integration": integration, "flow": flow, "run_id": run_id,
            "cleared_steps": cleared, "state": "queued"}  # fmt: skip


@router.post(
    base + "/replay", tags=["observe"], response_model=models.ReplayAnswer, responses=_REPLAY_ERRORS,
    summary="Replay the instance's dead letters and quarantined messages (the body selects which)",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": models.ReplayRequest.model_json_schema()}}}},
)  # fmt: skip
async def replay(customer: str, integration: str, request: Request, who: Who, svc: Svc) -> dict[str, Any]:
    authorize(who, "write")
    who.confine(customer)
    body = await read_object(request)
    selection = _replay_selection(body)

    def run() -> dict[str, Any]:
        _, instance = _instance(svc, customer, integration)
        return _replay(svc, instance, customer, integration, selection)

    return await run_in_threadpool(run)


def _replay_selection(body: dict[str, Any]) -> dict[str, Any]:
    allowed = {"flow", "dead_letters", "quarantined", "message_ids", "webhooks", "event_ids"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(422, "invalid", f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in ("dead_letters", "quarantined"):
        if not isinstance(body.get(key, True), bool):
            raise ApiError(422, "invalid", f"{key}: must be true or false")
    for key in ("message_ids", "webhooks", "event_ids"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, list)
            or not all(isinstance(v, str) and 0 < len(v) <= 255 for v in value)
            or len(value) > 1000
        ):
            what = "event" if key == "event_ids" else "message"
            raise ApiError(422, "invalid", f"{key}: must be a list of at most 1000 {what} ids")
    flow = body.get("flow")
    if flow is not None and not isinstance(flow, str):
        raise ApiError(422, "invalid", "flow: must be a flow name")
    if (body.get("message_ids") or body.get("webhooks") or body.get("event_ids")) and flow is None:
        raise ApiError(422, "invalid", "flow: name the flow the message or event ids belong to")
    if body.get("event_ids") and body.get("dead_letters") is False:
        raise ApiError(
            422, "invalid", "event_ids: name dead letters to replay, so dead_letters cannot be false"
        )
    return {
        "flow": flow,
        "dead_letters": body.get("dead_letters", True),
        "quarantined": body.get("quarantined", True),
        "message_ids": body.get("message_ids"),
        "webhooks": body.get("webhooks") or [],
        "event_ids": body.get("event_ids"),
    }


def _replay(
    svc: Services, instance: InstancePlan, customer: str, integration: str, selection: dict[str, Any]
) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.replay.dead_letters import replay_dead_letters
    from b2b_integrations.replay.quarantine import replay_quarantined
    from b2b_integrations.replay.webhooks import replay_webhook

    flows = instance.plans
    if selection["flow"] is not None:
        flows = [_flow(instance, customer, integration, selection["flow"])]
    answer: dict[str, Any] = {"customer": customer, "integration": integration, "flows": []}
    for plan in flows:
        found: dict[str, Any] = {"flow": plan.flow}
        if selection["quarantined"] and plan.inbox is not None:
            try:
                with create_session() as session:
                    outcomes = replay_quarantined(
                        session, customer, integration, plan.flow, selection["message_ids"]
                    )
            except LookupError as e:
                if selection["message_ids"] is not None:  # named messages that are not there
                    raise ApiError(404, "not_found", str(e)) from None
                outcomes = []  # the inbox does not exist yet: nothing was ever quarantined
            found["quarantined"] = [{"message_id": m, "outcome": o} for m, o in outcomes]
        if selection["webhooks"]:
            queued = []
            with create_session() as session:
                for message_id in selection["webhooks"]:
                    try:
                        event = replay_webhook(customer, integration, plan.flow, message_id, session)
                    except LookupError as e:
                        raise ApiError(404, "not_found", str(e)) from None
                    queued.append({"message_id": message_id, "asset_event_id": event})
            found["webhooks"] = queued
        if selection["dead_letters"] and any(t.kind == "deliver_events" for t in plan.tasks):
            try:
                found["dead_letters"] = [
                    result
                    for event_id in selection["event_ids"] or [None]
                    for result in replay_dead_letters(
                        svc.include_dir, customer, integration, plan.flow, event_id
                    )
                ]
            except Exception as e:
                # The app database or the flow's target is unreachable; the error text may hold a DSN.
                raise ApiError(
                    503, "unavailable",
                    f"the dead letters of flow {plan.flow} could not be replayed ({type(e).__name__}); "
                    "nothing of that flow was marked replayed: try again later",
                ) from None  # fmt: skip
        if len(found) > 1:
            answer["flows"].append(found)
    return answer
