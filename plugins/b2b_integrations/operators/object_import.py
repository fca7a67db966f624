"""Scheduled file import from object storage (the import routine itself is ``operators/file_import.py``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from b2b_integrations.clients.object_storage import ObjectStorageFolder, location
from b2b_integrations.clients.remote_folder import RemoteFolder
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.file_import import FileImportOperator
from b2b_integrations.sources.files import LocationRefused


class ObjectStorageImportOperator(FileImportOperator):
    """
    Import every new file of an object-storage folder (Airflow ``ObjectStoragePath``: ``s3://``,
    ``gs://``, ``file://``, ...) into a SQL table, with the same ledger, stability check, move/delete and
    quarantine rules as the SFTP import (see :class:`FileImportOperator` for every other parameter).

    The folder is ``folder`` under the root the connection names in its extra (``b2b_root``, with
    ``{customer}`` replaced by the customer id): a customer's config can choose a sub-folder, never another
    customer's prefix (see ``clients/object_storage.py``).

    :param storage_conn_id: Airflow connection of the store (``aws`` for s3://, ``google_cloud_platform``
        for gs://, any type for file://), whose extra holds ``b2b_root``.
    :param folder: Folder under the connection's root, relative, e.g. ``orders/inbox``. (templated)
    """

    def __init__(self, *, storage_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id

    def open_folder(self) -> AbstractContextManager[RemoteFolder]:
        try:
            base = location(self.storage_conn_id, self.folder, self.customer_id)
        except LocationRefused as e:  # a config error: retrying cannot help
            raise FatalStepError(
                f"customer {self.customer_id}, integration {self.integration}, flow {self.flow}: {e}"
            ) from e
        return nullcontext(ObjectStorageFolder(base))  # nothing to close: the filesystem is per process
