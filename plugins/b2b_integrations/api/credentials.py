"""``/api/v1/customers/{c}/instances/{i}/credentials``: a customer's third-party credentials, as Airflow
connections bound to its instance's connection slots, and a "test connection" action.

A secret goes one way: from the request into the Airflow connection (``instances/deployment.py``
``save_connection``). The customer file and its history only get the connection id, and no answer or log
line ever carries a secret: answers show type, host, port and login (``credentials.public_view``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from b2b_integrations.api import models
from b2b_integrations.api.access import Caller, authorize
from b2b_integrations.api.deps import Services, Svc, Who, pinned_template, read_object
from b2b_integrations.api.errors import ApiError
from b2b_integrations.api.instances import _ERRORS, _instance_json
from b2b_integrations.instances.errors import NotFound, PreconditionFailed
from b2b_integrations.instances.store import InstanceRecord

log = logging.getLogger(__name__)

TEST_INTERVAL_ENV = "B2B_CONNECTION_TEST_INTERVAL_SECONDS"
TEST_INTERVAL_SECONDS = 5.0
"""One connection test per slot per API server process in this time (``B2B_CONNECTION_TEST_INTERVAL_SECONDS``
changes it): each test opens a connection to a host somebody else runs."""

_WRITE_ERRORS = models.error_responses(
    {
        **models.COMMON_ERRORS,
        400: "The body is not a JSON object.",
        412: "If-Match (optional) is stale.",
        422: "A field is missing or refused; the answer names slot and field.",
    }
)

router = APIRouter(prefix="/api/v1")
base = "/customers/{customer}/instances/{integration}/credentials"


def _template(svc: Services, record: InstanceRecord) -> Any:
    """The template version the instance is pinned to (its slots and steps are what its DAGs use)."""
    found = pinned_template(svc.templates_project(), record.integration, record.settings)
    if found is None:
        raise NotFound(f"no integration {record.integration!r}")
    return found


def _slot(template: Any, record: InstanceRecord, slot: str) -> Any:
    declared = template.connections.get(slot)
    if declared is None:
        raise NotFound(f"integration {record.integration!r} has no connection slot {slot!r}")
    return declared


def _bound(record: InstanceRecord, slot: str) -> str | None:
    connections = record.settings.get("connections")
    found = connections.get(slot) if isinstance(connections, dict) else None
    return found if isinstance(found, str) else None


def _slot_json(
    who: Caller, record: InstanceRecord, slot: str, declared: Any, conn_id: str | None
) -> dict[str, Any]:
    from b2b_integrations.instances.catalog import CREDENTIAL_TYPES
    from b2b_integrations.instances.credentials import is_managed, kind_of, public_view
    from b2b_integrations.instances.deployment import find_connection

    managed = is_managed(conn_id, record.customer, record.integration, slot)
    conn = find_connection(conn_id) if conn_id else None
    entry: dict[str, Any] = {
        "slot": slot,
        "type": declared.type,
        "required": declared.required,
        "credential_types": CREDENTIAL_TYPES.get(declared.type or "", []),
        "conn_id": conn_id,
        "managed": managed,
        "configured": conn is not None,
        "kind": kind_of(conn.description) if conn is not None and managed else None,
    }
    # An engineer's connection (an internal database, say) is not the customer's to inspect.
    if conn is not None and (managed or who.kind == "engineer"):
        entry.update(public_view(conn))
    return entry


@router.get(
    base, tags=["credentials"], response_model=models.CredentialList, responses=_ERRORS,
    summary="The instance's connection slots: bound connection, kind, host and login (never a secret)",
)  # fmt: skip
def list_credentials(customer: str, integration: str, who: Who, svc: Svc) -> dict[str, Any]:
    from b2b_integrations.instances.credentials import slot_list

    authorize(who, "read")
    who.confine(customer)
    record = svc.store.get(customer, integration)
    template = _template(svc, record)
    return {
        "customer": customer,
        "integration": integration,
        "slots": [
            _slot_json(who, record, name, declared, conn_id)
            for name, declared, conn_id in slot_list(template, record.settings)
        ],
    }


@router.put(
    base + "/{slot}", tags=["credentials"], response_model=models.CredentialsSaved, status_code=200,
    responses={**_WRITE_ERRORS, 201: {"model": models.CredentialsSaved, "description": "Connection created."}},
    summary="Supply a slot's credentials: they become an Airflow connection bound to the slot",
    description="The connection id is `b2b_<customer>__<integration>__<slot>`; the instance's "
    "`connections.<slot>` is set to it (a new version of the instance, holding the id only). Sending the "
    "slot's credentials again replaces them. `If-Match` is optional.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": models.CredentialsRequest.model_json_schema()}}}},
)  # fmt: skip
async def put_credentials(
    customer: str, integration: str, slot: str, request: Request, who: Who, svc: Svc
) -> JSONResponse:
    authorize(who, "credentials")
    who.confine(customer)
    body = await read_object(request)
    if_match = request.headers.get("if-match")
    answer, created, etag = await run_in_threadpool(
        _save, svc, who, customer, integration, slot, body, if_match
    )
    return JSONResponse(answer, 201 if created else 200, headers={"ETag": etag})


def _save(
    svc: Services, who: Caller, customer: str, integration: str, slot: str, body: dict[str, Any],
    if_match: str | None,
) -> tuple[dict[str, Any], bool, str]:  # fmt: skip
    from b2b_integrations.instances.catalog import CREDENTIAL_TYPES
    from b2b_integrations.instances.credentials import CredentialRefused, parse, slot_auths
    from b2b_integrations.net.addresses import allowed_networks

    record = svc.store.get(customer, integration)
    template = _template(svc, record)
    declared = _slot(template, record, slot)
    accepted = CREDENTIAL_TYPES.get(declared.type or "", [])
    if not accepted:
        raise ApiError(
            422, "invalid",
            f"customer {customer}, integration {integration}, connection slot {slot}: a slot of type "
            f"{declared.type!r} takes a connection an engineer made (bind its id in the instance's connections)",
        )  # fmt: skip
    if if_match is not None and if_match.strip() not in ("*", record.etag):
        raise PreconditionFailed(record.etag)  # before the connection is touched
    try:
        fields = parse(
            customer, integration, slot, declared.type, body, slot_auths(template, slot),
            policy=allowed_networks() if who.kind == "customer" else None, accepted=accepted,
        )  # fmt: skip
    except CredentialRefused as e:
        raise ApiError(422, "invalid", str(e), field=e.field_name) from None
    created = False
    if svc.airflow_db:
        from airflow.utils.session import create_session

        from b2b_integrations.instances.deployment import save_connection

        with create_session() as session:
            created = save_connection(fields, session)
    try:
        record = svc.store.update(
            customer, integration,
            lambda s: {**s, "connections": {**(s.get("connections") or {}), slot: fields.conn_id}},
            if_match=if_match, actor=who.name, action=f"credentials for {slot}",
        )  # fmt: skip
    except Exception:
        if created and svc.airflow_db:  # nothing points at it: do not leave a secret behind
            from airflow.utils.session import create_session

            from b2b_integrations.instances.deployment import delete_connection

            with create_session() as session:
                delete_connection(fields.conn_id, session)
        raise
    log.info(
        "Credentials (%s) for %s/%s slot %s saved as connection %s by %s",
        fields.kind, customer, integration, slot, fields.conn_id, who.name,
    )  # fmt: skip
    answer = {
        **_slot_json(who, record, slot, declared, fields.conn_id),
        "created": created,
        "instance": _instance_json(record, svc.templates_project()),
    }
    return answer, created, record.etag


_last_test: dict[tuple[str, str, str], float] = {}
_last_test_lock = threading.Lock()


def _throttle(key: tuple[str, str, str]) -> None:
    try:
        interval = float(os.environ.get(TEST_INTERVAL_ENV, TEST_INTERVAL_SECONDS))
    except ValueError:
        interval = TEST_INTERVAL_SECONDS
    now = time.monotonic()
    with _last_test_lock:
        last = _last_test.get(key)
        wait = (last + interval - now) if last is not None else 0.0
        if wait > 0:
            raise ApiError(
                429, "too_many_requests", f"one connection test per slot every {interval:g} s",
                {"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
        _last_test[key] = now


@router.post(
    base + "/{slot}/test", tags=["credentials"], response_model=models.ConnectionTest,
    responses={
        **models.error_responses(
            {
                **models.COMMON_ERRORS,
                409: "No connection is bound to the slot.",
                429: "Tested a moment ago; see Retry-After.",
            }
        ),
    },
    summary="Test the slot's connection: an HTTP request or token fetch, an SFTP login and listing, or SELECT 1",
    description="One short try (5 s timeouts). `ok: false` with a reason is an answer, not an error: "
    "the reason names what failed (host, status) and never a secret.",
)  # fmt: skip
def test_credentials(customer: str, integration: str, slot: str, who: Who, svc: Svc) -> dict[str, Any]:
    from b2b_integrations.instances.credentials import is_managed, slot_auths
    from b2b_integrations.instances.deployment import find_connection
    from b2b_integrations.instances.probe import ProbeResult, probe
    from b2b_integrations.net.addresses import allowed_networks

    authorize(who, "credentials")
    who.confine(customer)
    record = svc.store.get(customer, integration)
    template = _template(svc, record)
    declared = _slot(template, record, slot)
    conn_id = _bound(record, slot)
    if conn_id is None:
        raise ApiError(409, "not_bound", f"{customer}/{integration}: no connection is bound to slot {slot!r}")
    _throttle((customer, integration, slot))
    managed = is_managed(conn_id, customer, integration, slot)
    started = time.monotonic()
    conn = find_connection(conn_id)
    if conn is None:
        result = ProbeResult(False, f"the connection {conn_id!r} does not exist")
    else:
        # The policy guards hosts a customer chose; an engineer's connection goes where the engineer said.
        policy = allowed_networks() if who.kind == "customer" and managed else None
        result = probe(conn, declared.type, slot_auths(template, slot), policy)
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "Connection test of %s/%s slot %s (%s) by %s: %s, %s",
        customer, integration, slot, conn_id, who.name, "ok" if result.ok else "failed", result.reason,
    )  # fmt: skip
    return {"slot": slot, "conn_id": conn_id, "ok": result.ok, "reason": result.reason, "seconds": seconds}
