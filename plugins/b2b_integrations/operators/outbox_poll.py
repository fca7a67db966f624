"""Publish our app's outbox rows as app events (the alternative to our app calling the events endpoint)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from b2b_integrations.clients.airflow_api import AirflowApiClient
from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.events.outbox import OutboxRow, OutboxTable, read_batch
from b2b_integrations.state import cursors

if TYPE_CHECKING:
    from airflow.sdk import Context

EVENTS_PATH = "/b2b/events"
PUBLISH_CHUNK = 1000  # the endpoint's per-request cap


class OutboxPollOperator(BaseOperator):
    """
    Read new rows of our app's outbox table in id order and publish them through the events endpoint
    (``POST /b2b/events`` on the API server), for up to ``max_seconds`` per run. The position moves, in the
    outbox's own database, only after the endpoint acknowledged the batch; rows that are not valid events
    go to ``b2b_quarantine`` with their reasons (and the position passes them). See ``events.outbox``.

    :param db_conn_id: Connection of our app's database (holds the outbox and the position).
    :param api_conn_id: Connection of the Airflow API server: base URL, and an API user's login/password.
    :param table: Outbox table. (templated)
    :param columns: Column names when they differ from the defaults of ``events.outbox.OutboxTable``.
    :param batch_size: Rows per read (and per position commit).
    :param settle_seconds: Rows younger than this wait for the next poll (see ``events.outbox``).
    :param max_seconds: How long one run keeps polling; schedule the DAG ``@continuous`` for a steady feed.
    :param poll_interval: Wait between polls when the outbox has nothing new.
    """

    template_fields: Sequence[str] = ("table",)
    ui_color = "#f3e8fb"

    def __init__(
        self,
        *,
        db_conn_id: str,
        api_conn_id: str,
        table: str = "b2b_outbox",
        columns: dict[str, str] | None = None,
        batch_size: int = 500,
        settle_seconds: float = 2.0,
        max_seconds: float = 55.0,
        poll_interval: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.db_conn_id = db_conn_id
        self.api_conn_id = api_conn_id
        self.table = table
        self.columns = columns or {}
        self.batch_size = batch_size
        self.settle_seconds = settle_seconds
        self.max_seconds = max_seconds
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        outbox = OutboxTable(table=self.table, **self.columns)
        key = cursors.StepKey("_app", "outbox", self.table, "poll")
        run_id = str(context.get("run_id") or "manual")
        hook, _ = get_db_hook(self.db_conn_id)
        p = hook.placeholder
        client = AirflowApiClient(self.api_conn_id)
        published = quarantined = 0
        deadline = time.monotonic() + self.max_seconds
        try:
            with closing(hook.get_conn()) as conn:
                cursors.ensure_tables(conn)
                position = int(cursors.read_cursor(conn, p, key) or 0)
                self.log.info("Outbox %s: publishing rows after id %d", self.table, position)
                while True:
                    batch = read_batch(conn, p, outbox, position, self.batch_size, self.settle_seconds)
                    if not batch:
                        if time.monotonic() + self.poll_interval > deadline:
                            break
                        time.sleep(self.poll_interval)
                        continue
                    good = [row.event for row in batch if row.event is not None]
                    for start in range(0, len(good), PUBLISH_CHUNK):
                        client.post(EVENTS_PATH, {"events": good[start : start + PUBLISH_CHUNK]})
                    bad = [row for row in batch if row.event is None]
                    position = batch[-1].row_id
                    self._advance(conn, p, key, position, bad, run_id)
                    published += len(good)
                    quarantined += len(bad)
                    self.log.info(
                        "Published %d event(s) so far (%d quarantined); position %d",
                        published,
                        quarantined,
                        position,
                    )
        finally:
            client.close()
        return {"published": published, "quarantined": quarantined, "position": position}

    def _advance(
        self, conn: Any, p: str, key: cursors.StepKey, position: int, bad: list[OutboxRow], run_id: str
    ) -> None:
        """Quarantine the invalid rows and move the position, in one transaction (after the publish)."""
        for row in bad:
            self.log.warning("Outbox row %d is not a valid event: %s", row.row_id, "; ".join(row.errors))
        try:
            with closing(conn.cursor()) as cur:
                cursors.quarantine_records(
                    cur,
                    p,
                    key,
                    run_id,
                    [(f"{self.table} row {r.row_id}", r.row_id, r.errors, r.raw) for r in bad],
                )
                cursors.write_cursor(cur, p, key, str(position))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
