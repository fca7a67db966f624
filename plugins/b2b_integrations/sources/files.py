"""Choosing which remote files to import: pure functions over directory listings."""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class RemoteFile:
    """One regular file in a remote folder, as listed (sorted by modification time, then name)."""

    mtime: int
    name: str
    size: int


MAX_NAME_BYTES = 200
"""Longest name taken as is: the names the import derives from it on the server (``.<sha256 prefix>``,
``.quarantine.csv``, an upload's temporary name) must still fit the usual 255-byte limit."""


def unsafe_name_reason(name: str) -> str | None:
    """Why a server-supplied file name cannot be used as a local or remote path component, or None.

    File names from the server are data: anything that could climb out of the working folder or confuse
    logs and shells is refused rather than sanitised silently.
    """
    if not name or name in (".", ".."):
        return "empty or dot name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if any("\udc80" <= ch <= "\udcff" for ch in name):  # bytes kept by surrogateescape
        return "not valid UTF-8"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "contains control characters"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None


_NOT_PORTABLE = re.compile(r"[^A-Za-z0-9._-]")


def json_safe_name(name: str) -> str:
    """``name`` as text every JSON store takes (XCom, trigger events in PostgreSQL): bytes that were not
    UTF-8, kept as lone surrogates by ``surrogateescape``, are written ``\\xNN`` instead."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def tagged_name(name: str, tag: str) -> str:
    """``name`` with ``.tag`` before its extension: ``orders.csv`` -> ``orders.<tag>.csv``."""
    stem, ext = posixpath.splitext(name)
    return f"{stem}.{tag}{ext}"


def stand_in_name(name: str) -> str:
    """A printable, portable name for a refused file name, for the failed folder.

    Sanitising alone maps different names to one (``a\\nb.csv`` and ``a\\rb.csv`` both to ``a_b.csv``), and
    one file would replace the other; the first 8 hex digits of the raw name's sha256 keep them apart.
    The result is itself a usable name (cut short enough for the hash to fit under ``MAX_NAME_BYTES``).
    """
    shown = _NOT_PORTABLE.sub("_", name).replace("..", "_")[: MAX_NAME_BYTES - 20] or "unnamed"
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return tagged_name(shown, digest).replace("..", "_")


def matches(name: str, glob: str | None, regex: str | None) -> bool:
    """Whether ``name`` is selected by the glob and/or full-match regex (both must match when given)."""
    if glob is not None and not fnmatch.fnmatchcase(name, glob):
        return False
    return regex is None or re.fullmatch(regex, name) is not None


def stable_files(current: Iterable[RemoteFile], previous: Mapping[str, RemoteFile]) -> list[RemoteFile]:
    """Files whose size and mtime did not change since the previous look: no longer being written."""
    stable = []
    for f in current:
        before = previous.get(f.name)
        if before is not None and (before.size, before.mtime) == (f.size, f.mtime):
            stable.append(f)
    return sorted(stable)


def select_new(
    files: Iterable[RemoteFile],
    glob: str | None,
    regex: str | None,
    already_done: set[tuple[str, int, int]],
) -> list[RemoteFile]:
    """Matching files not in the ledger (by name, size and mtime), oldest first, ties by name."""
    return sorted(
        f for f in files if matches(f.name, glob, regex) and (f.name, f.size, f.mtime) not in already_done
    )


def ready_files(
    listing: Iterable[RemoteFile],
    previous: Mapping[str, RemoteFile],
    glob: str | None,
    regex: str | None,
    already_done: set[tuple[str, int, int]],
) -> list[RemoteFile]:
    """New matching files that were also there, unchanged, at the previous look: safe to import.

    The one comparison shared by the sensor's poke and the deferrable trigger.
    """
    return stable_files(select_new(listing, glob, regex, already_done), previous)


class LocationRefused(ValueError):
    """A configured folder or root that could reach outside where it belongs (the message says why)."""


def relative_segments(folder: str) -> list[str]:
    """The segments of a folder relative to a root, or :class:`LocationRefused` if it could leave the root
    (a scheme, a leading '/', a backslash, an empty, '.' or '..' segment, a control character)."""
    if folder in ("", "."):
        return []
    if "://" in folder or folder.startswith("/") or "\\" in folder:
        raise LocationRefused(f"folder {folder!r} must be a path relative to the connection's root")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in folder):
        raise LocationRefused(f"folder {folder!r} contains control characters")
    segments = folder.rstrip("/").split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise LocationRefused(f"folder {folder!r} has an empty, '.' or '..' segment")
    return segments
