"""``/portal/``: the embeddable customer portal (static page files in ``pages/portal/``).

The page is plain HTML + JS + CSS that calls the instances API with a customer token handed to it in the
URL fragment (``#token=...``, never sent to a server) or by ``postMessage`` from the embedding page. It
carries no data itself, so the routes here serve files only, each with a strict Content-Security-Policy:
no inline script or style, requests only to this origin, and ``frame-ancestors`` from
``B2B_PORTAL_FRAME_ANCESTORS`` (default ``'self'``): the SaaS product's origins that may embed it.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

log = logging.getLogger(__name__)

FRAME_ANCESTORS_ENV = "B2B_PORTAL_FRAME_ANCESTORS"
PAGES = Path(__file__).resolve().parent.parent / "pages" / "portal"
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
}
# A CSP source expression the portal accepts: a keyword, or scheme://host[:port] with an optional leading
# "*." on the host. Anything else (a ";" or "," that would start another directive, a path, a quote) is
# refused, so a typo in the setting cannot weaken the policy.
_SOURCE = re.compile(r"^(?:'self'|'none'|https?://(?:\*\.)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?)$")

router = APIRouter()


def frame_ancestors() -> list[str]:
    """The origins allowed to frame the portal; ``['none']`` (fail closed) for a value that is not valid."""
    raw = os.environ.get(FRAME_ANCESTORS_ENV, "'self'").split()
    if raw and all(_SOURCE.match(part) for part in raw) and ("'none'" not in raw or len(raw) == 1):
        return raw
    log.warning(
        "b2b-integrations: %s=%r is not a list of 'self', 'none' or scheme://host[:port]: "
        "the portal may not be framed at all until it is fixed",
        FRAME_ANCESTORS_ENV, " ".join(raw),
    )  # fmt: skip
    return ["'none'"]


def security_headers(ancestors: list[str]) -> dict[str, str]:
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {' '.join(ancestors)}",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


def _read(name: str) -> bytes:
    # Read per request (three small files): an upgrade of the package is served without a restart.
    return (PAGES / name).read_bytes()


def _index(ancestors: list[str]) -> bytes:
    # The embedding origins, for the page's postMessage hand-over: it takes a token only from one of them.
    origins = [a for a in ancestors if a != "'none'"]
    text = _read("index.html").decode()
    return text.replace("{{PARENT_ORIGINS}}", html.escape(json.dumps(origins), quote=True)).encode()


@router.get("/portal", include_in_schema=False)
def portal_root() -> Response:
    return RedirectResponse("portal/", 308)


@router.get("/portal/", include_in_schema=False)
def portal_index() -> Response:
    ancestors = frame_ancestors()
    return Response(
        _index(ancestors), 200, media_type=_FILES["index.html"], headers=security_headers(ancestors)
    )


@router.get("/portal/credential-kinds.json", include_in_schema=False)
def credential_kinds() -> Response:
    """Which fields each kind of credential takes (the credentials endpoint's own table), for the wizard."""
    from b2b_integrations.instances.credentials import CREDENTIAL_KINDS

    body = {
        kind: {"required": list(spec.required), "optional": list(spec.optional), "secret": list(spec.secret)}
        for kind, spec in CREDENTIAL_KINDS.items()
    }
    return Response(
        json.dumps(body), 200, media_type="application/json", headers=security_headers(frame_ancestors())
    )


@router.get("/portal/{name}", include_in_schema=False)
def portal_file(name: str) -> Response:
    ancestors = frame_ancestors()
    if name not in _FILES or name == "index.html":
        return Response(b"not found", 404, media_type="text/plain", headers=security_headers(ancestors))
    return Response(_read(name), 200, media_type=_FILES[name], headers=security_headers(ancestors))
