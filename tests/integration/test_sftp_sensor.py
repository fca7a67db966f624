"""The new-files sensor (poke) and its deferrable trigger against a real OpenSSH server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from b2b_integrations.sensors.sftp import SftpNewFilesSensor
from b2b_integrations.state import ledger
from b2b_integrations.triggers.sftp import SftpNewFilesTrigger

pytestmark = pytest.mark.e2e


def sensor(sftp_conn: str, folder: str, **kwargs: Any) -> SftpNewFilesSensor:
    return SftpNewFilesSensor(
        task_id="wait", sftp_conn_id=sftp_conn, folder=folder, pattern="*.csv", **kwargs
    )


def test_poke_needs_a_file_unchanged_between_two_looks(sftp_conn: str, sftp_folder: str) -> None:
    path = Path(sftp_folder, "a.csv")
    path.write_text("id\n1\n")
    Path(sftp_folder, "ignored.txt").write_text("x")
    waiter = sensor(sftp_conn, sftp_folder)
    assert waiter.poke({}) is False  # first look: nothing to compare with
    with path.open("a") as f:
        f.write("2\n")  # still being written
    assert waiter.poke({}) is False
    ready = waiter.poke({})
    assert ready.is_done and ready.xcom_value == ["a.csv"]  # type: ignore[union-attr]


def test_poke_skips_files_in_the_ledger(
    sftp_conn: str, sftp_folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    db = Path(sftp_folder).parent / f"ledger-{uuid.uuid4().hex[:6]}.db"
    monkeypatch.setenv("AIRFLOW_CONN_SENSOR_LEDGER", f'{{"conn_type": "sqlite", "host": "{db}"}}')
    Path(sftp_folder, "done.csv").write_text("id\n1\n")
    Path(sftp_folder, "new.csv").write_text("id\n2\n")
    done = next(f for f in _listing(sftp_conn, sftp_folder) if f.name == "done.csv")
    with sqlite3.connect(db) as conn:
        ledger.ensure_ledger(conn)
        entry = ledger.LedgerEntry(
            "acme",
            "files",
            "orders",
            "done.csv",
            "0" * 64,
            done.size,
            done.mtime,
            "loaded",
            1,
            0,
            None,
            datetime.now(UTC).isoformat(),
        )
        ledger.record_now(conn, "?", entry)
    waiter = sensor(
        sftp_conn,
        sftp_folder,
        db_conn_id="sensor_ledger",
        customer_id="acme",
        integration="files",
        flow="orders",
    )
    assert waiter.poke({}) is False
    assert waiter.poke({}).xcom_value == ["new.csv"]  # type: ignore[union-attr]


def _listing(conn_id: str, folder: str) -> list[Any]:
    from b2b_integrations.clients.sftp import open_remote_folder

    with open_remote_folder(conn_id, folder) as remote:
        return remote.list_files()


def test_reschedule_mode_is_refused(sftp_conn: str, sftp_folder: str) -> None:
    with pytest.raises(ValueError, match="reschedule"):
        sensor(sftp_conn, sftp_folder, mode="reschedule")


def test_deferrable_sensor_defers_to_a_serializable_trigger(sftp_conn: str, sftp_folder: str) -> None:
    waiter = sensor(sftp_conn, sftp_folder, deferrable=True, poke_interval=0.2, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        waiter.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "b2b_integrations.triggers.sftp.SftpNewFilesTrigger"
    assert SftpNewFilesTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert waiter.execute_complete({}, {"status": "success", "files": ["a.csv"]}) == ["a.csv"]  # type: ignore[arg-type]
    with pytest.raises(AirflowException, match="boom"):
        waiter.execute_complete({}, {"status": "error", "message": "boom"})  # type: ignore[arg-type]


async def _first_event(trigger: SftpNewFilesTrigger, timeout: float = 20) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(first(), timeout)


def test_trigger_fires_once_a_new_file_is_stable(sftp_conn: str, sftp_folder: str) -> None:
    Path(sftp_folder, "old.csv").write_text("id\n")
    old = next(f for f in _listing(sftp_conn, sftp_folder) if f.name == "old.csv")
    Path(sftp_folder, "fresh.csv").write_text("id\n1\n")
    trigger = SftpNewFilesTrigger(
        sftp_conn_id=sftp_conn,
        folder=sftp_folder,
        pattern="*.csv",
        regex=None,
        done=[[old.name, old.size, old.mtime]],
        poke_interval=0.2,
    )
    assert asyncio.run(_first_event(trigger)) == {"status": "success", "files": ["fresh.csv"]}


def test_trigger_reports_a_missing_folder_as_an_error(sftp_conn: str, sftp_folder: str) -> None:
    trigger = SftpNewFilesTrigger(
        sftp_conn_id=sftp_conn,
        folder=f"{sftp_folder}/nope",
        pattern="*",
        regex=None,
        done=[],
        poke_interval=0.2,
    )
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "error" and "nope" in event["message"]


def test_a_name_that_is_not_utf8_neither_stops_the_trigger_nor_the_sensor(
    sftp_conn: str, sftp_folder: str
) -> None:
    """The listing used to fail on such a name (strict decoding), and with it every file of the folder."""
    import os

    os.close(os.open(os.path.join(os.fsencode(sftp_folder), b"caf\xe9.csv"), os.O_CREAT | os.O_WRONLY))
    Path(sftp_folder, "fresh.csv").write_text("id\n1\n")
    trigger = SftpNewFilesTrigger(
        sftp_conn_id=sftp_conn, folder=sftp_folder, pattern="*.csv", regex=None, done=[], poke_interval=0.2
    )
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "success"
    assert sorted(event["files"]) == ["caf\\xe9.csv", "fresh.csv"]
    event["files"][0].encode("utf-8")  # storable: no lone surrogate left
    waiter = sensor(sftp_conn, sftp_folder)
    assert waiter.poke({}) is False  # first look
    result = waiter.poke({})
    assert sorted(result.xcom_value) == ["caf\\xe9.csv", "fresh.csv"]
