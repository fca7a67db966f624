"""The DB-API hook behind an Airflow connection, with the dialect our statements need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2b_integrations.errors import FatalStepError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook


def get_db_hook(conn_id: str | None) -> tuple[DbApiHook, str]:
    """Return (hook, connection type) or a fatal error naming the connection (never its secrets)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    if not conn_id:
        raise FatalStepError("no database connection id: the customer config must fill the connection slot")
    connection = BaseHook.get_connection(conn_id)
    hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise FatalStepError(f"connection {conn_id!r} is not a SQL database ({type(hook).__name__})")
    return hook, connection.conn_type
