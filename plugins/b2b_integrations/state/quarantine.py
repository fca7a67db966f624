"""Quarantined inbox messages: kept in the inbox asset's state store and listed here; ``replay/quarantine.py``
queues them into their inbox again.

An event-driven flow reads its inbox from a stored position. A message that can never succeed (a body the
Execution API cannot return, a customer transform that raises on it, a record missing its load key or
failing a declared column type) must not hold that position back, or every later message waits behind it.
The steps set such a message aside with its reasons; the flow's last step writes one entry per message
here, then moves the position past it.

Why the inbox asset's state store (Airflow's metadata DB) and not a table in the destination database:

- every event-driven flow has an inbox, but not every flow has a database (an ``http_call`` or
  ``deliver`` flow has none); the steps that read the inbox and move its position already reach its state
  store through the Execution API, which is tenant-scoped by construction (one asset per customer,
  integration and flow);
- the original message lives in the metadata DB too (the inbox's asset event and the webhook receipt), so
  a replay re-queues it and marks the entry replayed in ONE transaction: a replay happens once, however
  often the command is run;
- the asset state store has no retention for asset-scoped keys, so an entry stays until replayed.

Entries are written after the flow's work committed and before the position moves; a crash between the
two repeats the run, which writes the same entries again (one key per message id, overwritten).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KEY_PREFIX = "b2b_quarantine:"
REPLAY_MARK = "#replay-"
UNREADABLE_PREFIX = "event@"  # see operators.base.unreadable_event_id


def entry_key(message_id: str) -> str:
    """State-store key of a quarantined message (the store's keys are at most 512 characters)."""
    return f"{KEY_PREFIX}{message_id[:480]}"


def reason(step: str, text: str, *, field: str | None = None, record: int | None = None) -> dict[str, Any]:
    """One reason a message was set aside: the step, what failed, and where in the message."""
    return {"step": step, "field": field, "record": record, "reason": text}


def merge_reasons(found: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Quarantine findings (``message_id``, ``received_at``, ``reason``) grouped per message, in order."""
    merged: dict[str, dict[str, Any]] = {}
    for item in found:
        entry = merged.setdefault(
            item["message_id"],
            {"message_id": item["message_id"], "received_at": item.get("received_at"), "reasons": []},
        )
        if item["reason"] not in entry["reasons"]:
            entry["reasons"].append(item["reason"])
    return merged


def write_entries(
    store: Any,
    found: Iterable[dict[str, Any]],
    *,
    customer_id: str,
    integration: str,
    flow: str,
    dag_id: str,
    run_id: str,
) -> list[str]:
    """Task side: store one entry per quarantined message through ``store`` (the inbox's
    ``asset_state_store`` accessor); return the message ids."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    merged = merge_reasons(found)
    for message_id, entry in merged.items():
        store.set(
            entry_key(message_id),
            {
                **entry,
                "customer_id": customer_id,
                "integration": integration,
                "flow": flow,
                "dag_id": dag_id,
                "run_id": run_id,
                "quarantined_at": now,
                "replayed_as": None,
                "replayed_at": None,
            },
        )
    return list(merged)


def describe(entry: dict[str, Any]) -> str:
    """``step normalise, record 2, field 'id': ...; step ...`` for a listing."""
    parts = []
    for item in entry.get("reasons") or []:
        where = [f"step {item.get('step')}"]
        if item.get("record") is not None:
            where.append(f"record {item['record']}")
        if item.get("field"):
            where.append(f"field {item['field']!r}")
        parts.append(f"{', '.join(where)}: {item.get('reason')}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- reading (metadata DB)


@dataclass(frozen=True)
class Quarantined:
    """One quarantined message as the CLI shows it."""

    customer_id: str
    integration: str
    flow: str
    message_id: str
    entry: dict[str, Any]

    @property
    def replayed_as(self) -> str | None:
        return self.entry.get("replayed_as")


def _parse_inbox_uri(uri: str) -> tuple[str, str, str]:
    customer_id, integration, flow, _ = uri.removeprefix("b2b://").split("/")
    return customer_id, integration, flow


def list_quarantined(
    session: Any, customer_id: str, integration: str | None = None, flow: str | None = None
) -> list[Quarantined]:
    """Every quarantined message of a customer (optionally one integration, one flow), oldest first."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel

    prefix = f"b2b://{customer_id}/"
    query = (
        sa.select(AssetModel.uri, AssetStateStoreModel.key, AssetStateStoreModel.value)
        .join(AssetStateStoreModel, AssetStateStoreModel.asset_id == AssetModel.id)
        .where(AssetModel.uri.startswith(prefix, autoescape=True))
        .where(AssetModel.uri.endswith("/inbox"))
        .where(AssetStateStoreModel.key.startswith(KEY_PREFIX, autoescape=True))
    )
    found = []
    for uri, _key, value in session.execute(query):
        customer, integ, fl = _parse_inbox_uri(uri)
        if customer != customer_id or (integration and integ != integration) or (flow and fl != flow):
            continue
        entry = json.loads(value)
        found.append(Quarantined(customer, integ, fl, entry["message_id"], entry))
    return sorted(found, key=lambda q: (q.entry.get("quarantined_at") or "", q.flow, q.message_id))
