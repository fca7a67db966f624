"""Sending one HTTP request to a third-party API: any method, a JSON body, auth, rate limit, retries.

Built on :class:`~b2b_integrations.clients.http_api.ApiClient`, so auth (basic, API key, bearer, OAuth2 client
credentials with refresh on 401) and the client-side rate limit work as for API imports. The answer is
returned whatever its status: what a status means is the caller's business (``sources/http_call.py``).
Timeouts, dropped connections and transient statuses (429, 5xx) are retried only when ``retry`` is set,
i.e. when repeating the request cannot do the work twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b2b_integrations.clients.http_api import ApiCallFailed, ApiClient, safe_url
from b2b_integrations.sources.pagination import PageRequest

_USER_AGENT = "b2b-integrations"


class HttpCallFailed(ApiCallFailed):
    """A call failed for a technical reason (unreachable, timed out, retries used up).

    ``str(self)`` is for the task log (URL without credentials, status); ``public_message`` says only what
    a synchronous caller may be told.
    """

    def __init__(self, message: str, public_message: str, status: int = 502) -> None:
        super().__init__(message)
        self.public_message = public_message
        self.status = status


@dataclass(frozen=True)
class CallResponse:
    """A response: status, parsed JSON body (None when empty or not JSON), headers."""

    status: int
    body: Any
    headers: Mapping[str, str]
    tries: int = 1


class HttpCallClient(ApiClient):
    """One JSON request at a time through the connection's session, with the step's auth and retries."""

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> CallResponse:
        """Send the request; return the final response (after retries of transient failures if ``retry``).

        :raises HttpCallFailed: when no response came (timeout, connection refused), after any retries.
        """
        import requests

        url = self.url(PageRequest(endpoint))
        shown = f"{method} {safe_url(url, params)}"
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            self._throttle()
            try:
                response = self.session.request(
                    method,
                    url,
                    params=dict(params or {}),
                    json=json_body if method != "GET" else None,
                    headers={"User-Agent": _USER_AGENT, **(headers or {}), **self.auth_headers()},
                    timeout=self.timeout,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                status, problem, retry_after = None, type(exc).__name__, None
                timed_out = isinstance(exc, requests.Timeout)
            else:
                status, timed_out = response.status_code, False
                if status == 401 and self.auth.type == "oauth2_client_credentials" and not refreshed:
                    self.log.info("%s: 401 from %s; fetching a new access token", self.where, shown)
                    self._token, refreshed, attempt = None, True, attempt - 1
                    continue
                result = CallResponse(status, _json_or_none(response), response.headers, attempt)
                problem, retry_after = f"HTTP {status}", response.headers.get("Retry-After")
            wait = self.retry.wait_for(attempt, status, retry_after) if retry else None
            if wait is None:
                if status is not None:
                    return result
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise HttpCallFailed(
                    f"{self.where}: {shown} failed{tries}: {problem}",
                    "the third-party API "
                    + ("did not answer in time" if timed_out else "could not be reached"),
                    status=504 if timed_out else 502,
                )
            self.log.warning(
                "%s: %s answered %s; retry %d of %d in %.1f s",
                self.where, shown, problem, attempt, self.retry.attempts - 1, wait,
            )  # fmt: skip
            self.sleep(wait)


def _json_or_none(response: Any) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
