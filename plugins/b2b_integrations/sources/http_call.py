"""One HTTP call per record (or one per run): the request made from a record, and what the answer means.

Pure functions, so every rule is testable without a server; ``clients/http_call.py`` sends the request and
``operators/http_call.py`` puts the two together.

* The request: the endpoint's ``{field}`` placeholders are filled from the record (URL-encoded); the JSON
  body maps our fields to theirs (``body``: their field, dotted for nesting -> our field, a dotted path) plus
  fixed values (``body_constants``), or is the whole record when no mapping is given.
* The answer: a 2xx is a success, and ``response_fields`` picks what goes on (their dotted path -> our
  field). A status listed in ``failure_statuses`` is the third party saying no (a declined payment): a
  business failure whose reason, read at ``failure_message_path``, may be shown to whoever asked. Any
  other status is a technical failure, shown only as a status.
* A key for the ``idempotency_header``, the same on every retry of the same call, so the third party
  recognises a repeat: a retried charge is not charged twice.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from b2b_integrations.sources.pagination import get_path

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Repeating these cannot do more than doing them once (RFC 9110 9.2.2); POST and PATCH need a key.
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
PUBLIC_TEXT_LIMIT = 300


@dataclass(frozen=True)
class Refusal:
    """The third party refused for a business reason; ``message`` and ``code`` are theirs, made safe to show."""

    status: int
    """The HTTP status to answer a synchronous caller with."""
    message: str
    code: str | None = None


@dataclass(frozen=True)
class ResponseRules:
    """How to read a response: which statuses are refusals, where their reason is, what to pass on."""

    response_fields: Mapping[str, str]
    keep_fields: Sequence[str] | None = None
    failure_statuses: frozenset[int] = frozenset()
    failure_message_path: str | None = None
    failure_code_path: str | None = None
    failure_answer_status: int | None = None


def placeholders(endpoint: str) -> list[str]:
    """The record fields an endpoint template names, e.g. ``/orders/{order_id}`` -> ``['order_id']``."""
    return _PLACEHOLDER.findall(endpoint)


def render_endpoint(endpoint: str, record: Mapping[str, Any]) -> str:
    """The endpoint with each ``{field}`` replaced by the record's value, URL-encoded as one path segment.

    :raises ValueError: naming the field, when the record has no value for it.
    """

    def value(match: re.Match[str]) -> str:
        found = get_path(record, match.group(1))
        if found is None or isinstance(found, dict | list):
            raise ValueError(
                f"the endpoint needs field {match.group(1)!r}, which the record has no value for"
            )
        return quote(str(found), safe="")

    return _PLACEHOLDER.sub(value, endpoint)


def set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``target[a][b] = value`` for ``dotted = "a.b"``, creating the inner objects."""
    *parents, last = dotted.split(".")
    for part in parents:
        inner = target.get(part)
        if not isinstance(inner, dict):
            inner = target[part] = {}
        target = inner
    target[last] = value


def request_body(
    record: Mapping[str, Any], mapping: Mapping[str, str] | None, constants: Mapping[str, Any]
) -> dict[str, Any]:
    """Their JSON body from our record: ``mapping`` (their field -> our field) and fixed ``constants``.

    Without a mapping the whole record is sent. A mapped field the record lacks is left out rather than
    sent as null: many APIs read null as "clear this value".
    """
    if mapping is None:
        body = dict(record)
    else:
        body = {}
        for theirs, ours in mapping.items():
            found = get_path(record, ours)
            if found is not None:
                set_path(body, theirs, found)
    for theirs, constant in constants.items():
        set_path(body, theirs, constant)
    return body


def output_record(record: Mapping[str, Any], response: Any, rules: ResponseRules) -> dict[str, Any]:
    """What the next step gets: the kept input fields plus the response fields picked by the rules."""
    keep = record.keys() if rules.keep_fields is None else rules.keep_fields
    out = {name: record.get(name) for name in keep}
    for ours, theirs in rules.response_fields.items():
        out[ours] = get_path(response, theirs)
    return out


def refusal(status: int, body: Any, rules: ResponseRules) -> Refusal | None:
    """A business refusal when ``status`` is one of the failure statuses; None otherwise."""
    if status not in rules.failure_statuses:
        return None
    reason = get_path(body, rules.failure_message_path) if rules.failure_message_path else None
    code = get_path(body, rules.failure_code_path) if rules.failure_code_path else None
    answer = rules.failure_answer_status or (status if 400 <= status < 500 else 502)
    message = public_text(reason) or f"refused by the third party (HTTP {status})"
    return Refusal(answer, message, public_text(code) or None)


def public_text(value: Any, limit: int = PUBLIC_TEXT_LIMIT) -> str:
    """A third party's text made fit to show: one line, no control characters, at most ``limit`` chars."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def idempotency_key(dag_id: str, run_id: str, task_id: str, index: int) -> str:
    """A key the same on every try of call ``index`` of a task in one run, different for anything else."""
    digest = hashlib.sha256(f"{dag_id}\n{run_id}\n{task_id}\n{index}".encode()).hexdigest()
    return f"b2b-{digest[:40]}"


def may_retry(method: str, has_idempotency_key: bool) -> bool:
    """Whether a call that timed out or got a 5xx may be sent again without risking doing it twice."""
    return method in IDEMPOTENT_METHODS or has_idempotency_key
