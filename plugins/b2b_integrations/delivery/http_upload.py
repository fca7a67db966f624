"""Deliver to an HTTP endpoint: a multipart form (``multipart``) or the file as the body (``raw``).

Base URL, extra headers and credentials come from the http connection and the target's ``auth``, read the
same way as the API import does (``clients.http_api.ApiClient``: basic, API key, bearer, OAuth2 client
credentials). Every request carries an ``Idempotency-Key`` derived from the delivery, the same on a retry
and new for a forced resend, so an endpoint that honours it stores one upload even if we send twice.
"""

from __future__ import annotations

from typing import Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import HttpTargetConfig
from b2b_integrations.sources.retries import TRANSIENT_STATUSES

IDEMPOTENCY_HEADER = "Idempotency-Key"


def excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def status_error(status: int, message: str) -> DeliveryFailed | DeliveryRefused:
    """Transient statuses (429, 5xx, ...) may pass on a retry; any other 4xx will not."""
    if status in TRANSIENT_STATUSES or status >= 500:
        return DeliveryFailed(message)
    return DeliveryRefused(message)


class HttpDeliveryTarget(DeliveryTarget[HttpTargetConfig]):
    """Upload the report to ``endpoint`` of the connection's base URL with ``method`` (POST or PUT)."""

    type = "http"

    def describe(self) -> str:
        c = self.config
        return f"http {self.name} ({c.method} {c.endpoint}, {c.mode}, via connection {self.conn_id!r})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        import requests

        from b2b_integrations.clients.http_api import ApiCallFailed, ApiClient, auth_from_config, safe_url
        from b2b_integrations.sources.pagination import PageRequest
        from b2b_integrations.sources.retries import RetryPolicy

        load_connection(self.conn_id, context)
        name = context.file_name(self.config.file_name, report)
        endpoint = context.render(self.config.endpoint, report, name, quote=True)
        try:
            auth = auth_from_config(self.config.auth)
            # One try: Airflow's task retries repeat a failed delivery, and the ledger skips what went out.
            client = ApiClient(
                str(self.conn_id), auth, RetryPolicy(attempts=1), self.config.timeout, None, f"http {self.name}",
                context.log,
            )  # fmt: skip
            headers = {**client.auth_headers(), IDEMPOTENCY_HEADER: context.delivery_id}
        except (ApiCallFailed, ValueError) as e:
            raise DeliveryRefused(str(e)) from None
        # One line each: a line break from a placeholder value would be a header injection.
        headers.update(
            {k: " ".join(context.render(v, report, name).split()) for k, v in self.config.headers.items()}
        )
        url = client.url(PageRequest(endpoint))
        shown = safe_url(url)
        with report.path.open("rb") as body:
            if self.config.mode == "multipart":
                # Streamed: requests' own multipart encoding would read the whole file into memory.
                from requests_toolbelt.multipart.encoder import MultipartEncoder

                form = {k: context.render(v, report, name) for k, v in self.config.form.items()}
                encoder = MultipartEncoder(
                    fields={**form, self.config.field: (name, body, report.content_type)}
                )
                headers["Content-Type"] = encoder.content_type
                payload: dict[str, Any] = {"data": encoder}
            else:
                headers["Content-Type"] = self.config.content_type or report.content_type
                payload = {"data": body}
            try:
                response = client.session.request(
                    self.config.method, url, headers=headers, timeout=self.config.timeout, **payload
                )
            except requests.RequestException as e:
                raise DeliveryFailed(f"{self.config.method} {shown}: {type(e).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise status_error(
                response.status_code,
                f"{self.config.method} {shown} answered HTTP {response.status_code}: {excerpt(response.text)}",
            )
        receipt: dict[str, Any] = {
            "url": shown,
            "method": self.config.method,
            "status": response.status_code,
            "idempotency_key": context.delivery_id,
        }
        if response.headers.get("Location"):
            receipt["location"] = safe_url(response.headers["Location"])
        return receipt
