"""Deferrable wait for new, fully written files in a remote SFTP folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from b2b_integrations.sources.files import RemoteFile, json_safe_name, ready_files

_REGULAR_FILE = 1  # SFTP v3 FILEXFER_TYPE_REGULAR, as asyncssh reports it


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

        hook = SFTPHookAsync(sftp_conn_id=self.sftp_conn_id)
        async with hook.get_managed_conn() as sftp:
            # A bytes path makes asyncssh return names undecoded: one name that is not UTF-8 must not stop
            # the listing (and so every file of the folder); it is decoded as the import decodes it.
            names = await sftp.readdir(self.folder.encode("utf-8", "surrogateescape"))
        return [
            RemoteFile(
                mtime=int(n.attrs.mtime or 0),
                name=bytes(n.filename).decode("utf-8", "surrogateescape"),
                size=int(n.attrs.size or 0),
            )
            for n in names
            if n.attrs.type == _REGULAR_FILE
        ]

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
