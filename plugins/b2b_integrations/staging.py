"""Hand-off of records between the steps of one flow run.

Steps pass a small reference through XCom (path, row count, columns); the records themselves go to a
per-run file, so XCom stays small whatever the volume. Paths are deterministic per run and step, and a file
appears whole or not at all, so a retried step replaces its output instead of adding to it.

Where: a folder every worker shares (``B2B_DATA_DIR``, else ``$AIRFLOW_HOME/b2b_data``), or object storage
when ``B2B_STAGING_URL`` names one (an Airflow ``ObjectStoragePath`` URL: ``s3://bucket/prefix``,
``gs://...``, ``file://...``; ``B2B_STAGING_CONN_ID`` is the connection that reaches it), for workers that
share no folder. Locally a file is written to a temporary name and renamed; on object storage it is written
to a local temporary file and then uploaded in one put, which the store makes visible only once complete.
:func:`remove_older_than` is the retention: staged files older than an age are deleted.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypedDict, Union

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

StagePath = Union[Path, "ObjectStoragePath"]  # noqa: UP007  (a string forward reference)

# Key of the staged-records reference inside an asset event's extra.
STAGED_KEY = "b2b_staged"
EVENT_CURSOR_KEY = "b2b_inbox_position"  # asset state store key: the last consumed inbox event
# Asset-event extra key of stored webhooks: a list of {message_id, received_at, payload | payload_key}
# (a large body sits in the inbox asset's state store under payload_key). Webhooks that arrive together
# share one asset event.
WEBHOOK_KEY = "b2b_webhooks"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+]")


class StagedRecords(TypedDict):
    """What a step returns to XCom."""

    path: str
    rows: int
    columns: list[str]


def data_dir() -> Path:
    """B2B_DATA_DIR, else $AIRFLOW_HOME/b2b_data."""
    env = os.environ.get("B2B_DATA_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "b2b_data"


def safe_path_part(part: str) -> str:
    # Run ids contain ':' and '+'; customer names are identifiers already. Never let a part climb out.
    cleaned = _UNSAFE.sub("_", part)
    return cleaned if cleaned not in ("", ".", "..") else "_"


def staging_url() -> str | None:
    """``B2B_STAGING_URL`` without its trailing '/', or None: stage in the shared folder."""
    url = os.environ.get("B2B_STAGING_URL", "").strip().rstrip("/")
    return url or None


def staging_root() -> StagePath:
    """Where staged records live: the object-storage URL, else the data folder."""
    url = staging_url()
    if url is None:
        return data_dir()
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=os.environ.get("B2B_STAGING_CONN_ID") or None)


def stage_path(customer_id: str, integration: str, flow: str, run_id: str, task_id: str) -> StagePath:
    parts = [safe_path_part(p) for p in (customer_id, integration, flow, run_id)]
    return staging_root().joinpath("runs", *parts, f"{safe_path_part(task_id)}.ndjson")


def staged_path(text: str) -> StagePath:
    """The path a reference names. An object-storage reference must lie under ``B2B_STAGING_URL``: a
    reference can come from an asset event's extra, and must not make a task read any object the staging
    connection can reach."""
    if "://" not in text:
        return Path(text)
    url = staging_url()
    parts = text.split("/")
    if url is None or not text.startswith(url + "/") or any(p in ("", ".", "..") for p in parts[3:]):
        raise ValueError(f"staged records {text!r} are not under the staging location B2B_STAGING_URL")
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(text, conn_id=os.environ.get("B2B_STAGING_CONN_ID") or None)


def _is_local(path: StagePath) -> bool:
    return isinstance(path, Path)


def path_text(path: StagePath) -> str:
    """What a reference holds: a local path, or the plain URL (``str`` of an ObjectStoragePath puts the
    connection id in it, ``s3://conn@bucket/...``, which :func:`staged_path` would not take back)."""
    return str(path) if _is_local(path) else f"{path.protocol}://{path.path}"


@contextmanager
def atomic_writer(path: StagePath, mode: str = "w") -> Iterator[IO[Any]]:
    """A handle whose content appears at ``path`` whole when the block ends without error, else never."""
    encoding = "utf-8" if "b" not in mode else None
    if _is_local(path):
        local = Path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        with tmp.open(mode, encoding=encoding) as handle:
            yield handle
        os.replace(tmp, local)
        return
    # fsspec commits an object's upload when its handle closes, even on an error inside the block, so the
    # bytes go to a local temporary file first and the object is put only once they are complete.
    fd, name = tempfile.mkstemp(prefix="b2b-stage-", suffix=".tmp")
    os.close(fd)
    try:
        with open(name, mode, encoding=encoding) as handle:
            yield handle
        path.fs.put_file(name, path.path)
    finally:
        os.unlink(name)


def write_bytes_atomically(path: StagePath, data: bytes) -> None:
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def open_staged(path: StagePath, mode: str = "r") -> IO[Any]:
    """Open a staged file for reading (FileNotFoundError if it is gone)."""
    if _is_local(path):
        return Path(path).open(mode, encoding=None if "b" in mode else "utf-8")
    if not path.exists():
        raise FileNotFoundError(str(path))
    return path.open(mode) if "b" in mode else path.open(mode, encoding="utf-8")


def write_records(frame: pd.DataFrame, path: StagePath) -> StagedRecords:
    """Write records as NDJSON atomically and return the reference for XCom."""
    with atomic_writer(path) as handle:
        if len(frame):
            frame.to_json(handle, orient="records", lines=True, date_format="iso", force_ascii=False)
    return StagedRecords(path=path_text(path), rows=len(frame), columns=[str(c) for c in frame.columns])


def write_dicts(records: Iterable[dict[str, Any]], path: StagePath, columns: list[str]) -> StagedRecords:
    """Write plain records as NDJSON (no pandas import: a call step's answer time shows it)."""
    rows = 0
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            rows += 1
    return StagedRecords(path=path_text(path), rows=rows, columns=columns)


def read_dicts(ref: StagedRecords | dict[str, Any]) -> list[dict[str, Any]]:
    with _open_ref(ref) as handle:
        return [json.loads(line) for line in handle if line.strip()]


@contextmanager
def _open_ref(ref: StagedRecords | dict[str, Any]) -> Iterator[IO[Any]]:
    path = staged_path(ref["path"])
    try:
        handle = open_staged(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"staged records {ref['path']} are missing; re-run the upstream step"
        ) from None
    with handle:
        yield handle


def read_records(ref: StagedRecords | dict[str, Any]) -> pd.DataFrame:
    """Read the records a previous step staged (types as JSON gives them; no date guessing)."""
    import pandas as pd

    with _open_ref(ref) as handle:
        if ref.get("rows", 0) == 0:
            return pd.DataFrame(columns=ref.get("columns", []))
        return pd.read_json(handle, orient="records", lines=True, dtype=False, convert_dates=False)


@dataclass
class RetentionSummary:
    files_removed: int = 0
    bytes_removed: int = 0
    files_kept: int = 0


def remove_older_than(max_age_seconds: float, now: float | None = None) -> RetentionSummary:
    """Delete staged files (``runs/`` of the staging location) last written more than ``max_age_seconds``
    ago, and the folders that leaves empty (local). Files of a run still going are younger than that age
    as long as it exceeds the longest run."""
    cutoff = (time.time() if now is None else now) - max_age_seconds
    root = staging_root().joinpath("runs")
    summary = RetentionSummary()
    if _is_local(root):
        _remove_local(Path(root), cutoff, summary)
        return summary
    fs = root.fs
    fs.invalidate_cache(root.path)
    try:
        found = fs.find(root.path, detail=True)
    except FileNotFoundError:
        return summary
    old = []
    for name, info in found.items():
        if info.get("type") != "file":
            continue
        if _modified(info) < cutoff:
            old.append(name)
            summary.bytes_removed += int(info.get("size") or 0)
        else:
            summary.files_kept += 1
    for start in range(0, len(old), 1000):  # S3 deletes at most 1,000 keys per request
        fs.rm(old[start : start + 1000])
    summary.files_removed = len(old)
    return summary


def _modified(info: dict[str, Any]) -> float:
    for key in ("LastModified", "mtime", "updated", "last_modified"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return time.time()  # no time known: keep it


def _remove_local(root: Path, cutoff: float, summary: RetentionSummary) -> None:
    if not root.is_dir():
        return
    for folder, _subfolders, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder, name)
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            if stat.st_mtime < cutoff:
                path.unlink(missing_ok=True)
                summary.files_removed += 1
                summary.bytes_removed += stat.st_size
            else:
                summary.files_kept += 1
        if Path(folder) != root:
            try:
                os.rmdir(folder)  # only if empty: a file written meanwhile keeps its folder
            except OSError:
                pass
