"""How the things a customer's integration becomes in Airflow are named: DAG ids, asset names, task ids.

The ground floor: no import from this package, so the factory that creates the names and the API server's
routes, sync service, event ingestion and observers that look them up all use these functions, and nobody
imports the planner just to spell a DAG id.
"""

from __future__ import annotations

# Names are lower_snake_case without double underscores (config.base.IDENT_PATTERN), so the separator is
# never part of a name and a DAG id splits back into exactly its three parts.
DAG_ID_SEPARATOR = "__"
# The last task of a synchronous flow: it sends the result to the caller's callback URL.
CALLBACK_TASK_ID = "notify-caller"


def dag_id_for(customer_id: str, integration: str, flow: str) -> str:
    """The DAG of one flow of one customer's integration: ``acme__crm_contacts__sync``."""
    return DAG_ID_SEPARATOR.join((customer_id, integration, flow))


def dag_id_prefix(customer_id: str, integration: str) -> str:
    """What every DAG id of one customer's integration starts with."""
    return f"{customer_id}{DAG_ID_SEPARATOR}{integration}{DAG_ID_SEPARATOR}"


def split_dag_id(dag_id: str) -> tuple[str, str, str] | None:
    """(customer, integration, flow) of a generated DAG's id; None for any other DAG."""
    parts = dag_id.split(DAG_ID_SEPARATOR)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def inbox_asset_name(customer_id: str, integration: str, flow: str) -> str:
    return f"b2b.{customer_id}.{integration}.{flow}.inbox"


def inbox_asset_uri(customer_id: str, integration: str, flow: str) -> str:
    """The asset that receives a flow's incoming events (webhook, app event, pub/sub)."""
    return f"b2b://{customer_id}/{integration}/{flow}/inbox"


def output_asset_name(customer_id: str, integration: str, flow: str) -> str:
    return f"b2b.{customer_id}.{integration}.{flow}.output"


def output_asset_uri(customer_id: str, integration: str, flow: str) -> str:
    """The asset a flow updates when it finishes, for flows triggered by its output."""
    return f"b2b://{customer_id}/{integration}/{flow}/output"
