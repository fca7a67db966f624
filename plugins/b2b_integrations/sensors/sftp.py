"""Wait for new, fully written files in a remote SFTP folder (poke or deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from b2b_integrations.clients.sftp import open_remote_folder
from b2b_integrations.sources.files import RemoteFile, json_safe_name, ready_files
from b2b_integrations.state import ledger
from b2b_integrations.triggers.sftp import SftpNewFilesTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class SftpNewFilesSensor(BaseSensorOperator):
    """
    Succeed when ``folder`` holds at least one new file matching ``pattern`` (glob) and ``regex`` that is
    not yet in the processed-file ledger and did not change (size, mtime) between two looks, i.e. is no
    longer being written. Returns the ready file names (XCom).

    Runs in ``poke`` mode or deferred to the triggerer (``deferrable=True``). ``reschedule`` mode is refused:
    it would forget the previous look between pokes, and a file could never be seen as stable.

    :param sftp_conn_id: Airflow SFTP connection.
    :param folder: Remote folder. (templated)
    :param pattern: Glob of file names, e.g. ``*.csv``. (templated)
    :param regex: Optional regular expression the whole name must match. (templated)
    :param db_conn_id: Database holding the ledger (``b2b_file_ledger``); None means no ledger check.
    :param customer_id: Ledger scope: customer.
    :param integration: Ledger scope: integration.
    :param flow: Ledger scope: flow.
    :param deferrable: Wait in the triggerer instead of occupying a worker slot.
    """

    template_fields: Sequence[str] = ("folder", "pattern", "regex")
    ui_color = "#e8f7fb"

    def __init__(
        self,
        *,
        sftp_conn_id: str,
        folder: str,
        pattern: str = "*",
        regex: str | None = None,
        db_conn_id: str | None = None,
        customer_id: str = "",
        integration: str = "",
        flow: str = "",
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.mode == "reschedule":
            raise ValueError("SftpNewFilesSensor cannot run in reschedule mode: use poke or deferrable=True")
        self.sftp_conn_id = sftp_conn_id
        self.folder = folder
        self.pattern = pattern
        self.regex = regex
        self.db_conn_id = db_conn_id
        self.customer_id = customer_id
        self.integration = integration
        self.flow = flow
        self.deferrable = deferrable
        self._previous: dict[str, RemoteFile] = {}

    def _done(self) -> set[tuple[str, int, int]]:
        if not self.db_conn_id:
            return set()
        from b2b_integrations.clients.sql import get_db_hook

        hook, _ = get_db_hook(self.db_conn_id)
        with closing(hook.get_conn()) as conn:
            ledger.ensure_ledger(conn)
            return ledger.done_files(conn, hook.placeholder, self.customer_id, self.integration, self.flow)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        with open_remote_folder(self.sftp_conn_id, self.folder) as remote:
            listing = remote.list_files()
        ready = ready_files(listing, self._previous, self.pattern, self.regex, self._done())
        self._previous = {f.name: f for f in listing}
        if ready:
            names = [json_safe_name(f.name) for f in ready]  # XCom is JSON in the metadata DB
            self.log.info("%d new file(s) ready in %s: %s", len(ready), self.folder, names)
            return PokeReturnValue(is_done=True, xcom_value=names)
        return False

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=SftpNewFilesTrigger(
                sftp_conn_id=self.sftp_conn_id,
                folder=self.folder,
                pattern=self.pattern,
                regex=self.regex,
                done=[list(key) for key in sorted(self._done())],
                poke_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[str]:
        if event.get("status") != "success":
            raise AirflowException(f"waiting for files in {self.folder} failed: {event.get('message')}")
        self.log.info("New file(s) ready in %s: %s", self.folder, event["files"])
        return list(event["files"])
