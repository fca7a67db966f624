"""The SFTP download loop logs a task error no one awaited in one line, without formatting a traceback."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

# Imported before the test: Airflow configures logging on first import, which would drop caplog's handler.
from airflow.providers.sftp.hooks.sftp import SFTPHookAsync  # noqa: F401

from b2b_integrations.clients.sftp import AsyncDownloads


async def _fails() -> None:
    raise ConnectionResetError("session dropped (test)")


def test_an_unawaited_task_error_is_one_warning_line_and_no_asyncio_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncssh leaves such tasks behind when a session drops (the drop test in test_sftp_import.py
    shows it on a real sshd, when the drop lands between reads); here one is made on purpose."""
    downloads = AsyncDownloads("sftp_never_connected")  # connects on first use only: never here
    caplog.set_level(logging.WARNING)

    async def leave_a_failed_task() -> None:
        task = asyncio.ensure_future(_fails())
        await asyncio.sleep(0.01)  # it runs and fails; no one asks for its result
        assert task.done()

    asyncio.run_coroutine_threadsafe(leave_a_failed_task(), downloads._loop).result()
    downloads.close()
    gc.collect()

    mine = [r for r in caplog.records if r.name == "b2b_integrations.clients.sftp"]
    assert [r.getMessage() for r in mine] == [
        "SFTP download session: Task exception was never retrieved "
        "(ConnectionResetError('session dropped (test)'))"
    ]
    assert all(r.exc_info is None for r in mine)
    assert not [r for r in caplog.records if r.name == "asyncio"]
