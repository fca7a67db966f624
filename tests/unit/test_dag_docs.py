"""The generated DAG docs name the URL a third party must call: webhook flows and sync flows (issue 16)."""

from __future__ import annotations

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project
from helpers import REPO


def test_webhook_and_sync_flows_document_their_url() -> None:
    project = load_project(REPO / "include")
    kinds = {}
    for customer in project.customers:
        for name, settings in customer.integrations.items():
            template = project.template_for(name, settings)
            for flow_name, flow in template.flows.items():
                kinds[(customer.customer.id, name, flow_name)] = flow.trigger.type
    plans = plan_project(project)
    seen = set()
    for plan in plans:
        kind = kinds[(plan.customer_id, plan.integration, plan.flow)]
        seen.add(kind)
        path = f"{plan.customer_id}/{plan.integration}/{plan.flow}`"
        assert (f"`POST /b2b/webhooks/{path}" in plan.doc_md) == (kind == "webhook"), plan.dag_id
        assert (f"`POST /b2b/sync/{path}" in plan.doc_md) == (kind == "sync"), plan.dag_id
    assert {"webhook", "sync", "schedule"} <= seen
