"""Remote-folder operations on top of the sftp provider's hook (paramiko), for file imports."""

from __future__ import annotations

import hashlib
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from b2b_integrations.sources.files import RemoteFile

if TYPE_CHECKING:
    from paramiko import SFTPClient

_DOWNLOAD_BLOCK = 1024 * 1024


class RemoteFolder:
    """One remote folder reached through an open SFTP client: list, download, move, upload text."""

    def __init__(self, client: SFTPClient, folder: str) -> None:
        self.client = client
        self.folder = folder.rstrip("/") or "/"

    def path(self, name: str) -> str:
        return posixpath.join(self.folder, name)

    def list_files(self) -> list[RemoteFile]:
        """Regular files directly in the folder (sub-folders such as processed/ are not descended)."""
        return sorted(
            RemoteFile(mtime=int(a.st_mtime or 0), name=a.filename, size=int(a.st_size or 0))
            for a in self.client.listdir_attr(self.folder)
            if a.st_mode is not None and stat.S_ISREG(a.st_mode)
        )

    def download(self, name: str, local: Path) -> str:
        """Stream ``name`` to ``local`` in blocks (never whole in memory); return its sha256."""
        digest = hashlib.sha256()
        with self.client.open(self.path(name), "rb") as remote, local.open("wb") as out:
            remote.prefetch()
            while block := remote.read(_DOWNLOAD_BLOCK):
                digest.update(block)
                out.write(block)
        return digest.hexdigest()

    def ensure_subfolder(self, sub: str) -> str:
        target = self.path(sub)
        try:
            self.client.stat(target)
        except FileNotFoundError:
            self.client.mkdir(target)
        return target

    def move(self, name: str, sub: str, new_name: str | None = None) -> str:
        """Move a file into a sub-folder, replacing a file of the same name there (a re-run's leftover)."""
        target = posixpath.join(self.ensure_subfolder(sub), new_name or name)
        self.client.posix_rename(self.path(name), target)
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


@contextmanager
def open_remote_folder(conn_id: str, folder: str) -> Iterator[RemoteFolder]:
    """Connect with the Airflow connection ``conn_id`` and close the session on exit."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=conn_id)
    with hook.get_managed_conn() as client:
        yield RemoteFolder(client, folder)
