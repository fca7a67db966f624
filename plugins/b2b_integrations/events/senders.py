"""Sending one app event to a third party: a signed outbound webhook, a call to its own API (an upsert with
a field mapping) or a Redis pub/sub message.

A sender makes ONE attempt and says what happened; :func:`deliver_with_retries` owns the retry budget
(``sources.retries.RetryPolicy``: 5xx, 408, 429 with ``Retry-After``, timeouts and dropped connections are
retried with full-jitter backoff; other 4xx are not, retrying cannot fix them). Errors carry the status and
a short body excerpt, never the signing secret or credentials.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from b2b_integrations.events.ordering import OutgoingEvent
from b2b_integrations.sources.retries import RetryPolicy

# Seconds to wait for a receiver's answer. A timeout is retried with the same webhook-id, so a receiver
# that was only slow sees the event twice: measured at 10 s, 2 of 40,000 deliveries on an overloaded host.
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None
    """HTTP status; None for a transport failure (timeout, refused, dropped) or a non-HTTP target."""
    error: str = ""
    retry_after: str | None = None
    transient: bool = True
    """Only for non-HTTP targets (no status): whether trying again can help."""


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str = ""


class EventSender(Protocol):
    name: str

    def send(self, event: OutgoingEvent) -> Attempt: ...

    def close(self) -> None: ...


def body_of(event: OutgoingEvent) -> bytes:
    return json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class WebhookSender:
    """POST the event as JSON, signed with Standard Webhooks (``webhook-id`` = the event id, stable across
    retries so the receiver can deduplicate). URL: the connection's base URL + ``endpoint``; signing secret:
    the connection's password (``whsec_<base64>`` or plain text)."""

    def __init__(
        self, conn_id: str, endpoint: str = "", timeout: float = DEFAULT_TIMEOUT, name: str = "webhook"
    ) -> None:
        import httpx
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method="POST", http_conn_id=conn_id)
        hook.get_conn()
        self.url = hook.base_url.rstrip("/") + ("/" + endpoint.lstrip("/") if endpoint else "")
        secret = hook.get_connection(conn_id).password
        if not secret:
            raise ValueError(f"connection {conn_id!r} has no password: the webhook signing secret goes there")
        self._secret = secret
        self.name = name
        self._client = httpx.Client(timeout=timeout)

    def send(self, event: OutgoingEvent) -> Attempt:
        import httpx

        from b2b_integrations.webhooks.signatures import sign_standard

        body = body_of(event)
        headers = sign_standard(self._secret, event.event_id, int(time.time()), body)
        headers["content-type"] = "application/json"
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return Attempt(False, None, f"{type(e).__name__} calling {self.url}")
        if response.is_success:
            return Attempt(True, response.status_code)
        excerpt = " ".join(response.text[:200].split())
        return Attempt(
            False,
            response.status_code,
            f"HTTP {response.status_code} from {self.url}: {excerpt}",
            retry_after=response.headers.get("retry-after"),
        )

    def close(self) -> None:
        self._client.close()


class RedisPublisher:
    """PUBLISH the event as JSON on a Redis channel (the redis provider's connection). Pub/sub keeps nothing
    for absent subscribers: delivered means Redis took the message."""

    def __init__(self, conn_id: str, channel: str, name: str = "redis") -> None:
        from airflow.providers.redis.hooks.redis import RedisHook

        self._redis = RedisHook(redis_conn_id=conn_id).get_conn()
        self.channel = channel
        self.name = name

    def send(self, event: OutgoingEvent) -> Attempt:
        import redis

        try:
            self._redis.publish(self.channel, body_of(event))
        except redis.RedisError as e:
            return Attempt(False, None, f"{type(e).__name__} publishing on {self.channel}")
        return Attempt(True, None)

    def close(self) -> None:
        self._redis.close()


class ApiCallSender:
    """Apply the event to the third party's own API (e.g. ``PATCH /api/contacts/{data.crm_id}``) with a
    field mapping (their field -> our dotted path) and the connection's auth; the event id goes in an
    ``Idempotency-Key`` header so an API that honours it ignores a repeat."""

    def __init__(self, target: dict[str, Any], where: str, log: Any, name: str = "api") -> None:
        import threading

        self.target = target
        self.name = name
        self._where, self._log = where, log
        self._local = threading.local()  # a requests session per lane thread
        self._clients: list[Any] = []  # every session made, so close() reaches those of other threads
        self._clients_lock = threading.Lock()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from b2b_integrations.clients.http_api import auth_from_config
            from b2b_integrations.clients.http_call import HttpCallClient

            client = HttpCallClient(
                self.target["connection"],
                auth_from_config(self.target.get("auth")),
                RetryPolicy(attempts=1),
                float(self.target.get("timeout", DEFAULT_TIMEOUT)),
                None,
                self._where,
                self._log,
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def send(self, event: OutgoingEvent) -> Attempt:
        from b2b_integrations.clients.http_call import HttpCallFailed
        from b2b_integrations.sources.http_call import render_endpoint, request_body

        try:
            endpoint = render_endpoint(self.target["endpoint"], event.payload)
        except ValueError as e:
            return Attempt(False, None, str(e), transient=False)
        body = request_body(event.payload, self.target.get("body"), self.target.get("body_constants") or {})
        method = self.target.get("method", "PATCH")
        try:
            response = self._client().call(
                method, endpoint, json_body=body, headers={"Idempotency-Key": event.event_id}
            )
        except HttpCallFailed as e:
            return Attempt(False, None, str(e))
        if 200 <= response.status < 300:
            return Attempt(True, response.status)
        excerpt = (
            " ".join(json.dumps(response.body, default=str)[:200].split())
            if response.body is not None
            else ""
        )
        return Attempt(
            False,
            response.status,
            f"HTTP {response.status} from {method} {endpoint}: {excerpt}",
            retry_after=response.headers.get("Retry-After"),
        )

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.session.close()


def sender_from_config(target: dict[str, Any], where: str = "", log: Any = None) -> EventSender:
    """The sender of a ``deliver_events`` target (its ``connection`` already bound to a connection id)."""
    kind = target.get("type")
    name = target.get("name") or kind
    if kind == "webhook":
        return WebhookSender(
            target["connection"], target.get("endpoint", ""), target.get("timeout", DEFAULT_TIMEOUT), name
        )
    if kind == "redis":
        return RedisPublisher(target["connection"], target["channel"], name)
    if kind == "api":
        import logging

        return ApiCallSender(target, where, log or logging.getLogger(__name__), name)
    raise ValueError(f"unknown event target type {kind!r} (webhook, api or redis)")


def deliver_with_retries(
    send: Callable[[OutgoingEvent], Attempt],
    event: OutgoingEvent,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Try until delivered or the policy gives up (budget spent, or a failure retrying cannot fix)."""
    attempt = 0
    while True:
        attempt += 1
        result = send(event)
        if result.ok:
            return Outcome(True, attempt)
        if result.status is None and not result.transient:
            return Outcome(False, attempt, result.error)
        wait = policy.wait_for(attempt, result.status, result.retry_after)
        if wait is None:
            return Outcome(False, attempt, result.error)
        sleep(wait)
