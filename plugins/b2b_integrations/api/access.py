"""Who is calling the instances API, and what they may touch.

Two kinds of caller, both with ``Authorization: Bearer <token>``:
- **engineers and the SaaS backend**: an Airflow token (``POST /auth/token``), or, from the Integrations
  page inside Airflow's UI, the UI's own ``_token`` cookie (changes also need ``X-B2B-Page: 1``); reads need Airflow's DAG
  read permission, writes DAG edit permission, credentials connection edit permission;
- **a customer**, through pages the SaaS product embeds: a customer token (``instances/tokens.py``), which
  confines every read and write to its customer. Another customer's resources answer exactly as ones that
  do not exist (404 with the same text), so a token cannot even learn which customers exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Request

from b2b_integrations.api.errors import ApiError
from b2b_integrations.instances.errors import NotFound

Permission = Literal["read", "write", "credentials"]
AIRFLOW_COOKIE = "_token"
"""Airflow's UI session cookie (``COOKIE_NAME_JWT_TOKEN``): an Airflow JWT, accepted for engineers' pages."""
PAGE_HEADER = "X-B2B-Page"


@dataclass(frozen=True)
class Caller:
    kind: Literal["engineer", "customer"]
    name: str
    """Who is recorded in an instance's history: the Airflow user name, or ``customer:<id>``."""
    customer: str | None = None
    scopes: frozenset[str] = frozenset()
    user: Any = field(default=None, compare=False, repr=False)

    def confine(self, customer: str) -> None:
        """Raise the "no such customer" answer when the caller may not see ``customer``."""
        if self.kind == "customer" and customer != self.customer:
            raise NotFound(f"no customer {customer!r}")


Authenticate = Callable[[Request], Awaitable[Caller]]


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Caller:
    """A customer token or an Airflow token; 401 for anything else (expired, forged, malformed alike)."""
    from b2b_integrations.instances.tokens import InvalidToken, verify

    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    cookie = request.cookies.get(AIRFLOW_COOKIE)
    if not request.headers.get("authorization") and cookie:
        return await _from_airflow_cookie(request, cookie)
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("send 'Authorization: Bearer <token>' (an Airflow token or a customer token)")
    try:
        claims = verify(token)
    except InvalidToken:
        pass
    else:
        return Caller("customer", f"customer:{claims.customer}", claims.customer, claims.scopes)
    from airflow.api_fastapi.app import get_auth_manager

    try:
        user = await get_auth_manager().get_user_from_token(token)
    except Exception:  # expired, malformed or forged: all the same to the caller
        raise _unauthorized("the token is expired, malformed or not signed by this deployment") from None
    return Caller("engineer", str(user.get_name()), None, frozenset(("read", "write", "credentials")), user)


async def _from_airflow_cookie(request: Request, token: str) -> Caller:
    # The Integrations page runs inside Airflow's UI (same origin), so the browser sends the UI's own
    # session cookie. A cookie rides along on any request the browser makes to this origin, so a change
    # must also carry a header another site's page cannot set without a CORS preflight we never grant.
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.headers.get(PAGE_HEADER) != "1":
        raise ApiError(
            403, "forbidden", f"a change authenticated by the UI cookie needs the {PAGE_HEADER} header"
        )
    from airflow.api_fastapi.app import get_auth_manager

    try:
        user = await get_auth_manager().get_user_from_token(token)
    except Exception:  # expired or forged: log in to Airflow again
        raise _unauthorized("the Airflow session expired: log in to Airflow again") from None
    return Caller("engineer", str(user.get_name()), None, frozenset(("read", "write", "credentials")), user)


def authorize(caller: Caller, need: Permission, engineer_only: bool = False) -> None:
    """403 when the caller may not do this kind of thing at all (independent of which customer)."""
    if caller.kind == "customer":
        if engineer_only:
            raise ApiError(403, "forbidden", "not available with a customer token")
        wanted = "read" if need == "read" else "write"
        if wanted not in caller.scopes:
            raise ApiError(403, "forbidden", f"this customer token has no {wanted!r} scope")
        return
    if caller.user is None:  # an engineer made by a test's own authenticator
        return
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    if need == "credentials":
        allowed = manager.is_authorized_connection(method="POST", user=caller.user)
    else:
        allowed = manager.is_authorized_dag(method="GET" if need == "read" else "PUT", user=caller.user)
    if not allowed:
        what = {"read": "read DAGs", "write": "edit DAGs", "credentials": "create connections"}[need]
        raise ApiError(403, "forbidden", f"this Airflow user may not {what}")
