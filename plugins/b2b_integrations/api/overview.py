"""The engineers' Integrations page: its data (``/api/v1/overview``, ``/api/v1/overview/customers/{c}``)
and its files (``/ui/integrations``), mounted in Airflow's navigation by the plugin's ``external_views``.

Engineer-only: a customer token gets 403 (the portal has its own pages). The page is same-origin inside
Airflow's UI, so the browser sends Airflow's ``_token`` cookie and ``access.authenticate`` accepts it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from b2b_integrations.api import models
from b2b_integrations.api.access import authorize
from b2b_integrations.api.deps import Services, Svc, Who
from b2b_integrations.config.base import IDENT_PATTERN
from b2b_integrations.instances.customer_index import CustomerIndex
from b2b_integrations.instances.health import HEALTH_WORDS

router = APIRouter(prefix="/api/v1/overview", tags=["overview"])
pages = APIRouter(prefix="/ui/integrations", include_in_schema=False)
PAGE_DIR = Path(__file__).resolve().parent.parent / "pages" / "engineer"
_indexes: dict[str, CustomerIndex] = {}
_lock = threading.Lock()
Name = Annotated[str | None, Query(max_length=100, pattern=IDENT_PATTERN)]
PAGE_FILES = {"": ("index.html", "text/html; charset=utf-8"), "app.js": ("app.js", "text/javascript"),
              "style.css": ("style.css", "text/css"), "icon.svg": ("icon.svg", "image/svg+xml")}  # fmt: skip


# Engineers only: a customer token is refused (403), whatever it names.
_ERRORS = models.error_responses(models.COMMON_ERRORS)


def _index(svc: Services) -> CustomerIndex:
    with _lock:
        return _indexes.setdefault(str(svc.include_dir), CustomerIndex(svc.include_dir))


@router.get(
    "",
    summary="Every customer x integration: health word, last success/failure, next run, counts",
    responses=_ERRORS,
)
def overview(
    who: Who,
    svc: Svc,
    customer: Name = None,
    integration: Name = None,
    pattern: Name = None,
    health: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.api.errors import ApiError
    from b2b_integrations.instances.overview import Filters, InstanceKey
    from b2b_integrations.instances.overview import overview as build
    from b2b_integrations.instances.overview_facts import config_problems, dag_facts, problems_by_instance

    authorize(who, "read", engineer_only=True)
    if health is not None and health not in HEALTH_WORDS:
        raise ApiError(422, "invalid_request", f"health: one of {', '.join(HEALTH_WORDS)}")
    customers = _index(svc).entries()
    with create_session() as session:
        facts, unreachable = dag_facts(session, customers, svc.templates_project())
    flows_of: dict[tuple[str, str], list[Any]] = {}
    for fact in facts:
        flows_of.setdefault((fact.customer, fact.integration), []).append(fact)
    keys = [InstanceKey(c.id, c.name, i.integration, i.active) for c in customers for i in c.instances]
    problems = problems_by_instance(config_problems(svc.include_dir), customers)
    answer = build(keys, flows_of, problems, Filters(customer, integration, pattern, health, (q or "").strip() or None),
                   limit, offset)  # type: ignore[arg-type]  # fmt: skip
    answer["unreachable"] = sorted(unreachable.values())
    answer["filters"] = {
        "customers": sorted(c.id for c in customers),
        "integrations": sorted({i.integration for c in customers for i in c.instances}),
        "patterns": sorted({f.pattern for f in facts if f.pattern}),
        "health": list(HEALTH_WORDS),
    }
    return answer


@router.get(
    "/customers/{customer}",
    summary="One customer for the page: instances, URLs, masked config, problems",
    responses=_ERRORS,
)
def customer_detail(customer: str, who: Who, svc: Svc) -> dict[str, Any]:
    from airflow.utils.session import create_session

    from b2b_integrations.instances.observe import instance_status, plan_instance
    from b2b_integrations.state.quarantine import describe, list_quarantined

    authorize(who, "read", engineer_only=True)
    record = svc.store.get_customer(customer)  # 404 for a missing customer
    instances = []
    for name in record.integrations:
        settings = svc.store.get(customer, name).settings
        instance = plan_instance(svc.include_dir, customer, name)
        with create_session() as session:
            status = instance_status(
                session, instance, customer, name, active=settings.get("active") is not False
            )
            quarantined = [
                {"flow": q.flow, "message_id": q.message_id, "quarantined_at": q.entry.get("quarantined_at"),
                 "reasons": describe(q.entry)}
                for q in list_quarantined(session, customer, name) if not q.replayed_as
            ]  # fmt: skip
        instances.append(
            {
                **status,
                "settings": masked_settings(settings),
                "endpoints": endpoints(instance),
                "quarantined": quarantined,
                "dead_letters": dead_letters(svc, instance, customer, name),
            }
        )
    return {
        "customer": customer,
        "name": record.header.get("name") or customer,
        "instances": instances,
    }


DEAD_LETTERS_SHOWN = 50
"""Per flow and target: the oldest open dead letters the customer page lists (the counts say how many)."""


def dead_letters(svc: Services, instance: Any, customer: str, integration: str) -> list[dict[str, Any]]:
    """The open dead letters of the instance's event-delivery flows, oldest first; a flow whose app
    database cannot be read says so instead of failing the page."""
    from b2b_integrations.replay.dead_letters import list_dead_letters

    found: list[dict[str, Any]] = []
    for plan in instance.plans:
        if not any(t.kind == "deliver_events" for t in plan.tasks):
            continue
        try:
            letters = list_dead_letters(svc.include_dir, customer, integration, plan.flow, DEAD_LETTERS_SHOWN)
        except Exception as e:  # noqa: BLE001 - one app database down must not fail the page
            found.append(
                {"flow": plan.flow, "unreadable": f"the dead letters could not be read ({type(e).__name__})"}
            )
            continue
        found += [{"flow": plan.flow, **letter} for letter in letters]
    return found


def endpoints(instance: Any) -> list[dict[str, str]]:
    """The URLs a customer's third parties call (webhook flows) and its sync endpoints, per flow."""
    found = []
    flows = getattr(instance.template, "flows", None) or {}
    for plan in instance.plans:
        flow = flows.get(plan.flow)
        kind = getattr(getattr(flow, "trigger", None), "type", None)
        if kind in ("webhook", "sync"):
            route = "webhooks" if kind == "webhook" else "sync"
            found.append({"flow": plan.flow, "kind": kind, "method": "POST",
                          "path": f"/b2b/{route}/{plan.customer_id}/{plan.integration}/{plan.flow}"})  # fmt: skip
    return found


def masked_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """An instance's settings as the page shows them: values under a secret-looking key (password, token,
    api_key ...) and secret-looking text masked by Airflow's masker and our patterns."""
    from airflow.sdk.log import redact as airflow_redact

    from b2b_integrations.alerts import redact

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return redact(value) if isinstance(value, str) else value

    return walk(airflow_redact(settings))  # type: ignore[no-any-return]


@pages.get("")
@pages.get("/{name}")
def page_file(name: str = "") -> Response:
    """The page's static files (no data in them: the page fetches it with the user's cookie)."""
    found = PAGE_FILES.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body = (PAGE_DIR / found[0]).read_bytes()
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if name == "":
        headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'self'; object-src 'none'"
    return Response(body, media_type=found[1], headers=headers)
