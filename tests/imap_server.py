"""A real Dovecot IMAP server (Debian's ``dovecot-imapd``) on a free loopback port, for the mailbox tests.

``start_imap()`` writes a private configuration in a temp dir (plain IMAP on 127.0.0.1, no TLS, one user
from a passwd file, Maildir under the temp dir) and runs ``dovecot -F`` until ``ImapServer.stop()``.
Messages are put in with ``append()`` (IMAP APPEND, as a mail delivery would leave them) and read back with
``uids()`` / ``message_ids()``.
"""

from __future__ import annotations

import atexit
import imaplib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

from servers import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "partner@example.com"
PASSWORD = "imap-Secret-42"


@dataclass
class ImapServer:
    port: int
    tmpdir: Path
    proc: subprocess.Popen[bytes]
    _stopped: bool = field(default=False, repr=False)

    def airflow_conn_json(self) -> str:
        """This mailbox as an Airflow connection in JSON form (``AIRFLOW_CONN_<ID>``); plain IMAP, so the
        imap provider's ``use_ssl`` is off."""
        import json

        return json.dumps(
            {
                "conn_type": "imap",
                "host": "127.0.0.1",
                "port": self.port,
                "login": USER,
                "password": PASSWORD,
                "extra": {"use_ssl": False},
            }
        )

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            client.create(folder)  # NO when it exists: fine
            status, _ = client.append(folder, "", None, raw)
            assert status == "OK", status

    def message_ids(self, folder: str) -> list[str]:
        """The Message-ID headers of the folder's messages (empty when the folder does not exist)."""
        with self.client() as client:
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", None, "ALL")
            ids = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[HEADER])")
                ids.append(str(BytesHeaderParser().parsebytes(parts[0][1]).get("Message-ID", "")))
            return ids

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def start_imap() -> ImapServer:
    tmpdir = Path(tempfile.mkdtemp(prefix="b2b-imap-"))
    os.chmod(tmpdir, 0o755)  # dovecot's unprivileged login processes must reach the run dir
    port = free_port()
    (tmpdir / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:  # dovecot never gives mail access as root: the mail belongs to nobody
        import pwd

        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    for sub in ("mail", "home"):
        (tmpdir / sub).mkdir()
        os.chown(tmpdir / sub, uid, gid)
    (tmpdir / "dovecot.conf").write_text(
        f"""
base_dir = {tmpdir}/run
state_dir = {tmpdir}/state
log_path = {tmpdir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{tmpdir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmpdir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmpdir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
    )
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(tmpdir / "dovecot.conf")],
        stdout=(tmpdir / "stdout.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ImapServer(port=port, tmpdir=tmpdir, proc=proc)
    atexit.register(server.stop)
    deadline = time.monotonic() + 15
    while True:
        try:
            server.client().logout()
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (tmpdir / "dovecot.log").read_text(errors="replace")
                    if (tmpdir / "dovecot.log").exists()
                    else ""
                )
                out = (tmpdir / "stdout.log").read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"dovecot did not start:\n{out}\n{log}") from None
            time.sleep(0.1)
