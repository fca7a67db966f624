"""Remote-folder operations on top of the sftp provider's hooks, for file imports.

Listing, moving and uploading go through ``SFTPHook`` (paramiko). Downloads go through the provider's
``SFTPHookAsync`` (asyncssh): measured on a 117 MB file over loopback, 0.3 s against 1.4 s for paramiko,
which also slows down 20x or worse when another Python thread of the task is busy (its transport thread
hands every 32 KB packet to the reading thread, and each hand-off waits for the GIL).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import stat
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.remote_folder import FreeNames
from b2b_integrations.sources.files import RemoteFile

if TYPE_CHECKING:
    from paramiko import SFTPClient

_DOWNLOAD_BLOCK = 1024 * 1024
_ASYNC_BLOCK = 256 * 1024
_REGULAR_FILE = 1  # SFTP v3 FILEXFER_TYPE_REGULAR, as asyncssh reports it
log = logging.getLogger(__name__)


class SftpFolder(FreeNames):
    """One remote SFTP folder (a :class:`~b2b_integrations.clients.remote_folder.RemoteFolder`): list, move
    and upload through an open paramiko client, download through :class:`AsyncDownloads`."""

    def __init__(self, client: SFTPClient, folder: str, downloads: AsyncDownloads) -> None:
        self.client = client
        self.folder = folder.rstrip("/") or "/"
        self.downloads = downloads

    def path(self, name: str) -> str:
        return posixpath.join(self.folder, name)

    def list_files(self) -> list[RemoteFile]:
        """Regular files directly in the folder (sub-folders such as processed/ are not descended).

        A name that is not UTF-8 comes back with its bad bytes as surrogates (``surrogateescape``), so that
        it can be refused by name and still be moved by its exact bytes.
        """
        try:
            listing = self.client.listdir_attr(self.folder)
        except UnicodeDecodeError:
            # paramiko decodes names strictly, so one such name (a latin-1 uploader, say) fails the whole
            # listing, and every file of the folder with it: list through asyncssh, which can return bytes.
            return self.downloads.list_files(self.folder)
        return sorted(
            RemoteFile(mtime=int(a.st_mtime or 0), name=a.filename, size=int(a.st_size or 0))
            for a in listing
            if a.st_mode is not None and stat.S_ISREG(a.st_mode)
        )

    def download(self, name: str, local: Path) -> str:
        """Stream ``name`` to ``local`` in blocks (never whole in memory); return its sha256."""
        return self.downloads.download(self.path(name), local)

    def ensure_subfolder(self, sub: str) -> str:
        target = self.path(sub)
        try:
            self.client.stat(target)
        except FileNotFoundError:
            self.client.mkdir(target)
        return target

    def exists(self, sub: str, name: str) -> bool:
        """Whether ``sub/name`` exists under the folder."""
        try:
            self.client.stat(posixpath.join(self.path(sub), name))
        except FileNotFoundError:
            return False
        return True

    def move(self, name: str, sub: str, new_name: str | None = None) -> str:
        """Move a file into a sub-folder under ``new_name`` (default: its own name); a file of that name
        already there is replaced, so callers pick a free name first (:meth:`free_name`)."""
        target = posixpath.join(self.ensure_subfolder(sub), new_name or name)
        self.client.posix_rename(_wire(self.path(name)), _wire(target))
        return target

    def rename(self, sub: str, name: str, new_name: str) -> str:
        """Rename ``sub/name`` to ``sub/new_name`` (replacing it, so pick a free name first)."""
        folder = self.path(sub)
        target = posixpath.join(folder, new_name)
        self.client.posix_rename(posixpath.join(folder, name), target)
        return target

    def delete(self, name: str) -> None:
        self.client.remove(self.path(name))

    def upload(self, local: Path, sub: str, name: str) -> str:
        """Upload to a temporary name, then rename: readers never see a half-written file."""
        folder = self.ensure_subfolder(sub)
        target = posixpath.join(folder, name)
        tmp = posixpath.join(folder, f".{name}.part")
        self.client.put(str(local), tmp)
        self.client.posix_rename(tmp, target)
        return target


async def list_regular_files(sftp: Any, folder: str) -> list[RemoteFile]:
    """The regular files of ``folder`` on an asyncssh SFTP client, names decoded with ``surrogateescape``.

    A name that is not UTF-8 must not fail the listing, and with it every file of the folder: a bytes path
    makes asyncssh return the names undecoded.
    """
    entries = await sftp.readdir(_wire(folder))
    return sorted(
        RemoteFile(
            mtime=int(e.attrs.mtime or 0),
            name=bytes(e.filename).decode("utf-8", "surrogateescape"),
            size=int(e.attrs.size or 0),
        )
        for e in entries
        if e.attrs.type == _REGULAR_FILE
    )


def _wire(path: str) -> bytes:
    """The path as the server has it, including a name listed with bytes that are not UTF-8."""
    return path.encode("utf-8", "surrogateescape")


class AsyncDownloads:
    """Downloads over ``SFTPHookAsync`` on a private event loop thread, one SSH session for all files.

    The session opens on the first download; :meth:`close` ends it and the loop.
    """

    def __init__(self, conn_id: str) -> None:
        from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

        self._hook = SFTPHookAsync(sftp_conn_id=conn_id)
        self._session = AsyncExitStack()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_one_line)
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-downloads", daemon=True)
        self._thread.start()
        self._sftp: Any = None

    def download(self, remote_path: str, local: Path) -> str:
        """Stream ``remote_path`` to ``local``; return its sha256."""
        return asyncio.run_coroutine_threadsafe(self._download(remote_path, local), self._loop).result()

    def list_files(self, folder: str) -> list[RemoteFile]:
        """Regular files of ``folder``, names decoded with ``surrogateescape`` (never fails on a name)."""
        return asyncio.run_coroutine_threadsafe(self._list_files(folder), self._loop).result()

    async def _connected(self) -> Any:
        if self._sftp is None:  # connect on first use: most scheduled runs find nothing to download
            self._sftp = await self._session.enter_async_context(self._hook.get_managed_conn())
        return self._sftp

    async def _list_files(self, folder: str) -> list[RemoteFile]:
        return await list_regular_files(await self._connected(), folder)

    async def _download(self, remote_path: str, local: Path) -> str:
        await self._connected()
        digest = hashlib.sha256()
        with local.open("wb") as out:
            # Parallel block reads keep the link busy; the 1 MB reads bound memory.
            async with self._sftp.open(remote_path, "rb", block_size=_ASYNC_BLOCK, max_requests=32) as remote:
                while block := await remote.read(_DOWNLOAD_BLOCK):
                    digest.update(block)
                    out.write(block)
        return digest.hexdigest()

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._session.aclose(), self._loop).result()
        except Exception as exc:  # a dropped session fails to close; the error that dropped it matters more
            log.warning("Closing the SFTP download session failed: %s", exc)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


def _one_line(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log an error no one awaited (asyncssh's parallel reads of a dropped session) as one line.

    The download's own error already reaches the caller. asyncio's default handler formats a traceback
    when the garbage collector frees such a task, and a collection can start inside any ``ast.parse`` (an
    import rewritten by pytest, say). On Python 3.11 the traceback module parses source lines with ``ast``
    too, and that nested parse unbalances the interpreter's shared AST recursion counter: the outer parse
    fails with "SystemError: AST constructor recursion depth mismatch". Python 3.12 does not share it.
    """
    exc = context.get("exception")
    log.warning("SFTP download session: %s%s", context.get("message"), f" ({exc!r})" if exc else "")


@contextmanager
def open_remote_folder(conn_id: str, folder: str) -> Iterator[SftpFolder]:
    """Connect with the Airflow connection ``conn_id`` and close the sessions on exit."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=conn_id)
    downloads = AsyncDownloads(conn_id)
    try:
        with hook.get_managed_conn() as client:
            yield SftpFolder(client, folder, downloads)
    finally:
        downloads.close()
