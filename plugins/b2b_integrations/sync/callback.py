"""Delivering a synchronous run's answer to the caller's callback URL, signed and pinned to a checked
address (the task that does it is ``operators/sync_callback.SyncCallbackOperator``).

The request is signed with Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
with the customer's callback secret; the ``webhook-id`` is the same on every try, so a receiver that got
a callback twice (an answer lost on the way back) can drop the repeat.

The caller chose the URL, so each try resolves its host once, checks every address against the SSRF policy
(:mod:`b2b_integrations.net.addresses`, with the ``B2B_CALLBACK_ALLOWED_NETWORKS`` allow-list) and then
connects to that very address, with the name in ``Host`` and as the TLS server name (so the certificate is
still checked against the name). Resolving again at connect time would let a name that answered with a
public address for the check answer with 127.0.0.1 for the connection (DNS rebinding). A refused address
fails the task at once, without retries.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from b2b_integrations.errors import FatalStepError, RetriableStepError
from b2b_integrations.net.addresses import (
    AddressRefused,
    IPNetwork,
    check_address,
    check_resolved,
    literal_address,
)
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.webhooks.signatures import sign_standard

if TYPE_CHECKING:
    pass

Post = Callable[[str, bytes, dict[str, str]], int]
"""Sends one request; returns the HTTP status (raises on a transport failure)."""


Resolve = Callable[[str, int], list[str]]
"""A host name and port -> the addresses it resolves to (text)."""


class CallbackFailed(RetriableStepError):
    """Every try to deliver the callback failed; the message names the host only (URLs may hold tokens)."""


class CallbackRefused(FatalStepError):
    """The callback's host is, or resolves to, an address callbacks may not go to (names the host only)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the system resolver (``getaddrinfo``)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def pinned_target(
    url: str, allowed: Sequence[IPNetwork], resolve: Resolve | None = None
) -> tuple[str, str, dict[str, Any]]:
    """Where to send a callback: ``url`` with its host replaced by the checked address, the ``Host``
    header, and the request extensions (the TLS server name for https to a name).

    :raises AddressRefused: when the host is, or resolves to, an address the policy refuses.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, allowed)
        address = literal
    else:
        address = check_resolved(host, (resolve or resolve_host)(host, port), allowed)
    connect = f"[{address}]" if address.version == 6 else str(address)
    netloc = connect if parts.port is None else f"{connect}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    extensions: dict[str, Any] = {}
    if parts.scheme == "https" and literal is None:
        extensions["sni_hostname"] = host
    return urlunsplit(parts._replace(netloc=netloc)), host_header, extensions


def callback_message_id(dag_id: str, run_id: str) -> str:
    """The callback's ``webhook-id``: one per run, the same on every try."""
    return "msg_" + hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:32]


def deliver(
    url: str,
    body: bytes,
    secret: str,
    message_id: str,
    policy: RetryPolicy,
    post: Post,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    log: Any = None,
) -> int:
    """POST ``body`` to ``url`` until a 2xx, re-signed on each try (a fresh timestamp); return the tries.

    :raises CallbackFailed: after ``policy.attempts`` tries without a 2xx.
    """
    host = urlsplit(url).hostname or "?"
    problem = ""
    for attempt in range(1, policy.attempts + 1):
        headers = {"content-type": "application/json", "user-agent": "b2b-integrations"}
        headers.update(sign_standard(secret, message_id, int(clock()), body))
        try:
            status = post(url, body, headers)
        except AddressRefused as e:  # no retry brings a refused address closer
            raise CallbackRefused(f"the callback to {host} was refused: {e}") from None
        except Exception as e:  # any transport failure is worth another try
            problem = type(e).__name__
        else:
            if 200 <= status < 300:
                return attempt
            problem = f"HTTP {status}"
        if attempt < policy.attempts:
            wait = policy.backoff(attempt)
            if log is not None:
                log.warning(
                    "Callback to %s: %s; try %d of %d in %.1f s",
                    host,
                    problem,
                    attempt + 1,
                    policy.attempts,
                    wait,
                )
            sleep(wait)
    raise CallbackFailed(f"the callback to {host} failed {policy.attempts} times; last: {problem}")
