"""Which connections a customer token may bind (pure rule)."""

from __future__ import annotations

from b2b_integrations.config.models import IntegrationTemplate
from b2b_integrations.instances.bindings import customer_bindings
from helpers import minimal_template


def _template() -> IntegrationTemplate:
    data = minimal_template("sync")
    data["connections"] = {"db": {"type": "postgres"}, "app_db": {"type": "postgres", "shared": "our_app"}}
    return IntegrationTemplate.model_validate(data)


def test_own_credentials_kept_bindings_and_shared_slots() -> None:
    before = {"connections": {"db": "engineer_made"}}
    after, problems = customer_bindings(
        "acme", "sync", _template(), before, {"connections": {"db": "engineer_made"}}, "f"
    )
    assert problems == [] and after["connections"] == {"db": "engineer_made", "app_db": "our_app"}
    after, problems = customer_bindings(
        "acme", "sync", _template(), before, {"connections": {"db": "b2b_acme__sync__db"}}, "f"
    )
    assert problems == []


def test_another_customers_connection_or_a_shared_one_elsewhere_is_refused() -> None:
    for bindings in (
        {"db": "globex_db"},
        {"db": "b2b_globex__sync__db"},
        {"db": "our_app"},
        {"app_db": "globex_db"},
    ):
        _, problems = customer_bindings("acme", "sync", _template(), None, {"connections": bindings}, "f")
        assert [p.key_path for p in problems] == [f"integrations.sync.connections.{next(iter(bindings))}"], (
            bindings
        )
