"""Ask the API server to evaluate every instance's alert monitors (the monitors DAG's one task)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from b2b_integrations.clients.airflow_api import AirflowApiClient

if TYPE_CHECKING:
    from airflow.sdk import Context

EVALUATE_PATH = "/b2b/api/v1/monitors/evaluate"


class EvaluateMonitorsOperator(BaseOperator):
    """
    Call ``POST /b2b/api/v1/monitors/evaluate`` on the API server, which owns the metadata DB the monitors
    read, the ledger and the deactivation path; log what it raised and sent. Fails when a target could not
    be reached, so the failure shows in Airflow (the ledger tries that target again next time).

    :param api_conn_id: Connection of the Airflow API server: base URL, and an API user's login/password
        (the user needs DAG edit permission: a monitor may deactivate an instance).
    """

    template_fields: Sequence[str] = ()
    ui_color = "#fdecea"

    def __init__(self, *, api_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_conn_id = api_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        client = AirflowApiClient(self.api_conn_id)
        try:
            summary = client.post(EVALUATE_PATH, {})
        finally:
            client.close()
        for problem in summary.get("problems", []):
            self.log.error("Monitors of %s/%s not evaluated: %s: %s", problem.get("customer"),
                           problem.get("integration"), problem.get("key"), problem.get("message"))  # fmt: skip
        self.log.info("Monitors: %d flow(s) watched, %d alert(s) raised %s, %d delivery(ies) sent, deactivated %s",
                      summary.get("flows", 0), len(summary.get("raised", [])), summary.get("raised", []),
                      summary.get("sent", 0), summary.get("deactivated", []))  # fmt: skip
        failed = summary.get("failed") or []
        if failed:
            from b2b_integrations.alerts import AlertDeliveryError

            raise AlertDeliveryError(
                "monitor alerts not delivered (tried again next time): " + "; ".join(failed)
            )
        return {k: summary.get(k) for k in ("flows", "raised", "sent", "deactivated")}
