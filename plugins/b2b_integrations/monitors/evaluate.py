"""One evaluation of every instance's monitors: settings from the project, facts from the metadata DB, the
rules, the ledger, deactivation, then the deliveries that are due. Runs on the API server (it owns the
metadata DB; tasks have none), when the monitors DAG calls ``POST /b2b/api/v1/monitors/evaluate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from b2b_integrations.config.monitors import MonitorConfigError, Monitors, effective
from b2b_integrations.monitors import ledger, notify, rules
from b2b_integrations.monitors.facts import WatchedFlow, read_facts

log = logging.getLogger(__name__)

Deactivate = Callable[[str, str, Any], list[str]]
"""(customer, integration, session) -> the DAG ids paused; records the change in the instance's history."""


@dataclass
class Watched:
    monitors: dict[tuple[str, str], Monitors] = field(default_factory=dict)
    targets: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    email_from: dict[tuple[str, str], str | None] = field(default_factory=dict)
    flows: list[WatchedFlow] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)


def watched(project: Any) -> Watched:
    """Each enabled instance's effective monitors, alert targets and flows (its DAGs)."""
    from b2b_integrations.alerts import AlertTargets, operator_defaults

    app_monitors = project.app.monitors if project.app is not None else None
    defaults = app_monitors.defaults if app_monitors is not None else None
    webhook = bool(app_monitors and app_monitors.webhook_connection)
    try:
        operator = operator_defaults()
    except ValueError as e:  # a malformed [b2b_alerts]: the instances' own targets and the webhook still work
        log.error("Monitors: the operator's [b2b_alerts] defaults are not usable: %s", e)
        operator = AlertTargets()
    found = Watched()
    for instance in project.customers:
        customer = instance.customer
        if not customer.enabled:
            continue
        for name, settings in instance.integrations.items():
            template = project.template_for(name, settings)
            if template is None or not settings.enabled:
                continue
            key = (customer.id, name)
            config = {k: var.default for k, var in template.config.items()} | settings.config
            try:
                monitors = effective(defaults, template.monitors, settings.monitors, config=config)
            except MonitorConfigError as e:
                found.problems.append({"customer": customer.id, "integration": name,
                                       "key": f"integrations.{name}.monitors.{e.key}", "message": e.message})  # fmt: skip
                continue
            if not monitors.enabled:
                continue
            alerts = customer.alerts
            plain = alerts.model_dump(exclude_none=True) if hasattr(alerts, "model_dump") else alerts
            targets = AlertTargets.from_config(plain).or_defaults(operator)
            found.monitors[key] = monitors
            found.targets[key] = notify.targets_of(targets, webhook)
            found.email_from[key] = targets.email_from
            for flow_name in template.flows:
                override = settings.flows.get(flow_name)
                if override is None or override.enabled:
                    found.flows.append(WatchedFlow(customer.id, name, flow_name))
    return found


@dataclass
class Summary:
    flows: int = 0
    raised: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "flows": self.flows,
            "raised": self.raised,
            "deactivated": self.deactivated,
            "sent": self.sent,
            "failed": self.failed,
            "problems": self.problems,
        }


def run_once(
    project: Any,
    session_factory: Callable[[], Any],
    now: datetime,
    deactivate: Deactivate,
    base_url: str,
) -> Summary:
    """Evaluate, record and deliver. Each step commits before the next, so a failure part-way leaves the
    ledger saying exactly what was raised and sent."""
    found = watched(project)
    summary = Summary(flows=len(found.flows), problems=found.problems)
    with session_factory() as session:
        ledger.ensure_table(session)
    with session_factory() as session:
        times = ledger.alert_times(session, [flow.dag_id for flow in found.flows])
        facts = read_facts(session, found.flows, times)
    for fact in facts:
        key = (fact.customer, fact.integration)
        for alert in rules.evaluate(fact, found.monitors[key], now):
            _raise(alert, found.targets[key], now, deactivate, session_factory, summary)
    _deliver(project, found, session_factory, now, base_url, summary)
    return summary


def _raise(
    alert: rules.Alert,
    targets: list[str],
    now: datetime,
    deactivate: Deactivate,
    session_factory: Callable[[], Any],
    summary: Summary,
) -> None:
    # One transaction per alert: its record, its deliveries and (for deactivation) the pause.
    with session_factory() as session:
        if not ledger.record(session, alert, now, targets):
            return
        if alert.deactivates:
            paused = deactivate(alert.customer, alert.integration, session)
            summary.deactivated.append(f"{alert.customer}/{alert.integration}")
            log.warning("Monitors deactivated %s/%s after %s failures of %s: paused %s", alert.customer,
                        alert.integration, alert.details.get("failures"), alert.flow, paused)  # fmt: skip
    summary.raised.append(f"{alert.dag_id}:{alert.kind}:{alert.episode}")
    log.info("Monitor alert %s for %s (%s)", alert.kind, alert.dag_id, alert.episode)


def _deliver(
    project: Any,
    found: Watched,
    session_factory: Callable[[], Any],
    now: datetime,
    base_url: str,
    summary: Summary,
) -> None:
    from b2b_integrations.alerts import describe_error

    app_monitors = project.app.monitors if project.app is not None else None
    with session_factory() as session:  # committed before any send: a retry never sends these again
        taken = ledger.claim(session, now)
    for delivery in taken:
        alert = delivery.alert
        error = None
        try:
            _send(delivery, app_monitors, found.email_from.get((alert.customer, alert.integration)), base_url)
        except Exception as e:  # noqa: BLE001 - one target failing must not stop the others
            error = describe_error(e)
            summary.failed.append(f"{alert.dag_id}:{alert.kind} to {delivery.target.split(':')[0]}: {error}")
            log.error("Monitor alert %s for %s to %s not sent (attempt %d): %s", alert.kind, alert.dag_id,
                      delivery.target.split(":")[0], delivery.attempts, error)  # fmt: skip
        else:
            summary.sent += 1
        with session_factory() as session:
            ledger.settle(session, delivery.id, now, error)


def _send(delivery: ledger.Delivery, app_monitors: Any, email_from: str | None, base_url: str) -> None:
    kind, _, rest = delivery.target.partition(":")
    if kind == "webhook":
        if app_monitors is None or not app_monitors.webhook_connection:
            raise ValueError("app.yaml monitors.webhook_connection is no longer set")
        notify.send_webhook(app_monitors.webhook_connection, app_monitors.webhook_endpoint, delivery.alert,
                            delivery.observed_at, base_url)  # fmt: skip
    elif kind == "slack":
        notify.send_slack(rest, delivery.alert, base_url)
    elif kind == "email":
        conn_id, _, addresses = rest.partition(":")
        notify.send_email(conn_id, addresses.split(","), delivery.alert, base_url, email_from)
    elif kind == "sms":
        conn_id, sender, numbers = rest.split(":", 2)
        notify.send_sms(conn_id, numbers.split(","), sender or None, delivery.alert)
    else:
        raise ValueError(f"unknown monitor target {kind!r}")
