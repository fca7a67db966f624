"""Object storage (Airflow's ``ObjectStoragePath``: s3://, gs://, file://, ...) as a folder to import from.

Where a customer's files are: the connection's ``b2b_root`` (extra key; a URL, ``{customer}`` replaced by the
customer id) joined with the step's relative ``folder``. The root is what confines a customer: it sits in
the Airflow connection (the customer's own, which only it can bind, or a shared one whose root holds
``{customer}``), never in the customer's config, and the folder may not climb out of it (``..``, ``.``,
empty segments, a scheme or a leading ``/`` are refused before anything is listed). A connection without a
root is refused: a shared bucket credential would otherwise reach every customer's prefix.

Object keys are data, as SFTP names are: keys under the folder whose remainder holds a ``/`` are listed as
sub-folders by the store and never imported; the rest go through the same name checks as SFTP names.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.remote_folder import FreeNames
from b2b_integrations.sources.files import LocationRefused, RemoteFile, relative_segments

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from fsspec import AbstractFileSystem

ROOT_KEY = "b2b_root"
_BLOCK = 8 * 1024 * 1024  # read size: few round trips to the store, bounded memory
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")  # what a root must start with


def root_url(extra: dict[str, Any], conn_id: str, customer_id: str) -> str:
    """The connection's ``b2b_root`` for ``customer_id``, checked (a URL with a registered scheme)."""
    from airflow.sdk.io import has_fs

    root = extra.get(ROOT_KEY)
    if not isinstance(root, str) or not root.strip():
        raise LocationRefused(
            f"connection {conn_id!r} has no {ROOT_KEY!r} in its extra: an object-storage import reads only "
            "under the root its connection names (e.g. s3://bucket/customers/{customer})"
        )
    root = root.strip().replace("{customer}", customer_id).rstrip("/")
    found = _SCHEME.match(root)
    if found is None:
        raise LocationRefused(f"{ROOT_KEY} of connection {conn_id!r} is not a URL (scheme://...)")
    scheme = found.group(0)[:-3]
    if not has_fs(scheme):
        raise LocationRefused(
            f"{ROOT_KEY} of connection {conn_id!r}: no filesystem for {scheme}:// is installed "
            "(s3 comes with apache-airflow-providers-amazon[s3fs], gs with the google provider)"
        )
    rest = root[len(found.group(0)) :]
    if scheme not in ("file", "local"):
        relative_segments(rest)  # bucket and prefix: no '..' either
    return root


def location(conn_id: str, folder: str, customer_id: str) -> ObjectStoragePath:
    """The folder to import from: the connection's root for this customer, then ``folder`` under it."""
    from airflow.sdk import BaseHook, ObjectStoragePath

    segments = relative_segments(folder)
    extra = BaseHook.get_connection(conn_id).extra_dejson
    root = root_url(extra, conn_id, customer_id)
    return ObjectStoragePath("/".join([root, *segments]), conn_id=conn_id)


def _mtime(entry: dict[str, Any]) -> int:
    """Seconds since the epoch of a listing entry, whichever key the filesystem uses."""
    for key in ("LastModified", "mtime", "updated", "last_modified", "created"):
        value = entry.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp())
        if isinstance(value, int | float):
            return int(value)
        if isinstance(value, str) and value:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    return 0


class ObjectStorageFolder(FreeNames):
    """One folder of an object store (a :class:`~b2b_integrations.clients.remote_folder.RemoteFolder`)."""

    def __init__(self, base: ObjectStoragePath) -> None:
        self.base = base
        self.fs: AbstractFileSystem = base.fs
        self.folder = f"{base.protocol}://{base.path}"  # str(base) would show the connection id
        self._root = base.path.rstrip("/")
        # A local folder needs a temporary name and a rename for an upload to appear whole; an object store
        # makes an object visible only once its upload completed, so a direct put is already atomic.
        self._local = "file" in _protocols(self.fs)

    def path(self, name: str) -> str:
        return posixpath.join(self._root, name)

    def _fresh(self, path: str) -> None:
        # s3fs and gcsfs cache listings per process: a file another process added or moved would be missed.
        self.fs.invalidate_cache(path)

    def list_files(self) -> list[RemoteFile]:
        """Objects directly in the folder; keys whose remainder holds a '/' are sub-folders, not files."""
        self._fresh(self._root)
        try:
            entries = self.fs.ls(self._root, detail=True)
        except FileNotFoundError:
            return []  # an empty prefix does not exist on an object store
        files = []
        for entry in entries:
            if entry.get("type") != "file":
                continue
            name = entry["name"].rstrip("/")
            if posixpath.dirname(name) != self._root:
                continue  # the folder itself listed as a marker object, or a store's odd answer
            files.append(
                RemoteFile(mtime=_mtime(entry), name=posixpath.basename(name), size=int(entry["size"]))
            )
        return sorted(files)

    def download(self, name: str, local: Path) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.path(name), "rb", block_size=_BLOCK) as remote, local.open("wb") as out:
            while block := remote.read(_BLOCK):
                digest.update(block)
                out.write(block)
        return digest.hexdigest()

    def exists(self, sub: str, name: str) -> bool:
        target = posixpath.join(self.path(sub), name)
        self._fresh(posixpath.dirname(target))
        return bool(self.fs.exists(target))

    def _subfolder(self, sub: str) -> str:
        target = self.path(sub)
        if self._local:
            self.fs.makedirs(target, exist_ok=True)  # object stores have no folders to make
        return target

    def move(self, name: str, sub: str, new_name: str | None = None) -> str:
        """Move into ``sub``. On an object store a copy then a delete: a run stopped in between leaves the
        file in the folder, where the ledger recognises it by content and the next run moves it again."""
        target = posixpath.join(self._subfolder(sub), new_name or name)
        self._mv(self.path(name), target)
        return self._url(target)

    def rename(self, sub: str, name: str, new_name: str) -> str:
        folder = self.path(sub)
        target = posixpath.join(folder, new_name)
        self._mv(posixpath.join(folder, name), target)
        return self._url(target)

    def _mv(self, source: str, target: str) -> None:
        if self._local:
            self.fs.mv(source, target)  # a rename
            return
        # Copy, then delete that one object: fsspec's mv deletes through S3's batch DeleteObjects, whose XML
        # body cannot carry a key with a control character, so such a file could never leave the folder.
        self.fs.copy(source, target)
        self.fs.rm_file(source)

    def delete(self, name: str) -> None:
        self.fs.rm_file(self.path(name))

    def upload(self, local: Path, sub: str, name: str) -> str:
        folder = self._subfolder(sub)
        target = posixpath.join(folder, name)
        if self._local:
            tmp = posixpath.join(folder, f".{name}.part")
            self.fs.put_file(str(local), tmp)
            self._mv(tmp, target)
        else:
            self.fs.put_file(str(local), target)
        return self._url(target)

    def _url(self, path: str) -> str:
        """``path`` as the customer sees it (scheme and bucket, never the connection id)."""
        return f"{self.base.protocol}://{path}" if self.base.protocol else path


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
