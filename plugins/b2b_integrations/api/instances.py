"""``/api/v1``: the instances API: marketplace, customers, instances, their versions and activation.

Every route authenticates (``api/access.py``), confines a customer token to its customer, and leaves the
decisions to the instance store (``instances/store.py``); a change that reaches the store is in the
customer's file, and the deployment is told at once (priority re-parse, pause/unpause).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from b2b_integrations.api import models
from b2b_integrations.api.access import Caller, authorize
from b2b_integrations.api.deps import (
    Services,
    ServicesFactory,
    Svc,
    Who,
    pinned_template,
    read_object,
    template_versions,
)
from b2b_integrations.api.errors import ApiError, add_error_handlers
from b2b_integrations.api.observe import router as observe_router
from b2b_integrations.api.rollouts import router as rollouts_router
from b2b_integrations.instances.errors import NotFound
from b2b_integrations.instances.store import InstanceRecord

API_PREFIX = "/api/v1"
_ERRORS = models.error_responses(models.COMMON_ERRORS)
_WRITE_ERRORS = models.error_responses(
    {
        **models.COMMON_ERRORS,
        412: "If-Match is stale: read again (the answer's ETag is current).",
        422: "The loader refuses the change: every problem with its key path.",
        428: "Changing something that exists needs If-Match.",
    }
)


def _instance_json(record: InstanceRecord, project: Any) -> dict[str, Any]:
    template = project.templates.get(record.integration)
    pinned = record.settings.get("version")
    return {
        "customer": record.customer,
        "integration": record.integration,
        "etag": record.etag,
        "version": record.version,
        "template_version": str(pinned) if pinned is not None else (template.version if template else ""),
        "active": record.settings.get("active"),
        "settings": record.settings,
    }


def _with_etag(body: dict[str, Any], etag: str, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers={"ETag": etag})


def add_instance_routes(app: FastAPI, services: ServicesFactory) -> None:
    """Mount the instances API on ``app``; ``services`` builds what the routes work with (on first use)."""
    add_error_handlers(app)
    app.state.b2b_instances = _once(services)
    app.include_router(router)
    from b2b_integrations.api.credentials import router as credentials_router  # it imports this module

    app.include_router(credentials_router)
    app.include_router(observe_router)
    app.include_router(rollouts_router)


def _once(factory: ServicesFactory) -> ServicesFactory:
    built: list[Services] = []
    lock = threading.Lock()

    def get() -> Services:
        if not built:
            with lock:
                if not built:
                    built.append(factory())
        return built[0]

    return get


router = APIRouter(prefix=API_PREFIX)


# ---- marketplace -----------------------------------------------------------------------------------
@router.get(
    "/marketplace", tags=["marketplace"], response_model=models.Marketplace, responses=_ERRORS,
    summary="The integrations a customer may activate, with config JSON Schema and connection slots",
)  # fmt: skip
def marketplace(who: Who, svc: Svc) -> dict[str, Any]:
    from b2b_integrations.instances.catalog import describe

    authorize(who, "read")
    project = svc.templates_project()
    return {
        "integrations": [
            describe(template, template_versions(project, name))
            for name, template in sorted(project.templates.items())
        ]
    }


@router.get(
    "/marketplace/{integration}", tags=["marketplace"], response_model=models.MarketplaceEntry,
    responses=_ERRORS, summary="One integration of the marketplace",
)  # fmt: skip
def marketplace_entry(integration: str, who: Who, svc: Svc) -> dict[str, Any]:
    from b2b_integrations.instances.catalog import describe

    authorize(who, "read")
    project = svc.templates_project()
    template = project.templates.get(integration)
    if template is None:
        raise NotFound(f"no integration {integration!r}")
    return describe(template, template_versions(project, integration))


# ---- customers -------------------------------------------------------------------------------------
@router.get(
    "/customers", tags=["customers"], response_model=models.CustomerList, responses=_ERRORS,
    summary="Customer ids (engineers only)",
)  # fmt: skip
def customers(
    who: Who,
    svc: Svc,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    authorize(who, "read", engineer_only=True)
    ids = svc.store.customer_ids()
    return {
        "customers": ids[offset : offset + limit],
        "total": len(ids),
        "offset": offset,
        "limit": limit,
    }


@router.post(
    "/customers", tags=["customers"], status_code=201, response_model=models.Customer,
    responses={**_WRITE_ERRORS, 409: {"model": models.ErrorBody, "description": "The customer exists."}},
    summary="Onboard a customer (engineers only): creates its customer file",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": models.CustomerCreate.model_json_schema()}}}},
)  # fmt: skip
async def create_customer(request: Request, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "write", engineer_only=True)
    body = await read_object(request)
    customer = body.get("id")
    if not isinstance(customer, str):
        raise ApiError(422, "invalid", "'id' (the customer id, lower_snake_case) is required")
    header = {k: v for k, v in body.items() if k not in ("id", "integrations")}
    record = await run_in_threadpool(svc.store.create_customer, customer, header, actor=who.name)
    await run_in_threadpool(_keep_pool, record)
    return _with_etag(_customer_json(record), record.etag, 201)


@router.get(
    "/customers/{customer}", tags=["customers"], response_model=models.Customer, responses=_ERRORS,
    summary="A customer's own settings and the integrations it has",
)  # fmt: skip
def get_customer(customer: str, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "read")
    who.confine(customer)
    record = svc.store.get_customer(customer)
    return _with_etag(_customer_json(record), record.etag)


@router.put(
    "/customers/{customer}", tags=["customers"], response_model=models.Customer, responses=_WRITE_ERRORS,
    summary="Replace a customer's own settings (name, tags, alerts, enabled); needs If-Match",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "examples": [{"name": "Acme Corp", "tags": ["tier:gold"]}]}}}}},
)  # fmt: skip
async def put_customer(customer: str, request: Request, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "write", engineer_only=True)
    body = await read_object(request)
    record = await run_in_threadpool(
        lambda: svc.store.put_customer(
            customer, {k: v for k, v in body.items() if k != "integrations"},
            if_match=request.headers.get("if-match"), actor=who.name,
        )
    )  # fmt: skip
    await run_in_threadpool(_keep_pool, record)
    return _with_etag(_customer_json(record), record.etag)


def _keep_pool(record: Any) -> None:
    """A customer written with a task cap gets its pool now, before its DAGs are parsed (a task in a
    missing pool is never scheduled). Without a cap nothing is touched: an old pool stays for runs that
    still hold it (``python -m b2b_integrations pools --prune`` clears it)."""
    from b2b_integrations.config.limits import CustomerLimits, customer_pool

    limits = CustomerLimits.model_validate(record.header.get("limits") or {})
    if not limits.max_active_tasks or record.header.get("enabled") is False:
        return
    from airflow.utils.session import create_session

    from b2b_integrations.pools import sync_pools

    with create_session() as session:
        sync_pools({customer_pool(record.id): limits.max_active_tasks}, session, complete=False)


@router.post(
    "/customers/{customer}/tokens", tags=["customers"], status_code=201, response_model=models.TokenAnswer,
    responses=_ERRORS, summary="Mint a short-lived customer token (engineers / the SaaS backend only)",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": models.TokenRequest.model_json_schema()}}}},
)  # fmt: skip
async def mint_token(customer: str, request: Request, who: Who, svc: Svc) -> dict[str, Any]:
    from datetime import timedelta

    from b2b_integrations.instances.tokens import NoSigningKey, mint

    authorize(who, "write", engineer_only=True)
    body = await read_object(request)
    svc.store.get_customer(customer)  # 404 for a customer that does not exist
    scopes = body.get("scopes", ["read", "write"])
    ttl = body.get("ttl_seconds", 900)
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ApiError(422, "invalid", "'scopes' must be a list of 'read' and/or 'write'")
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise ApiError(422, "invalid", "'ttl_seconds' must be a whole number of seconds")
    try:
        token, expires = mint(customer, tuple(scopes), timedelta(seconds=ttl))
    except ValueError as e:
        raise ApiError(422, "invalid", str(e)) from e
    except NoSigningKey as e:
        raise ApiError(503, "not_configured", str(e)) from e
    return {
        "customer": customer,
        "token": token,
        "expires_at": expires.isoformat(),
        "scopes": sorted(set(scopes)),
    }


# ---- instances -------------------------------------------------------------------------------------
base = "/customers/{customer}/instances"


@router.get(
    base, tags=["instances"], response_model=models.InstanceList, responses=_ERRORS,
    summary="A customer's instances (one per integration it has)",
)  # fmt: skip
def list_instances(customer: str, who: Who, svc: Svc) -> dict[str, Any]:
    authorize(who, "read")
    who.confine(customer)
    project = svc.templates_project()
    records = svc.store.instances(customer)
    return {"customer": customer, "instances": [_instance_json(r, project) for r in records]}


@router.get(
    base + "/{integration}", tags=["instances"], response_model=models.Instance, responses=_ERRORS,
    summary="One instance, with the ETag to change it",
)  # fmt: skip
def get_instance(customer: str, integration: str, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "read")
    who.confine(customer)
    record = svc.store.get(customer, integration)
    return _with_etag(_instance_json(record, svc.templates_project()), record.etag)


@router.put(
    base + "/{integration}", tags=["instances"], response_model=models.Instance, responses=_WRITE_ERRORS,
    summary="Create (no If-Match) or replace (If-Match: its ETag) an instance; checked like `validate`",
    description="A new instance is pinned to the template's current version unless the body names one, "
    "and starts inactive (its DAGs paused) unless the body says `active: true`; activate it with "
    "`POST .../activate`. A replacement keeps the instance's activation (`active` in the body is ignored): "
    "activate and deactivate also pause or unpause its DAGs.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": models.InstanceSettings.model_json_schema()}}}},
)  # fmt: skip
async def put_instance(customer: str, integration: str, request: Request, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "write")
    who.confine(customer)
    settings = await read_object(request)
    store = svc.store
    project = svc.templates_project()

    def vet(current: dict[str, Any] | None, new: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        from b2b_integrations.instances.bindings import customer_bindings, with_shared

        template = pinned_template(
            project, integration, {"version": new.get("version") or (current or {}).get("version")}
        )
        if current is not None:  # activation changes only through activate/deactivate, which pause the DAGs
            new = {k: v for k, v in new.items() if k != "active"}
            if "active" in current:
                new["active"] = current["active"]
        if who.kind != "customer":
            return with_shared(template, new), []
        shown = f"{svc.include_dir.name}/customers/{customer}.yaml"
        return customer_bindings(customer, integration, template, current, new, shown)

    def write() -> InstanceRecord:
        body = dict(settings)
        try:
            store.get(customer, integration)
        except NotFound:  # a new instance: pinned and inactive unless the body says otherwise
            store.get_customer(customer)
            template = project.templates.get(integration)
            if template is not None:
                body.setdefault("version", template.version)
            body.setdefault("active", False)
        return store.put(
            customer, integration, body, if_match=request.headers.get("if-match"), actor=who.name, vet=vet
        )

    existed = request.headers.get("if-match") is not None
    record = await run_in_threadpool(write)
    return _with_etag(_instance_json(record, project), record.etag, 200 if existed else 201)


@router.delete(
    base + "/{integration}", tags=["instances"], status_code=204, responses=_WRITE_ERRORS,
    summary="Remove an instance (its DAGs go; its history stays); needs If-Match",
)  # fmt: skip
def delete_instance(customer: str, integration: str, request: Request, who: Who, svc: Svc) -> JSONResponse:
    authorize(who, "write")
    who.confine(customer)
    svc.store.delete(customer, integration, if_match=request.headers.get("if-match"), actor=who.name)
    return JSONResponse(None, 204)


@router.post(
    base + "/{integration}/activate", tags=["instances"], response_model=models.ActivationWithHeldEvents,
    responses=_WRITE_ERRORS,
    summary="Activate an instance: its DAGs are unpaused and run the events kept while it was inactive",
)  # fmt: skip
def activate(customer: str, integration: str, request: Request, who: Who, svc: Svc) -> JSONResponse:
    return _set_active(svc, who, request, customer, integration, active=True)


@router.post(
    base + "/{integration}/deactivate", tags=["instances"], response_model=models.ActivationWithHeldEvents,
    responses=_WRITE_ERRORS,
    summary="Deactivate an instance: its DAGs are paused; events that arrive meanwhile are kept, not lost",
)  # fmt: skip
def deactivate(customer: str, integration: str, request: Request, who: Who, svc: Svc) -> JSONResponse:
    return _set_active(svc, who, request, customer, integration, active=False)


# ---- versions --------------------------------------------------------------------------------------
@router.get(
    base + "/{integration}/versions", tags=["versions"], response_model=models.VersionList, responses=_ERRORS,
    summary="Every version of an instance: who changed what, when",
)  # fmt: skip
def versions(customer: str, integration: str, who: Who, svc: Svc) -> dict[str, Any]:
    authorize(who, "read")
    who.confine(customer)
    found = svc.store.versions(customer, integration)
    return {"customer": customer, "integration": integration, "versions": [v.summary() for v in found]}


@router.get(
    base + "/{integration}/versions/{number}", tags=["versions"], response_model=models.VersionDetail,
    responses=_ERRORS, summary="One version of an instance, with its settings",
)  # fmt: skip
def version(customer: str, integration: str, number: int, who: Who, svc: Svc) -> dict[str, Any]:
    authorize(who, "read")
    who.confine(customer)
    for found in svc.store.versions(customer, integration):
        if found.number == number:
            return {**found.summary(), "settings": found.settings}
    raise NotFound(f"{customer}/{integration} has no version {number}")


@router.post(
    base + "/{integration}/versions/{number}/restore", tags=["versions"], response_model=models.Instance,
    responses=_WRITE_ERRORS, summary="Make an earlier version current again (a new version); needs If-Match",
)  # fmt: skip
def restore(
    customer: str, integration: str, number: int, request: Request, who: Who, svc: Svc
) -> JSONResponse:
    authorize(who, "write")
    who.confine(customer)
    record = svc.store.restore(
        customer, integration, number, if_match=request.headers.get("if-match"), actor=who.name
    )
    return _with_etag(_instance_json(record, svc.templates_project()), record.etag)


def _set_active(
    svc: Services, who: Caller, request: Request, customer: str, integration: str, active: bool
) -> JSONResponse:
    from b2b_integrations.instances.deployment import set_paused

    authorize(who, "write")
    who.confine(customer)
    action = "activate" if active else "deactivate"
    record = svc.store.update(
        customer, integration, lambda s: {**s, "active": active},
        if_match=request.headers.get("if-match"), actor=who.name, action=action,
    )  # fmt: skip
    changed: list[str] = []
    held: list[Any] = []
    if svc.airflow_db:
        from airflow.utils.session import create_session

        from b2b_integrations.instances.deployment import queue_held_events

        with create_session() as session:  # one transaction: the runs are queued as the DAGs unpause
            changed = set_paused(customer, integration, not active, session)
            if active:
                held = queue_held_events(customer, integration, session)
    count = sum(h.messages for h in held)
    detail = (
        f"activated: its DAGs run; {count} event(s) kept while it was inactive are being processed"
        if active
        else "deactivated: its DAGs are paused; events that arrive meanwhile are kept and processed once "
        "it is activated again"
    )
    body = {
        "instance": _instance_json(record, svc.templates_project()),
        "active": active,
        "dags_changed": changed,
        "detail": detail,
        "held_events": count,
        "runs_queued": sorted(h.dag_id for h in held),
    }
    return _with_etag(body, record.etag)


def _customer_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "etag": record.etag,
        "header": record.header,
        "integrations": record.integrations,
    }
