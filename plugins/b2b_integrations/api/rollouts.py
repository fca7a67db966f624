"""``POST /api/v1/integrations/{integration}/rollouts``: move instances to another template version,
after a dry run that changes nothing (the decisions are in ``instances/rollout.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from b2b_integrations.api.access import authorize
from b2b_integrations.api.deps import Svc, Who, read_object
from b2b_integrations.api.errors import ApiError, problem_json
from b2b_integrations.api.models import ErrorBody, Problem

router = APIRouter(prefix="/api/v1")


class RolloutRequest(BaseModel):
    to_version: str = Field(examples=["2"])
    customers: list[str] | None = Field(
        None, description="Only these customers; all when absent.", examples=[["acme"]]
    )
    dry_run: bool = Field(True, description="true (the default): only say what would happen.")


class RolloutItem(BaseModel):
    customer: str = Field(examples=["acme"])
    from_version: str = Field(examples=["1"])
    to_version: str = Field(examples=["2"])
    changes: list[dict[str, Any]] = Field(examples=[[{"path": "config.page_size", "from": 100, "to": 50}]])
    problems: list[Problem]
    applied: bool | None = Field(None, description="After a real rollout: whether it was written.")
    version: int | None = Field(None, description="The instance's new history version, when applied.")
    reason: str = ""


class RolloutAnswer(BaseModel):
    integration: str = Field(examples=["crm_contacts"])
    to_version: str = Field(examples=["2"])
    dry_run: bool
    ok: bool = Field(description="Every affected instance can move (dry run) / moved (rollout).")
    problems: list[Problem] = Field(
        description="What stops the rollout as a whole (unknown version, customer)."
    )
    unchanged: list[str] = Field(description="Customers already on the target version.")
    items: list[RolloutItem]


@router.post(
    "/integrations/{integration}/rollouts", tags=["versions"], response_model=RolloutAnswer,
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    summary="Move instances to a template version (engineers only); dry_run (the default) changes nothing",
    description="Each instance gets the version's upgrade renames and defaults and is checked by the loader; "
    "instances that would fail are listed with every problem. A real rollout writes the others, each "
    "guarded by the ETag the plan read, as a new version of the instance (action `rollout`).",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": RolloutRequest.model_json_schema()}}}},
)  # fmt: skip
async def rollout(integration: str, request: Request, who: Who, svc: Svc) -> dict[str, Any]:
    from b2b_integrations.instances.rollout import apply_rollout, plan_rollout

    authorize(who, "write", engineer_only=True)
    body = await read_object(request)
    to_version, customers, dry_run = body.get("to_version"), body.get("customers"), body.get("dry_run", True)
    if not isinstance(to_version, str) or not to_version:
        raise ApiError(422, "invalid", "'to_version' (a version of the integration) is required")
    if customers is not None and (
        not isinstance(customers, list) or not all(isinstance(c, str) for c in customers)
    ):
        raise ApiError(422, "invalid", "'customers' must be a list of customer ids")
    if not isinstance(dry_run, bool):
        raise ApiError(422, "invalid", "'dry_run' must be true or false")

    def run() -> dict[str, Any]:
        plan = plan_rollout(svc.include_dir, integration, to_version, customers)
        outcomes = (
            {}
            if dry_run or plan.problems
            else {o.item.customer: o for o in apply_rollout(svc.store, plan, who.name)}
        )
        items = []
        for item in plan.items:
            entry: dict[str, Any] = {
                "customer": item.customer, "from_version": item.from_version, "to_version": item.to_version,
                "changes": item.changes, "problems": [problem_json(p) for p in item.problems],
            }  # fmt: skip
            outcome = outcomes.get(item.customer)
            if outcome is not None:
                entry.update(applied=outcome.applied, version=outcome.version, reason=outcome.reason)
                entry["problems"] = [problem_json(p) for p in outcome.problems] or entry["problems"]
            items.append(entry)
        ok = not plan.problems and all((not i["problems"]) and i.get("applied", True) for i in items)
        return {
            "integration": integration, "to_version": plan.to_version, "dry_run": dry_run, "ok": ok,
            "problems": [problem_json(p) for p in plan.problems], "unchanged": plan.unchanged, "items": items,
        }  # fmt: skip

    return await run_in_threadpool(run)
