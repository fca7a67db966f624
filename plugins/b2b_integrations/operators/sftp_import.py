"""Scheduled file import from an SFTP folder (the import routine itself is ``operators/file_import.py``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from b2b_integrations.clients.remote_folder import RemoteFolder
from b2b_integrations.clients.sftp import open_remote_folder
from b2b_integrations.operators.file_import import FileImportOperator


class SftpFileImportOperator(FileImportOperator):
    """
    Import every new file of a remote SFTP folder into a SQL table: see :class:`FileImportOperator` for
    the ledger, stability check, move/delete and quarantine rules and every other parameter.

    :param sftp_conn_id: Airflow SFTP connection of the customer's server.
    :param folder: Remote folder to import from, e.g. ``/outbound/orders``. (templated)
    """

    def __init__(self, *, sftp_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sftp_conn_id = sftp_conn_id

    def open_folder(self) -> AbstractContextManager[RemoteFolder]:
        return open_remote_folder(self.sftp_conn_id, self.folder)
