"""What a file import needs of the folder it imports from, whatever serves it (SFTP, object storage).

The import routine (``operators/file_import.py``) is written once against :class:`RemoteFolder`; each kind of
storage supplies one small implementation (``clients/sftp.py``, ``clients/object_storage.py``), chosen by the
step kind in the config. Sub-folders (``processed``, ``failed``, ``quarantine``) are single path components
under the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from b2b_integrations.sources.files import RemoteFile, tagged_name


class RemoteFolder(Protocol):
    """One folder files are imported from."""

    folder: str

    def list_files(self) -> list[RemoteFile]:
        """Regular files directly in the folder (sub-folders are not descended)."""

    def download(self, name: str, local: Path) -> str:
        """Stream ``name`` to ``local`` (never whole in memory); return its sha256."""

    def exists(self, sub: str, name: str) -> bool:
        """Whether ``sub/name`` exists under the folder."""

    def free_name(
        self, sub: str, name: str, tag: str, *, same_content: bool, companions: Sequence[str] = ()
    ) -> str:
        """A name in ``sub`` under which nothing is replaced (see :class:`FreeNames`)."""

    def move(self, name: str, sub: str, new_name: str | None = None) -> str:
        """Move a file into ``sub`` (replacing a file of that name: pick a free name first); return where."""

    def rename(self, sub: str, name: str, new_name: str) -> str:
        """Rename ``sub/name`` to ``sub/new_name``; return the new path."""

    def delete(self, name: str) -> None:
        """Delete a file of the folder."""

    def upload(self, local: Path, sub: str, name: str) -> str:
        """Store ``local`` as ``sub/name`` so that readers never see it half-written; return where."""


class FreeNames:
    """``free_name`` for any folder with an ``exists(sub, name)``."""

    def exists(self, sub: str, name: str) -> bool:
        raise NotImplementedError

    def path(self, name: str) -> str:
        raise NotImplementedError

    def free_name(
        self, sub: str, name: str, tag: str, *, same_content: bool, companions: Sequence[str] = ()
    ) -> str:
        """A name in ``sub`` under which nothing is replaced: ``name`` if neither it nor ``name + c`` for
        each companion suffix (a report stored beside it) exists, else ``name`` tagged before its extension.

        With ``same_content`` the tag identifies the content (its sha256): a file already there under the
        tagged name has the same bytes, and replacing it loses nothing. Otherwise (content unknown) a
        counter is added until the name is free.
        """
        candidates = [name, tagged_name(name, tag)]
        if not same_content:
            candidates += (tagged_name(name, f"{tag}-{n}") for n in range(2, 1000))
        for candidate in candidates:
            if not any(self.exists(sub, candidate + suffix) for suffix in ("", *companions)):
                return candidate
        if same_content:
            return candidates[-1]
        raise FileExistsError(f"no free name for {name!r} in {self.path(sub)!r}")
