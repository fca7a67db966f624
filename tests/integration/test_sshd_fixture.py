"""The sshd fixture against the SFTP provider's hook: file round trip, and dropped connections."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest

from sshd import SshServer

pytestmark = pytest.mark.e2e

# What paramiko raises when the server side of an open SFTP session goes away (SSHException "Server
# connection dropped" while a request is pending; OSError "Socket is closed" / EOFError once it noticed).
DROPPED = (paramiko.SSHException, OSError, EOFError)


def _hook(conn_id: str):
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    return SFTPHook(ssh_conn_id=conn_id)


def test_connection_and_folder_fixtures(sshd: SshServer, sftp_conn: str, sftp_folder: str) -> None:
    assert sftp_conn.startswith("sftp_")
    assert os.environ[f"AIRFLOW_CONN_{sftp_conn.upper()}"] == sshd.airflow_conn_json()
    assert Path(sftp_folder).is_dir() and Path(sftp_folder).parent == sshd.root
    assert not any(Path(sftp_folder).iterdir())
    assert _hook(sftp_conn).test_connection() == (True, "Connection successfully tested")


def test_store_describe_retrieve_rename_delete(sftp_conn: str, sftp_folder: str, tmp_path: Path) -> None:
    payload = os.urandom(1024 * 1024 + 17)  # more than one SFTP read/write block
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    remote = f"{sftp_folder}/orders.bin"
    hook = _hook(sftp_conn)

    hook.store_file(remote, str(local))
    listing = hook.describe_directory(sftp_folder)
    assert listing["orders.bin"]["size"] == len(payload)
    assert listing["orders.bin"]["type"] == "file"

    downloaded = tmp_path / "download.bin"
    hook.retrieve_file(remote, str(downloaded))
    assert downloaded.read_bytes() == payload

    # SFTPHook has no rename: use the paramiko SFTPClient from get_managed_conn(). (Not hook.get_conn()
    # here: after a decorated hook call it returns the hook's stale, already closed client.)
    renamed = f"{sftp_folder}/orders.bin.done"
    with hook.get_managed_conn() as sftp:
        sftp.posix_rename(remote, renamed)  # atomic and overwrites; plain rename() fails if the target exists
        assert sftp.stat(renamed).st_size == len(payload)
    assert hook.list_directory(sftp_folder) == ["orders.bin.done"]
    assert not hook.path_exists(remote)

    hook.delete_file(renamed)
    assert hook.list_directory(sftp_folder) == []


def test_kill_sessions_drops_open_connection(sshd: SshServer, sftp_conn: str, sftp_folder: str) -> None:
    (Path(sftp_folder) / "a.txt").write_text("a")
    hook = _hook(sftp_conn)
    with hook.get_managed_conn() as sftp:
        assert sftp.listdir(sftp_folder) == ["a.txt"]
        assert sshd.kill_sessions() > 0
        with pytest.raises(DROPPED):
            sftp.listdir(sftp_folder)
    assert sshd.proc.poll() is None  # the listener survived

    assert _hook(sftp_conn).list_directory(sftp_folder) == ["a.txt"]
    assert hook.list_directory(sftp_folder) == ["a.txt"]  # the same hook reconnects, too


def test_kill_sessions_mid_download(
    sshd: SshServer, sftp_conn: str, sftp_folder: str, tmp_path: Path
) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    (Path(sftp_folder) / "big.bin").write_bytes(payload)
    received = bytearray()

    class KillAfterFirstChunk:
        def write(self, data: bytes) -> int:
            if not received:
                sshd.kill_sessions()
            received.extend(data)
            return len(data)

    hook = _hook(sftp_conn)
    with hook.get_managed_conn() as sftp, pytest.raises(DROPPED):
        # Without prefetch every block is its own request, so the drop always hits a pending one.
        sftp.getfo(f"{sftp_folder}/big.bin", KillAfterFirstChunk(), prefetch=False)
    assert 0 < len(received) < len(payload)

    local = tmp_path / "big.bin"
    _hook(sftp_conn).retrieve_file(f"{sftp_folder}/big.bin", str(local))
    assert local.read_bytes() == payload
