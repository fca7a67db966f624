"""Reading a third-party JSON API through the http provider's ``HttpHook``: auth, retries, rate limit.

The Airflow connection holds the base URL and the secret; the step's ``auth`` says how to use them:

* ``basic``: login / password;
* ``api_key``: the password sent in a header (``header``, default ``X-API-Key``);
* ``bearer``: the password as ``Authorization: Bearer ...``;
* ``oauth2_client_credentials``: login = client id, password = client secret, exchanged at ``token_url``
  (relative to the base URL, or the connection extra ``token_url``) for an access token, which is cached
  and fetched again when it expires or an API call answers 401;
* ``none``.

Secrets never appear in errors or logs: messages name the URL without credentials and the status, and the
access token is registered with Airflow's secret masker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from b2b_integrations.config.http_options import AuthOptions
from b2b_integrations.config.options import validated
from b2b_integrations.errors import FatalStepError
from b2b_integrations.sources.pagination import PageRequest
from b2b_integrations.sources.retries import RetryPolicy

_TOKEN_MARGIN_SECONDS = 30  # refresh a little before the API would refuse the token


class ApiCallFailed(FatalStepError):
    """The API refused a call for good (4xx, or retries exhausted); the message names URL and status."""


# The step's validated ``auth`` block is the client's auth: one model, checked at config time and here.
ApiAuth = AuthOptions


def auth_from_config(config: Mapping[str, Any] | AuthOptions | None) -> ApiAuth:
    """The resolved ``auth`` block, checked by its config model; ``ValueError`` naming the key."""
    return validated(AuthOptions, config or {}, "auth")


def safe_url(url: str, params: Mapping[str, Any] | None = None) -> str:
    """The URL as it may be shown: without user:password, with its query."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parts.query
    if params:
        query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class ApiClient:
    """GET JSON pages with auth, retries (``RetryPolicy``) and an optional client-side request rate."""

    def __init__(
        self,
        conn_id: str,
        auth: ApiAuth,
        retry: RetryPolicy,
        timeout: float,
        max_requests_per_second: float | None,
        where: str,
        log: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method="GET", http_conn_id=conn_id)
        self.session = hook.get_conn()
        self.base_url: str = hook.base_url
        connection = hook.get_connection(conn_id)
        self.auth, self.retry, self.timeout, self.where, self.log, self.sleep = (
            auth,
            retry,
            timeout,
            where,
            log,
            sleep,
        )
        self.interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._last_request = 0.0
        self._token: str | None = None
        self._token_expires = 0.0
        if auth.type != "basic":
            self.session.auth = None  # HttpHook applies basic auth whenever the connection has a login
        self._login, self._secret = connection.login, connection.password
        self._token_url = auth.token_url or connection.extra_dejson.get("token_url")
        self._check_credentials(conn_id)

    def _check_credentials(self, conn_id: str) -> None:
        needs = {
            "basic": ("login", "password"),
            "api_key": ("password",),
            "bearer": ("password",),
            "oauth2_client_credentials": ("login", "password"),
        }.get(self.auth.type, ())
        values = {"login": self._login, "password": self._secret}
        missing = [name for name in needs if not values[name]]
        if missing:
            raise ApiCallFailed(
                f"{self.where}: connection {conn_id!r} has no {' or '.join(missing)}, needed for auth "
                f"{self.auth.type!r}"
            )
        if self.auth.type == "oauth2_client_credentials" and not self._token_url:
            raise ApiCallFailed(f"{self.where}: auth oauth2_client_credentials needs token_url")

    def url(self, request: PageRequest) -> str:
        return (
            request.url
            if "://" in request.url
            else urljoin(self.base_url.rstrip("/") + "/", request.url.lstrip("/"))
        )

    def get_json(self, request: PageRequest) -> tuple[Any, Mapping[str, str], str]:
        """(parsed body, headers, URL requested) of one page, retrying what is worth retrying."""
        import requests

        url = self.url(request)
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            self._throttle()
            status: int | None = None
            retry_after = None
            try:
                response = self.session.get(
                    url, params=request.params, headers=self.auth_headers(), timeout=self.timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                status = response.status_code
                if status == 401 and self.auth.type == "oauth2_client_credentials" and not refreshed:
                    self.log.info("%s: 401 from %s; fetching a new access token", self.where, safe_url(url))
                    self._token, refreshed, attempt = None, True, attempt - 1
                    continue
                if 200 <= status < 300:
                    try:
                        return response.json(), response.headers, response.url
                    except ValueError:
                        problem, status = "a body that is not valid JSON", None
                else:
                    problem = f"HTTP {status}: {_excerpt(response.text)}"
                    retry_after = response.headers.get("Retry-After")
            wait = self.retry.wait_for(attempt, status, retry_after)
            if wait is None:
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise ApiCallFailed(
                    f"{self.where}: GET {safe_url(url, request.params)} failed{tries}: {problem}"
                )
            self.log.warning(
                "%s: GET %s answered %s; retry %d of %d in %.1f s",
                self.where, safe_url(url, request.params), problem, attempt, self.retry.attempts - 1, wait,
            )  # fmt: skip
            self.sleep(wait)

    def _throttle(self) -> None:
        if self.interval:
            delay = self._last_request + self.interval - time.monotonic()
            if delay > 0:
                self.sleep(delay)
        self._last_request = time.monotonic()

    def auth_headers(self) -> dict[str, str]:
        kind = self.auth.type
        if kind == "api_key":
            return {self.auth.header: self._secret or ""}
        if kind == "bearer":
            return {"Authorization": f"Bearer {self._secret}"}
        if kind == "oauth2_client_credentials":
            if self._token is None or time.monotonic() >= self._token_expires:
                self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _fetch_token(self) -> None:
        import requests
        from airflow.sdk.log import mask_secret

        token_url = self.url(PageRequest(str(self._token_url)))
        data = {"grant_type": "client_credentials", "client_id": self._login, "client_secret": self._secret}
        if self.auth.scope:
            data["scope"] = self.auth.scope
        try:
            response = requests.post(token_url, data=data, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise ApiCallFailed(
                f"{self.where}: OAuth token request to {safe_url(token_url)} failed: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise ApiCallFailed(
                f"{self.where}: OAuth token request to {safe_url(token_url)} failed: HTTP {response.status_code} "
                f"{_excerpt(response.text)} (check the connection's login = client id and password = client secret)"
            )
        payload = response.json()
        token = payload.get("access_token")
        if not token:
            raise ApiCallFailed(
                f"{self.where}: OAuth token response from {safe_url(token_url)} has no access_token"
            )
        mask_secret(token)
        self._token = str(token)
        lifetime = float(payload.get("expires_in") or 3600)
        self._token_expires = time.monotonic() + max(lifetime - _TOKEN_MARGIN_SECONDS, lifetime / 2)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
