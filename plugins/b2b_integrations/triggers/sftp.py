"""Deferrable wait for new, fully written files in a remote SFTP folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from b2b_integrations.sources.files import RemoteFile, json_safe_name, ready_files


class SftpNewFilesTrigger(BaseTrigger):
    """
    List ``folder`` every ``poke_interval`` seconds until a new file matching ``pattern``/``regex`` is
    unchanged (size and mtime) between two listings and not in ``done`` (the ledger at deferral time).

    Yields ``{"status": "success", "files": [...]}`` or ``{"status": "error", "message": ...}``.
    """

    def __init__(
        self,
        *,
        sftp_conn_id: str,
        folder: str,
        pattern: str | None,
        regex: str | None,
        done: list[list[Any]],
        poke_interval: float,
    ) -> None:
        super().__init__()
        self.sftp_conn_id = sftp_conn_id
        self.folder = folder
        self.pattern = pattern
        self.regex = regex
        self.done = done
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sftp_conn_id": self.sftp_conn_id,
                "folder": self.folder,
                "pattern": self.pattern,
                "regex": self.regex,
                "done": self.done,
                "poke_interval": self.poke_interval,
            },
        )

    async def _list(self) -> list[RemoteFile]:
        from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

        from b2b_integrations.clients.sftp import list_regular_files

        hook = SFTPHookAsync(sftp_conn_id=self.sftp_conn_id)
        async with hook.get_managed_conn() as sftp:
            return await list_regular_files(sftp, self.folder)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        done = {(name, int(size), int(mtime)) for name, size, mtime in self.done}
        previous: dict[str, RemoteFile] = {}
        while True:
            try:
                listing = await self._list()
            except Exception as e:
                yield TriggerEvent(
                    {"status": "error", "message": f"cannot list {self.folder}: {type(e).__name__}: {e}"}
                )
                return
            ready = ready_files(listing, previous, self.pattern, self.regex, done)
            if ready:
                # The import lists the folder again and refuses a name that is not UTF-8 itself; the event only
                # has to carry it, and must be JSON the metadata DB can store.
                yield TriggerEvent({"status": "success", "files": [json_safe_name(f.name) for f in ready]})
                return
            previous = {f.name: f for f in listing}
            await asyncio.sleep(self.poke_interval)
