"""Which Airflow connections a customer may bind its instance's slots to (pure).

A binding names a connection whose credentials the instance's tasks will use, so a customer token that could
bind any id could read another customer's system with that customer's credentials. A customer may therefore
bind a slot only to its own credentials (the connection the credentials endpoint writes for that very
slot), keep the binding it has, or get the slot's ``shared`` connection, which the engineer declared for
every customer and which is filled in for it. Engineers (Airflow tokens) bind anything, as in YAML.
"""

from __future__ import annotations

from typing import Any

from b2b_integrations.config.models import IntegrationTemplate
from b2b_integrations.errors import Problem
from b2b_integrations.instances.credentials import conn_id_for


def with_shared(template: IntegrationTemplate | None, after: dict[str, Any]) -> dict[str, Any]:
    """``after`` with every shared slot it leaves unbound bound to the shared connection (any caller)."""
    wanted = after.get("connections") or {}
    if not isinstance(wanted, dict) or template is None:
        return after
    shared = {slot: d.shared for slot, d in template.connections.items() if d.shared and slot not in wanted}
    return {**after, "connections": {**wanted, **shared}} if shared else after


def customer_bindings(
    customer: str,
    integration: str,
    template: IntegrationTemplate | None,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    file: str,
) -> tuple[dict[str, Any], list[Problem]]:
    """``after`` with shared slots filled in, and the bindings a customer may not make."""
    wanted = after.get("connections")
    if wanted is None:
        wanted = {}
    if not isinstance(wanted, dict) or template is None:
        return after, []  # the loader reports the shape or the unknown integration
    had = (before or {}).get("connections") or {}
    bound = dict(with_shared(template, after).get("connections") or {})
    problems = []
    for slot, conn_id in bound.items():
        declared = template.connections.get(slot)
        own = conn_id_for(customer, integration, slot)
        allowed = {own, had.get(slot), declared.shared if declared is not None else None}
        if conn_id not in allowed:
            problems.append(
                Problem(
                    file,
                    f"integrations.{integration}.connections.{slot}",
                    f"a customer may bind slot {slot!r} only to its own credentials ({own!r}, written by "
                    f"PUT .../credentials/{slot}) or keep its current binding",
                )
            )
    return {**after, "connections": bound}, problems
