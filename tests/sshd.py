"""A real OpenSSH ``sshd`` on a free loopback port, for SFTP integration tests.

``start_sshd()`` generates a host key and a client key pair (ed25519, no passphrase) in a temp dir, writes a
private ``sshd_config`` (public-key login only, ``internal-sftp``) and runs ``sshd -D -e`` as a subprocess
until ``SshServer.stop()``. The login user is the user running the tests (root on CI). ``crash()`` kills the
listener and every session (the server is gone, connections drop, new ones are refused) and ``restart()``
starts it again on the same port with the same keys, as a restarted server would come back.

sshd's log (``-e`` sends it to stderr) goes to ``<tempdir>/sshd.log``, never to a pipe: nobody reads a pipe
while the tests run, and a full one would block sshd.
"""

from __future__ import annotations

import atexit
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
PRIVSEP_DIR = Path(
    "/run/sshd"
)  # Debian's compiled-in privilege-separation dir; sshd refuses to start without it
START_TIMEOUT = 10.0


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    key_file: Path  # the client's private key (its public half is in authorized_keys)
    root: Path  # a per-server base folder for the tests' remote files
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    log_file: Path
    _stopped: bool = field(default=False, repr=False)

    def airflow_conn_json(self) -> str:
        """This server as an Airflow connection in JSON form (for ``AIRFLOW_CONN_<ID>``).

        ``allow_host_key_change`` keeps SSHHook away from ``~/.ssh/known_hosts``: with only
        ``no_host_key_check`` it loads that file when it exists and paramiko's AutoAddPolicy then writes
        this throwaway host key into it, which breaks a later run that gets the same port.
        ``look_for_keys: false`` makes the generated key the only one offered.
        """
        return json.dumps(
            {
                "conn_type": "sftp",
                "host": self.host,
                "port": self.port,
                "login": self.user,
                "extra": {
                    "key_file": str(self.key_file),
                    "no_host_key_check": True,
                    "allow_host_key_change": True,
                    "look_for_keys": False,
                },
            }
        )

    def log(self) -> str:
        """sshd's log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def session_pids(self) -> list[int]:
        """All descendants of the listener: one process tree per client connection."""
        return _descendants(self.proc.pid)

    def kill_sessions(self, timeout: float = 5.0) -> int:
        """SIGKILL every per-connection sshd process but keep the listener: open connections drop.

        Returns how many processes were killed; waits until they are gone.
        """
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.02)
        return len(pids)

    def crash(self) -> None:
        """SIGKILL the sessions and the listener; nothing answers on the port until ``restart()``."""
        self.kill_sessions()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Start sshd again on the same port and config (after ``crash()``), and wait until it listens."""
        if self.proc.poll() is None:
            raise RuntimeError("sshd is still running; crash() it first")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [find_sshd(), "-D", "-e", "-f", str(self.tmpdir / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # The log already says "Server listening" from the first start: wait for a connection instead.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.proc.returncode}) on restart; its log:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"sshd did not listen again within {timeout:.0f}s:\n{self.log()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the listener and all sessions, and remove the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.kill_sessions()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..."; comm may contain spaces and parentheses, so split after the last ")"
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead: its sockets are closed


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [root_pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def find_sshd() -> str:
    """Absolute path of sshd (it refuses to start by a relative name; /usr/sbin is often not on PATH)."""
    for candidate in (shutil.which("sshd"), *SSHD_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return str(Path(candidate).resolve())
    raise RuntimeError("sshd not found: install openssh-server (apt-get install -y openssh-server)")


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _config(tmpdir: Path, host: str, port: int, extra: list[str]) -> str:
    lines = [
        f"ListenAddress {host}",
        f"Port {port}",
        f"HostKey {tmpdir / 'host_ed25519'}",
        f"PidFile {tmpdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmpdir / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "UseDNS no",
        "PrintMotd no",
        "X11Forwarding no",
        "MaxStartups 100",
        "Subsystem sftp internal-sftp",
        "LogLevel INFO",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _optional_settings(sshd: str, tmpdir: Path, host: str) -> list[str]:
    """Settings only some OpenSSH versions know (sshd -t says which)."""
    # OpenSSH >= 9.8 penalises a source address whose sessions "crash"; kill_sessions() would then lock
    # 127.0.0.1 out for a while.
    wanted = ["PerSourcePenalties no"]
    kept = []
    probe = tmpdir / "probe_config"
    for setting in wanted:
        probe.write_text(_config(tmpdir, host, 22, [setting]))
        if subprocess.run([sshd, "-t", "-f", str(probe)], capture_output=True).returncode == 0:
            kept.append(setting)
    probe.unlink(missing_ok=True)
    return kept


def _wait_listening(
    proc: subprocess.Popen[bytes], host: str, port: int, log_file: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"sshd exited with code {proc.returncode} before listening on {host}:{port}; its stderr:\n"
                + log_file.read_text(errors="replace")
            )
        if f"Server listening on {host} port {port}" in log_file.read_text(errors="replace"):
            return
        try:  # in case another OpenSSH version words its log line differently
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"sshd did not listen on {host}:{port} within {timeout:.0f}s; its stderr:\n"
                + log_file.read_text(errors="replace")
            )
        time.sleep(0.05)


def start_sshd(host: str = "127.0.0.1", timeout: float = START_TIMEOUT, attempts: int = 3) -> SshServer:
    """Start a private sshd and wait until it accepts connections."""
    sshd = find_sshd()
    if not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(f"sshd needs {PRIVSEP_DIR}, which cannot be created: {exc}") from exc

    tmpdir = Path(tempfile.mkdtemp(prefix="b2b-sshd-"))
    try:
        user = getpass.getuser()
        _keygen(tmpdir / "host_ed25519", "b2b-test-host")
        _keygen(tmpdir / "client_ed25519", "b2b-test-client")
        shutil.copyfile(tmpdir / "client_ed25519.pub", tmpdir / "authorized_keys")
        root = tmpdir / "data"
        root.mkdir()
        extra = _optional_settings(sshd, tmpdir, host)
        config = tmpdir / "sshd_config"
        log_file = tmpdir / "sshd.log"

        for attempt in range(1, attempts + 1):
            # The port is free now, but something may take it before sshd binds: retry with another.
            port = free_port(host)
            config.write_text(_config(tmpdir, host, port, extra))
            with log_file.open("wb") as log:
                proc = subprocess.Popen(
                    [sshd, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C on the test run goes to pytest, not straight to sshd
                )
            try:
                _wait_listening(proc, host, port, log_file, timeout)
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if attempt < attempts and "Address already in use" in log_file.read_text(errors="replace"):
                    continue
                raise
            server = SshServer(
                host=host,
                port=port,
                user=user,
                key_file=tmpdir / "client_ed25519",
                root=root,
                proc=proc,
                tmpdir=tmpdir,
                log_file=log_file,
            )
            atexit.register(server.stop)  # a crashed test session must not leave sshd running
            return server
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
