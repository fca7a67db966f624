"""Scheduled file import: new files in a remote folder -> parsed, validated rows in a SQL table.

The one import routine (ledger, stability check, move/delete, quarantine and failed files) for every kind of
folder; a subclass only says how to open its folder (:meth:`FileImportOperator.open_folder`): SFTP
(``operators/sftp_import.py``) or any ``ObjectStoragePath`` location (``operators/object_import.py``).
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.remote_folder import RemoteFolder
from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.config.sql_target import SqlTarget
from b2b_integrations.errors import FatalStepError
from b2b_integrations.formats.columnar import (
    ColumnarBatch,
    FastPathUnavailable,
    fast_path_blocker,
    read_columnar,
)
from b2b_integrations.formats.documents import DocumentRows, DocumentSpec
from b2b_integrations.formats.readers import FileParseError, options_from_dict, read_records
from b2b_integrations.formats.validation import schema_from_dict, validate_record
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sinks.sql import PostgresCopySink, RowSink, row_writes, write_in_transaction
from b2b_integrations.sinks.target import open_target, sql_target, target_documents, target_options
from b2b_integrations.sources.files import (
    RemoteFile,
    ready_files,
    select_new,
    stand_in_name,
    unsafe_name_reason,
)
from b2b_integrations.sources.prefetch import prefetched
from b2b_integrations.staging import data_dir, safe_path_part
from b2b_integrations.state import ledger

if TYPE_CHECKING:
    from airflow.sdk import Context

_QUARANTINE_SUFFIX = ".quarantine.csv"
_REPORT_SUFFIX = ".error.txt"


def _write_columnar_batch(
    sink: PostgresCopySink, batch: ColumnarBatch, rescued: list[tuple[Any, ...]], cursor: Any
) -> int:
    sink.write_batch(cursor, batch.csv, rescued)
    return batch.accepted + len(rescued)


class _FileFailed(Exception):
    """This file goes to the failed folder; the others go on."""


class _AllRowsInvalid(_FileFailed):
    """Every record was refused: the file fails, and its quarantine report goes with it."""


def _refused_by_database(exc: BaseException) -> bool:
    """Whether the database refused this file's data (DB-API ``DataError``/``IntegrityError``: a value
    out of range or too long for its column, a NOT NULL column left empty, ...), as opposed to failing
    itself (connection lost, ...). Matched by name: every DB-API driver has these classes, under its own
    module."""
    return any(cls.__name__ in ("DataError", "IntegrityError") for cls in type(exc).__mro__)


@dataclass
class _FileCounts:
    loaded: int = 0
    quarantined: int = 0


@dataclass
class _RunSummary:
    files_loaded: int = 0
    files_already_loaded: int = 0
    files_failed: list[str] = field(default_factory=list)
    files_still_writing: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0


class FileImportOperator(StepOperator):
    """
    Import every new file of a remote folder into a SQL table, one file at a time, oldest first.

    Subclasses open the folder (:meth:`open_folder`); everything else is here, once.

    Each file is streamed to a local work file, parsed (csv, tsv, json, ndjson, xml, xlsx) and every record
    validated; good rows are written to the target's table and the file is recorded in the processed-file
    ledger in the same transaction. Only then is the file moved to ``processed_folder`` (or deleted). Bad
    records go to a quarantine CSV (row number, reason, raw record) in ``quarantine_folder``; a file that
    cannot be parsed, whose every record is bad, whose data the database refuses, or whose name is unusable
    goes to ``failed_folder`` with an ``.error.txt`` report, and the task fails after the other files are
    done. A failed file is tried again when it is sent again. Files whose size or modification time changes
    during ``settle_seconds`` are still being written and are left for the next run.

    Nothing is replaced on the server: a name already taken in ``processed_folder``, ``failed_folder`` or
    ``quarantine_folder`` gets the first 12 hex digits of the file's sha256 before its extension
    (``orders.csv`` -> ``orders.3f2a9c1d4e5b.csv``); unusable names get a sanitised stand-in.

    :param folder: Remote folder to import from. (templated)
    :param pattern: Glob the file names must match, e.g. ``*.csv``. (templated)
    :param regex: Optional regular expression the whole file name must match. (templated)
    :param file_format: Format options: ``format`` plus encoding, delimiter, header, columns, rename,
        record_path, sheet (see ``formats.readers.FormatOptions``).
    :param row_schema: ``{"fields": [{"name", "type", "required", "allowed", "pattern", "max_length",
        "format", "decimal_separator", "thousands_separator"}]}``, with ``decimal_separator`` and
        ``thousands_separator`` also for every number field (see ``formats.validation.schema_from_dict``).
    :param db_conn_id: Airflow connection of the destination database (holds the ledger too).
    :param target: The destination table and how to write it: a
        :class:`~b2b_integrations.config.sql_target.SqlTarget` or its options as a dict. (templated)
    :param constants: Extra columns with a fixed value on every row, e.g. ``{"customer_id": "acme"}``.
    :param source_file_column: Column that receives the file name, if any.
    :param after_load: ``move`` to ``processed_folder`` or ``delete``.
    :param settle_seconds: Wait between two listings; files that changed are not taken.
    :param max_files: Import at most this many files per run (the rest wait for the next run).
    """

    template_fields: Sequence[str] = ("folder", "pattern", "regex", "target")
    ui_color = "#e8f7fb"

    def __init__(
        self,
        *,
        folder: str,
        file_format: dict[str, Any],
        row_schema: dict[str, Any],
        db_conn_id: str,
        target: SqlTarget | Mapping[str, Any],
        pattern: str = "*",
        regex: str | None = None,
        constants: dict[str, Any] | None = None,
        source_file_column: str | None = None,
        after_load: str = "move",
        processed_folder: str = "processed",
        failed_folder: str = "failed",
        quarantine_folder: str = "quarantine",
        settle_seconds: float = 5.0,
        max_files: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.folder = folder
        self.file_format = file_format
        self.row_schema = row_schema
        self.db_conn_id = db_conn_id
        self.target = target_options(target)
        self.pattern = pattern
        self.regex = regex
        self.constants = constants or {}
        self.source_file_column = source_file_column
        self.after_load = after_load
        self.processed_folder = processed_folder
        self.failed_folder = failed_folder
        self.quarantine_folder = quarantine_folder
        self.settle_seconds = settle_seconds
        self.max_files = max_files
        self._chunk_size = 1000  # the target's, once checked when the run starts
        self._documents: DocumentSpec | None = None

    def run_step(self, context: Context) -> dict[str, Any]:
        try:
            fmt = options_from_dict(self.file_format)
            schema = schema_from_dict(self.row_schema)
            target = sql_target(self.target)
            self._chunk_size = target.chunk_size
            self._documents = target_documents(target, self.row_schema)
        except ValueError as e:
            raise FatalStepError(f"invalid file import options: {e}") from e
        if self.after_load not in ("move", "delete"):
            raise FatalStepError(f"after_load must be 'move' or 'delete', got {self.after_load!r}")
        target_fields = self._target_fields(schema)
        hook, dialect = get_db_hook(self.db_conn_id)

        summary = _RunSummary()
        work = Path(tempfile.mkdtemp(prefix="import-", dir=self._work_root()))
        try:
            with (
                closing(hook.get_conn()) as conn,
                self.open_folder() as remote,
            ):
                ledger.ensure_ledger(conn)
                sink = open_target(conn, dialect, hook.placeholder, target, target_fields, self._documents)
                todo = self._files_to_import(conn, hook.placeholder, remote, summary)
                for index, remote_file in enumerate(todo, 1):
                    self.log.info(
                        "File %d of %d: %r (%d bytes)", index, len(todo), remote_file.name, remote_file.size
                    )
                    # Local names never come from the server; the suffix is the format's (openpyxl checks it).
                    local = work / f"{index:06d}.{fmt.format}"
                    self._import_one(
                        conn, hook.placeholder, remote, remote_file, local, sink, fmt, schema, summary
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)

        self.log.info(
            "Import summary: %d files loaded (%d rows, %d quarantined), %d failed, %d already loaded, "
            "%d still being written",
            summary.files_loaded,
            summary.rows_loaded,
            summary.rows_quarantined,
            len(summary.files_failed),
            summary.files_already_loaded,
            summary.files_still_writing,
        )
        if summary.files_failed:
            raise FatalStepError(
                f"{len(summary.files_failed)} file(s) failed and were moved to {self.failed_folder}/ with an "
                f"error report, the other files were imported: {'; '.join(summary.files_failed)}"
            )
        return {
            "files_loaded": summary.files_loaded,
            "files_already_loaded": summary.files_already_loaded,
            "files_still_writing": summary.files_still_writing,
            "rows_loaded": summary.rows_loaded,
            "rows_quarantined": summary.rows_quarantined,
            "table": target.table,
        }

    def open_folder(self) -> AbstractContextManager[RemoteFolder]:
        """Connect to the folder; closed when the run ends."""
        raise NotImplementedError

    def _work_root(self) -> Path:
        root = data_dir().joinpath(
            "work", *(safe_path_part(p) for p in (self.customer_id, self.integration, self.flow))
        )
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _files_to_import(
        self, conn: Any, placeholder: str, remote: RemoteFolder, summary: _RunSummary
    ) -> list[RemoteFile]:
        # Files the ledger knows are not skipped: one still in the folder was loaded by a run that stopped
        # before moving it, or delivered again unchanged. Its sha256 matches the ledger, so _import_one only
        # finishes its move (skipping it would leave it in the folder for good).
        done: set[tuple[str, int, int]] = set()
        first = select_new(remote.list_files(), self.pattern, self.regex, done)
        if not first:
            self.log.info("No new files in %s matching %s", self.folder, self.pattern)
            return []
        if self.settle_seconds > 0:
            time.sleep(self.settle_seconds)
        stable = ready_files(remote.list_files(), {f.name: f for f in first}, self.pattern, self.regex, done)
        summary.files_still_writing = len(first) - len(stable)
        if summary.files_still_writing:
            self.log.info(
                "%d file(s) still being written; left for the next run", summary.files_still_writing
            )
        if self.max_files is not None and len(stable) > self.max_files:
            self.log.info("Taking %d of %d new files this run (max_files)", self.max_files, len(stable))
            stable = stable[: self.max_files]
        return stable

    def _import_one(
        self,
        conn: Any,
        placeholder: str,
        remote: RemoteFolder,
        remote_file: RemoteFile,
        local: Path,
        sink: RowSink,
        fmt: Any,
        schema: Any,
        summary: _RunSummary,
    ) -> None:
        name = remote_file.name
        reason = unsafe_name_reason(name)
        if reason is not None:
            self._fail(conn, placeholder, remote, remote_file, None, f"file name refused: {reason}", summary)
            return
        sha256 = remote.download(name, local)
        if ledger.was_loaded(conn, placeholder, self.customer_id, self.integration, self.flow, name, sha256):
            # Loaded by an earlier try that stopped before moving it, or sent again unchanged: move it,
            # load nothing. A try that stopped right after its commit may also have left the quarantine
            # report under its pending name.
            if remote.exists(self.quarantine_folder, _pending_report(name, sha256)):
                report = self._publish_quarantine(remote, name, sha256)
                self.log.info("%r: quarantine report of the earlier load published to %r", name, report)
            target = self._after_load(remote, name, sha256)
            self.log.info("%r was already loaded (same content), nothing loaded; %s", name, target)
            summary.files_already_loaded += 1
            return
        quarantine = local.with_suffix(_QUARANTINE_SUFFIX)
        columnar = isinstance(sink, PostgresCopySink) and fast_path_blocker(fmt, schema) is None
        load = partial(
            self._load, conn, placeholder, remote, local, remote_file, sha256, quarantine, sink, fmt, schema
        )
        counts = _FileCounts()
        try:
            try:
                load(counts, columnar)
            except FastPathUnavailable as e:
                self.log.info(
                    "%r: reading it record by record (%s)", name, _remote_terms(str(e), local, name)
                )
                counts = _FileCounts()
                load(counts, columnar=False)
        except _AllRowsInvalid as e:
            self._fail(conn, placeholder, remote, remote_file, sha256, str(e), summary, counts, quarantine)
            return
        except (FileParseError, _FileFailed) as e:
            reason = _remote_terms(str(e), local, name)
            self._fail(conn, placeholder, remote, remote_file, sha256, reason, summary, counts)
            return
        except Exception as e:
            if not _refused_by_database(e):
                raise  # the database or the server failed, not this file: the run fails and is retried
            # Everything of this file was rolled back; the next file starts a fresh transaction.
            reason = (
                f"the database refused a value{_refused_column(e)} ({type(e).__name__}: {_first_line(e)})"
            )
            self._fail(conn, placeholder, remote, remote_file, sha256, reason, summary)
            return
        if counts.quarantined:
            target = self._publish_quarantine(remote, name, sha256)
            self.log.info("%r: %d bad rows quarantined to %r", name, counts.quarantined, target)
        target = self._after_load(remote, name, sha256)
        summary.files_loaded += 1
        summary.rows_loaded += counts.loaded
        summary.rows_quarantined += counts.quarantined
        self.log.info(
            "%r: %d rows loaded, %d quarantined; %s", name, counts.loaded, counts.quarantined, target
        )

    def _load(
        self,
        conn: Any,
        placeholder: str,
        remote: RemoteFolder,
        local: Path,
        remote_file: RemoteFile,
        sha256: str,
        quarantine: Path,
        sink: RowSink,
        fmt: Any,
        schema: Any,
        counts: _FileCounts,
        columnar: bool,
    ) -> None:
        """Load one local file in one transaction (rows + ledger entry), counting into ``counts``."""
        name = remote_file.name
        with quarantine.open("w", newline="", encoding="utf-8") as qfile:
            writer = csv.writer(qfile)
            writer.writerow(["file", "row_number", "reason", "raw_record"])
            write_in_transaction(
                conn,
                sink,
                prefetched(
                    self._columnar_writes(local, name, fmt, schema, sink, writer, counts)
                    if columnar
                    else self._record_writes(local, name, fmt, schema, sink, writer, counts)
                ),
                progress=lambda done: self.log.info("%r: %d rows written", name, done),
                before_commit=lambda cur: self._before_commit(
                    cur, placeholder, remote, remote_file, sha256, counts, qfile, quarantine
                ),
            )

    def _record_writes(
        self,
        local: Path,
        name: str,
        fmt: Any,
        schema: Any,
        sink: RowSink,
        quarantine: Any,
        counts: _FileCounts,
    ) -> Iterator[Callable[[Any], int]]:
        """The record path: every record parsed and validated in Python, written in chunks."""
        rows = (
            row
            for record in read_records(local, fmt)
            if (row := self._checked(record, name, schema, quarantine, counts)) is not None
        )
        return row_writes(sink, rows, self._chunk_size)

    def _columnar_writes(
        self,
        local: Path,
        name: str,
        fmt: Any,
        schema: Any,
        sink: Any,
        quarantine: Any,
        counts: _FileCounts,
    ) -> Iterator[Callable[[Any], int]]:
        """The fast path (formats/columnar.py): Arrow checks whole columns; its suspects take the record path."""
        for batch in read_columnar(local, fmt, schema, self._extra_values(name)):
            rescued = [
                (*row, record.number)
                for record in batch.suspects
                if (row := self._checked(record, name, schema, quarantine, counts)) is not None
            ]
            counts.loaded += batch.accepted
            yield partial(_write_columnar_batch, sink, batch, rescued)

    def _extra_values(self, name: str) -> tuple[Any, ...]:
        return tuple(self.constants.values()) + ((name,) if self.source_file_column else ())

    def _checked(
        self, record: Any, name: str, schema: Any, quarantine: Any, counts: _FileCounts
    ) -> tuple[Any, ...] | DocumentRows | None:
        """The row to load for ``record`` (a document's rows with ``document``), or None after writing it to
        the quarantine report."""
        reasons = [record.error] if record.error else None
        clean = row = None
        if reasons is None and self._documents is not None:
            extras = self._target_fields(schema)[len(schema.fields) :]
            extra = dict(zip(extras, self._extra_values(name), strict=True))
            row, reasons = self._documents.read(record.fields, schema, extra)
        elif reasons is None:
            clean, reasons = validate_record(record.fields, schema)
        if clean is None and row is None:
            counts.quarantined += 1
            quarantine.writerow([name, record.number, "; ".join(reasons or ["invalid"]), record.raw])
            return None
        counts.loaded += 1
        if row is not None:
            return row
        return (*(clean[rule.name] for rule in schema.fields), *self._extra_values(name))

    def _target_fields(self, schema: Any) -> list[str]:
        """Columns of the rows written to the target's table: the schema's fields, constants, the file name column."""
        fields = [*(rule.name for rule in schema.fields), *self.constants]
        return [*fields, self.source_file_column] if self.source_file_column else fields

    def _before_commit(
        self,
        cursor: Any,
        placeholder: str,
        remote: RemoteFolder,
        remote_file: RemoteFile,
        sha256: str,
        counts: _FileCounts,
        qfile: Any,
        quarantine: Path,
    ) -> None:
        if counts.loaded == 0 and counts.quarantined > 0:
            raise _AllRowsInvalid(f"all {counts.quarantined} records are invalid")
        if counts.quarantined:
            # On the server before the commit, under a name fixed by (name, sha256), and published after
            # it: a run that stops in between leaves it for the next run to publish (the file is then
            # "already loaded" and nothing would write the report again).
            qfile.flush()
            remote.upload(quarantine, self.quarantine_folder, _pending_report(remote_file.name, sha256))
        ledger.record(cursor, placeholder, self._entry(remote_file, sha256, ledger.LOADED, counts, None))

    def _entry(
        self, remote_file: RemoteFile, sha256: str, status: str, counts: _FileCounts, detail: str | None
    ) -> ledger.LedgerEntry:
        return ledger.LedgerEntry(
            customer_id=self.customer_id,
            integration=self.integration,
            flow=self.flow,
            file_name=_storable(remote_file.name),
            sha256=sha256,
            size_bytes=remote_file.size,
            mtime=remote_file.mtime,
            status=status,
            rows_loaded=counts.loaded if status == ledger.LOADED else 0,
            rows_quarantined=counts.quarantined,
            detail=detail,
            processed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def _after_load(self, remote: RemoteFolder, name: str, sha256: str) -> str:
        """Delete the loaded file, or move it to the processed folder without replacing another version
        of it there; say which, for the log."""
        if self.after_load == "delete":
            remote.delete(name)
            return "deleted"
        stored = remote.free_name(self.processed_folder, name, sha256[:12], same_content=True)
        return f"moved to {remote.move(name, self.processed_folder, stored)!r}"

    def _quarantine_name(self, remote: RemoteFolder, name: str, sha256: str) -> str:
        stored = remote.free_name(
            self.quarantine_folder, name, sha256[:12], same_content=True, companions=(_QUARANTINE_SUFFIX,)
        )
        return stored + _QUARANTINE_SUFFIX

    def _upload_quarantine(self, remote: RemoteFolder, name: str, sha256: str, report: Path) -> str:
        return remote.upload(report, self.quarantine_folder, self._quarantine_name(remote, name, sha256))

    def _publish_quarantine(self, remote: RemoteFolder, name: str, sha256: str) -> str:
        """Give the report uploaded before the commit its final name; return its path."""
        final = self._quarantine_name(remote, name, sha256)
        return remote.rename(self.quarantine_folder, _pending_report(name, sha256), final)

    def _fail(
        self,
        conn: Any,
        placeholder: str,
        remote: RemoteFolder,
        remote_file: RemoteFile,
        sha256: str | None,
        reason: str,
        summary: _RunSummary,
        counts: _FileCounts | None = None,
        row_reasons: Path | None = None,
    ) -> None:
        """Move the file to the failed folder with an error report (and the per-row reasons, when every row
        was refused), record the failure, and go on with the other files. ``sha256`` None: not read."""
        name = remote_file.name
        if sha256 is None:  # refused by name: never read, so the name cannot carry the content's hash
            stored = remote.free_name(
                self.failed_folder,
                stand_in_name(name),
                datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"),
                same_content=False,
                companions=(_REPORT_SUFFIX,),
            )
        else:
            stored = remote.free_name(
                self.failed_folder, name, sha256[:12], same_content=True, companions=(_REPORT_SUFFIX,)
            )
        if row_reasons is not None and sha256 is not None:
            reason += f"; per-row reasons in {self._upload_quarantine(remote, name, sha256, row_reasons)}"
        message = (
            f"customer {self.customer_id}, integration {self.integration}, flow {self.flow}, "
            f"file {name!r}: {reason}"
        )
        self.log.error("%s", message)
        report = Path(tempfile.mkstemp(suffix=".txt", dir=self._work_root())[1])
        try:
            report.write_text(
                f"{message}\n\nfile: {name!r}\nstored as: {stored}\nsize: {remote_file.size} bytes\n"
                f"sha256: {sha256 or ledger.NOT_READ}\n"
                f"failed at: {datetime.now(UTC).isoformat(timespec='seconds')}\n",
                encoding="utf-8",
            )
            remote.upload(report, self.failed_folder, stored + _REPORT_SUFFIX)
        finally:
            report.unlink(missing_ok=True)
        target = remote.move(name, self.failed_folder, stored)
        entry = self._entry(
            remote_file, sha256 or ledger.NOT_READ, ledger.FAILED, counts or _FileCounts(), reason
        )
        ledger.record_now(conn, placeholder, entry)
        summary.files_failed.append(f"{name!r} ({reason}; moved to {target})")


def _storable(name: str) -> str:
    """``name`` as text a database takes: bytes that were not UTF-8 (kept as surrogates) as ``\\xff``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _pending_report(name: str, sha256: str) -> str:
    """Where a loaded file's quarantine report waits for the commit (hidden, like an upload's temp name)."""
    return f".{name}.{sha256[:12]}.quarantine-pending"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _refused_column(exc: BaseException) -> str:
    """`` in column <name>`` when the driver says which (PostgreSQL: the error context of COPY/INSERT)."""
    diag = getattr(exc, "diag", None)
    column = getattr(diag, "column_name", None)
    if not column:
        found = re.search(r"\bcolumn (\w+)", getattr(diag, "context", None) or "")
        column = found.group(1) if found else None
    return f" in column {column}" if column else ""


def _remote_terms(message: str, local: Path, name: str) -> str:
    """``message`` (from a reader, which only knows the local work file) naming the remote file instead."""
    message = message.removeprefix(f"{local.name}: ")
    return message.replace(str(local), repr(name)).replace(local.name, repr(name))
