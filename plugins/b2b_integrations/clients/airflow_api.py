"""Calls to our own endpoints on the Airflow API server, authenticated the way any API client is.

The connection (type http) holds the API server's base URL and a user's login and password; the client
exchanges them at ``POST /auth/token`` (Airflow's auth manager) for a JWT, sends it as a Bearer token and
fetches a new one once when a call answers 401 (expired). Transient failures (5xx, 429, timeouts) are
retried with :class:`~b2b_integrations.sources.retries.RetryPolicy`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from b2b_integrations.errors import FatalStepError
from b2b_integrations.sources.retries import RetryPolicy


class AirflowApiError(FatalStepError):
    """A call to the API server failed for good (4xx, or the retry budget ran out)."""


class AirflowApiClient:
    """POST JSON to the API server as the connection's user."""

    def __init__(
        self,
        conn_id: str,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method="POST", http_conn_id=conn_id)
        hook.get_conn()
        connection = hook.get_connection(conn_id)
        if not connection.login or not connection.password:
            raise AirflowApiError(f"connection {conn_id!r} needs the login and password of an API user")
        self.base_url = hook.base_url.rstrip("/")
        self._credentials = {"username": connection.login, "password": connection.password}
        self._token: str | None = None
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._client = httpx.Client(timeout=timeout, trust_env=False)

    def post(self, path: str, payload: Any) -> dict[str, Any]:
        """The JSON answer of a 2xx; raise :class:`AirflowApiError` otherwise (after retries)."""
        import httpx

        url = f"{self.base_url}{path}"
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            try:
                response = self._client.post(
                    url, json=payload, headers={"Authorization": f"Bearer {self._jwt()}"}
                )
            except httpx.HTTPError as e:
                status, detail, retry_after = None, f"{type(e).__name__} calling {url}", None
            else:
                if response.is_success:
                    return response.json() if response.content else {}
                if response.status_code == 401 and not refreshed:
                    self._token, refreshed = None, True  # expired: one fresh token, then as any error
                    continue
                status, retry_after = response.status_code, response.headers.get("retry-after")
                detail = f"HTTP {status} from {url}: {' '.join(response.text[:300].split())}"
            wait = self.retry.wait_for(attempt, status, retry_after)
            if wait is None:
                raise AirflowApiError(detail)
            self.sleep(wait)

    def _jwt(self) -> str:
        if self._token is None:
            response = self._client.post(f"{self.base_url}/auth/token", json=self._credentials)
            if not response.is_success:
                raise AirflowApiError(
                    f"the API server refused the connection's credentials at /auth/token (HTTP {response.status_code})"
                )
            self._token = response.json()["access_token"]
        return self._token

    def close(self) -> None:
        self._client.close()
