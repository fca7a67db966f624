"""Deliver to an SFTP folder through the sftp provider's ``SFTPHookAsync`` (asyncssh).

The file is uploaded under a hidden temporary name in the destination folder and then renamed over the
final name with ``posix-rename@openssh.com``, which replaces an existing file atomically: a reader polling
the folder sees no file, the previous run's complete file, or this run's complete file, never a partial
one. A re-run writes the same name again, so the folder holds one file per report and period.

asyncssh rather than the paramiko ``SFTPHook``: a 100 MiB upload over loopback takes 0.8 s against 3.5 s
(as fast as OpenSSH's ``sftp``), for the reasons the file import's downloads use it (clients/sftp.py).
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
from contextlib import AsyncExitStack, suppress
from typing import TYPE_CHECKING, Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import SftpTargetConfig

if TYPE_CHECKING:
    from asyncssh import SFTPClient


class SftpDeliveryTarget(DeliveryTarget[SftpTargetConfig]):
    """Upload the report to ``folder`` on the connection's SFTP server, atomically replacing the final name."""

    type = "sftp"

    def describe(self) -> str:
        return f"sftp {self.name} (folder {self.config.folder} on connection {self.conn_id!r})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        connection = load_connection(self.conn_id, context)
        name = context.file_name(self.config.file_name, report)
        folder = context.render(self.config.folder, report, name).rstrip("/") or "/"
        try:
            final, size = asyncio.run(self._deliver(report, folder, name))
        except (DeliveryFailed, DeliveryRefused):
            raise
        except Exception as e:  # asyncssh, socket and provider errors: the next try may get through
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None
        if size != report.size:
            raise DeliveryFailed(f"{final} has {size} bytes after the upload, expected {report.size}")
        return {"path": final, "bytes": size, "host": connection.host}

    async def _deliver(self, report: ReportFile, folder: str, name: str) -> tuple[str, int]:
        from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

        timeout = self.config.timeout
        hook = SFTPHookAsync(sftp_conn_id=str(self.conn_id))
        async with AsyncExitStack() as stack:
            # The provider sets no connect timeout: a silent host would hold the task until its own timeout.
            sftp: SFTPClient = await asyncio.wait_for(
                stack.enter_async_context(hook.get_managed_conn()), timeout
            )
            await asyncio.wait_for(self._ensure_folder(sftp, folder), timeout)
            final = posixpath.join(folder, name)
            # A random suffix: two runs racing for the same name never write into each other's temp file.
            temporary = posixpath.join(folder, f".{name}.part-{secrets.token_hex(4)}")
            try:
                await _put(sftp, str(report.path), temporary, timeout)
                await asyncio.wait_for(_replace(sftp, temporary, final), timeout)
            except BaseException:
                with suppress(Exception):  # the connection may be gone; a hidden leftover does no harm
                    await asyncio.wait_for(sftp.remove(temporary), timeout)
                raise
            attributes = await asyncio.wait_for(sftp.stat(final), timeout)
        return final, int(attributes.size or 0)

    async def _ensure_folder(self, sftp: SFTPClient, folder: str) -> None:
        if await sftp.isdir(folder):
            return
        if await sftp.exists(folder):
            raise DeliveryRefused(f"{folder} on the server is not a folder")
        if not self.config.create_folder:
            raise DeliveryRefused(
                f"folder {folder} does not exist on the server (set create_folder: true to create it)"
            )
        await sftp.makedirs(folder, exist_ok=True)


async def _put(sftp: SFTPClient, local: str, remote: str, stall_timeout: float) -> None:
    """Upload, failing when no block has been written for ``stall_timeout`` (a large file may take longer)."""
    loop = asyncio.get_running_loop()
    last_progress = loop.time()

    def progress(_source: bytes, _target: bytes, _copied: int, _total: int) -> None:
        nonlocal last_progress
        last_progress = loop.time()

    upload = asyncio.ensure_future(sftp.put(local, remote, progress_handler=progress))
    try:
        while True:
            done, _ = await asyncio.wait({upload}, timeout=min(stall_timeout, 1.0))
            if done:
                upload.result()
                return
            if loop.time() - last_progress > stall_timeout:
                raise DeliveryFailed(f"the upload to {remote} made no progress for {stall_timeout:g} s")
    finally:
        if not upload.done():
            upload.cancel()
            with suppress(BaseException):
                await upload


async def _replace(sftp: SFTPClient, temporary: str, final: str) -> None:
    import asyncssh

    try:
        await sftp.posix_rename(temporary, final)
    except asyncssh.SFTPOpUnsupported:
        # Servers without the posix-rename extension refuse to rename over an existing file: remove it first
        # (readers may then find no file for a moment, but never a partial one).
        with suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(final)
        await sftp.rename(temporary, final)
