"""A private PostgreSQL cluster (initdb + pg_ctl) that a test may stop, kill and restart.

The rest of the test session keeps its metadata DB on the machine's PostgreSQL (127.0.0.1:5432); restarting
that server would break every other test running at the same time. ``start_pg_cluster()`` creates a
throwaway cluster in a temp dir on a free loopback port (trust authentication, superuser ``postgres``) and
``PgCluster.stop() / start() / restart() / kill()`` act on that cluster only. ``destroy()`` stops it and
removes the data directory.

initdb refuses to run as root: when the tests run as root (as on CI), the cluster's commands run as the
``postgres`` OS user (``runuser``) and the temp dir is handed to that user.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(f"PostgreSQL's {name} not found: install the postgresql server package")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass
class PgCluster:
    """One private cluster; ``url`` is the base URL (``postgresql://postgres@127.0.0.1:<port>``)."""

    port: int
    tmpdir: Path
    run_as: str | None
    _destroyed: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.tmpdir / "sock"

    @property
    def log_file(self) -> Path:
        return self.tmpdir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*args] if self.run_as is None else ["runuser", "-u", self.run_as, "--", *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"server log:\n{self.log()[-3000:]}"
            )
        return result

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it accepts connections (``pg_ctl -w``)."""
        self._run(
            _bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            # Few connections and little memory: the machine is shared with the rest of the suite.
            "-o",
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_buffers=32MB -c fsync=off -c full_page_writes=off",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, close connections) and wait."""
        self._run(_bin("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and its children, as a crash of the machine's database would."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(v) for v in victims):
            time.sleep(0.05)
        # A killed postmaster leaves its pid file; if nobody reaps the zombie, the pid still "exists" and the
        # next start would take it for a running server. Nothing of that cluster runs any more: remove it.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for lock in (f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            (self.socket_dir / lock).unlink(missing_ok=True)

    def postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_up(self) -> bool:
        result = subprocess.run(
            [_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"], check=False
        )
        return result.returncode == 0

    def admin(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement in autocommit mode (CREATE DATABASE needs it); rows if it returns any."""
        import psycopg2

        conn = psycopg2.connect(f"{self.url}/{database}", connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create a database; return its URL."""
        self.admin(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def destroy(self) -> None:
        """Stop the server (immediately) and remove its files. Idempotent."""
        if self._destroyed:
            return
        self._destroyed = True
        if self.postmaster_pid() is not None:
            self._run(_bin("pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data_dir), check=False)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def start_pg_cluster() -> PgCluster:
    """initdb a new cluster in a temp dir and start it on a free loopback port."""
    run_as = "postgres" if os.geteuid() == 0 else None
    tmpdir = Path(tempfile.mkdtemp(prefix="b2b-pg-cluster-"))
    cluster = PgCluster(port=free_port(), tmpdir=tmpdir, run_as=run_as)
    atexit.register(cluster.destroy)  # a crashed session must not leave a postmaster behind
    try:
        cluster.socket_dir.mkdir()
        if run_as is not None:
            user = pwd.getpwnam(run_as)
            for path in (tmpdir, cluster.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        cluster._run(
            _bin("initdb"), "-D", str(cluster.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
