"""The request side of a synchronous call, pure: what the caller sends and what goes into the run.

* **The body** is the flow's input, one JSON object, checked against the flow's ``input_schema``; every
  violation is reported with the field it is about.
* **Run ids**: a call with an ``Idempotency-Key`` gets the run id ``sync__key_<sha256(caller, key)>``, so a
  repeat finds the run the first call started instead of starting another. The DAG id already separates
  customers and flows; the caller's id is hashed in too, so two client systems that happen to pick the same
  key never see each other's run. Hashing also keeps any key text out of the run id's allowed characters.
* **How long to wait**: ``Prefer: wait=N`` (RFC 7240) within the flow's cap, ``Prefer: respond-async`` for
  an immediate 202; otherwise the flow's ``timeout_seconds``.
* **Callback URL** (``Callback-Url`` header, http or https, no credentials in it): the result is POSTed
  there when the run ends. A header rather than a query parameter, because URLs with tokens in their query
  must not land in access logs. Its host must not be a loopback, private, link-local... address or IPv4
  in a non-canonical form (:mod:`b2b_integrations.net.addresses`, unless the deployment allows the
  network); a host name is checked again, after DNS, when the callback is sent.
* **The run's conf** holds all of it under one key (``b2b-sync``), never merged into the top level: Airflow
  merges conf keys into the DAG's params, and the params are the customer's config, which a caller must not
  be able to override. The key has a hyphen, which config variable names cannot have.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from b2b_integrations.net.addresses import AddressRefused, IPNetwork, check_host

SYNC_CONF_KEY = "b2b-sync"
RUN_ID_PREFIX = "sync__"
MAX_KEY_LENGTH = 255
MAX_CALLBACK_URL_LENGTH = 2000
MAX_FIELD_ERRORS = 50
_PREFER_WAIT = re.compile(r"^wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?$", re.IGNORECASE)


@dataclass(frozen=True)
class Preference:
    """What ``Prefer`` asked for: a wait in seconds, and/or an immediate asynchronous answer."""

    wait: float | None = None
    respond_async: bool = False


def parse_prefer(values: str | None) -> Preference:
    """``Prefer`` header values (comma-separated, RFC 7240); unknown or malformed preferences are ignored."""
    wait: float | None = None
    respond_async = False
    for item in (values or "").split(","):
        token = item.split(";")[0].strip()
        if token.lower() == "respond-async":
            respond_async = True
        elif match := _PREFER_WAIT.match(token):
            wait = float(match.group(1))
    return Preference(wait, respond_async)


def wait_seconds(preference: Preference, default: float, cap: float) -> float:
    """How long this call waits for the run: 0 for respond-async, else the asked wait within the cap."""
    if preference.respond_async:
        return 0.0
    if preference.wait is None:
        return default
    return min(preference.wait, cap)


def check_idempotency_key(key: str) -> str:
    """The key as given, if usable; ``ValueError`` saying why not."""
    if not key.strip():
        raise ValueError("Idempotency-Key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
    return key


def run_id_for(idempotency_key: str | None, caller_id: str, now: datetime | None = None) -> str:
    """The run id of a call: derived from the key when there is one (repeatable), else new each time."""
    if idempotency_key is not None:
        digest = hashlib.sha256(f"{caller_id}\n{idempotency_key}".encode()).hexdigest()
        return f"{RUN_ID_PREFIX}key_{digest[:40]}"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{RUN_ID_PREFIX}{stamp}_{secrets.token_hex(4)}"


def body_digest(body: Any) -> str:
    """sha256 of the body as canonical JSON: a repeat with the same key must carry the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_callback_url(url: str, allowed: Sequence[IPNetwork] = ()) -> str:
    """The callback URL, if it is one we may call; ``ValueError`` saying why not (never echoing it).

    :param allowed: Networks the deployment allows callbacks into despite the address policy.
    """
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise ValueError(f"Callback-Url is longer than {MAX_CALLBACK_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("Callback-Url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("Callback-Url must be an http or https URL")
    if not parts.hostname:
        raise ValueError("Callback-Url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("Callback-Url must not carry credentials (user:password@)")
    if any(ch.isspace() or ord(ch) < 32 for ch in url.strip()):
        raise ValueError("Callback-Url contains whitespace or control characters")
    try:
        check_host(parts.hostname, allowed)
    except AddressRefused as e:
        raise ValueError(f"Callback-Url: {e}") from None
    return url.strip()


def field_errors(body: Any, schema: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Every way ``body`` breaks the JSON Schema, as ``{field, message}`` (field: a JSON pointer-ish path)."""
    if not schema:
        return []
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    errors = sorted(
        validator_class(schema).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [
        {"field": "/".join(str(p) for p in error.absolute_path) or "(body)", "message": error.message[:300]}
        for error in errors[:MAX_FIELD_ERRORS]
    ]


def sync_conf(
    body: Mapping[str, Any], callback_url: str | None, idempotency_key: str | None, caller: str
) -> dict[str, Any]:
    """The run's conf for a call: the request under :data:`SYNC_CONF_KEY`."""
    request: dict[str, Any] = {"body": dict(body), "body_sha256": body_digest(body), "caller": caller}
    if callback_url:
        request["callback_url"] = callback_url
    if idempotency_key is not None:
        request["idempotency_key"] = idempotency_key
    return {SYNC_CONF_KEY: request}


def sync_request(conf: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The synchronous request recorded in a run's conf, or None for a run started any other way."""
    request = (conf or {}).get(SYNC_CONF_KEY)
    return request if isinstance(request, dict) else None
