"""A real Airflow (API server, scheduler with LocalExecutor, dag-processor, optionally triggerer) for e2e tests.

``start_airflow_stack(include_dir, env)`` creates a throwaway PostgreSQL metadata database (a copy of one
that ``airflow db migrate`` ran on once per test session), and starts each component as its own subprocess (own session, log file in a temp
dir) with this repository's dags/ and plugins/, the given include folder and extra environment (e.g.
``AIRFLOW_CONN_*`` connections). ``stop()`` ends them all and drops the database. ``token(user)`` logs in
through the API server's ``/auth/token`` for tests of authenticated endpoints.

The metadata database lives on the machine's PostgreSQL unless ``pg_url`` names another server (the fault
suite's private cluster, tests/pg_cluster.py, which it stops and restarts). Fault tests also use
``kill(component)`` / ``start_component(component)``, and ``restart_policy = "always"``, which makes
``wait_for`` start a component again when it exited, as ``restart: always`` in docker-compose.yaml does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from servers import free_port

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class AirflowStack:
    url: str
    env: dict[str, str]
    home: Path
    meta_db: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pg_url: str = PG
    restart_policy: str = "never"  # "always": wait_for starts an exited component again
    restarts: dict[str, int] = field(default_factory=dict)  # by restart_policy, per component
    _stopped: bool = False

    def token(self, username: str = "admin") -> str:
        """A JWT for ``username`` from the API server's ``POST /auth/token`` (SimpleAuthManager's generated
        password; users come from ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``, default ``admin:admin``)."""
        import json

        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        password = self.wait_for(
            "the generated passwords", lambda: json.loads(passwords.read_text()).get(username), timeout=30
        )
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def log(self, component: str) -> str:
        path = self.home / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sql(self, query: str) -> list[tuple]:
        """Rows of a query on the metadata database."""
        import psycopg2

        with psycopg2.connect(f"{self.pg_url}/{self.meta_db}") as conn, conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall() if cur.description else []

    def wait_for(self, what: str, check, timeout: float = 120.0, every: float = 0.5):  # noqa: ANN001, ANN201
        """Poll ``check()`` until it returns a truthy value; fail with the components' log tails."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.restart_policy == "always":
                self.revive()
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}"
                    )
            try:
                value = check()
            except Exception:  # noqa: BLE001 - not ready yet (table missing, server starting)
                value = None
            if value:
                return value
            time.sleep(every)
        tails = "\n".join(f"--- {name}\n{self.log(name)[-2000:]}" for name in self.procs)
        raise TimeoutError(f"timed out waiting for {what}\n{tails}")

    def start_component(self, component: str) -> subprocess.Popen[bytes]:
        """Start one component (again); its output is appended to ``<home>/<component>.log``."""
        port = self.url.rsplit(":", 1)[1]
        args = [AIRFLOW, component] + (["--port", port] if component == "api-server" else [])
        with (self.home / f"{component}.log").open("ab") as log:
            self.procs[component] = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.procs[component]

    def revive(self) -> list[str]:
        """Start every component that exited again (counted in ``restarts``); their names."""
        exited = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in exited:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.start_component(name)
        return exited

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a component's process group and wait until it is gone; it stays down until
        ``start_component`` (``wait_for`` does not count it as exited)."""
        proc = self.procs.pop(component)
        _signal_group(proc, sig)
        proc.wait(timeout=60)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        _admin(f'DROP DATABASE IF EXISTS "{self.meta_db}" WITH (FORCE)', self.pg_url)
        shutil.rmtree(self.home, ignore_errors=True)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _admin(statement: str, pg_url: str = PG) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{pg_url}/postgres")
    conn.autocommit = True
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


_TEMPLATES: dict[str, str] = {}
"""PostgreSQL server -> a database ``airflow db migrate`` ran on once in this test session; every stack's
metadata DB is a copy of it (``CREATE DATABASE ... TEMPLATE``, well under a second, against ~15-30 s for a
migration on this machine), so a suite of stacks pays for one migration."""


def _migrated_template(pg_url: str, env: dict[str, str]) -> str:
    if pg_url in _TEMPLATES:
        return _TEMPLATES[pg_url]
    name = f"b2b_e2e_template_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"', pg_url)
    url = pg_url.replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{name}"
    migrate = subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env={**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url},
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', pg_url)
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-3000:]}")
    _TEMPLATES[pg_url] = name
    atexit.register(_drop_quietly, name, pg_url)
    return name


def _drop_quietly(database: str, pg_url: str) -> None:
    # At exit the server may be gone already (the fault suite stops its private cluster): nothing to drop.
    try:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', pg_url)
    except Exception:  # noqa: BLE001
        pass


def start_airflow_stack(
    include_dir: Path,
    extra_env: dict[str, str] | None = None,
    components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor"),
    pg_url: str = PG,
) -> AirflowStack:
    """Start the components on a new metadata DB on ``pg_url`` (a ``postgresql://user@host:port`` base)."""
    home = Path(tempfile.mkdtemp(prefix="b2b-e2e-airflow-"))
    meta_db = f"b2b_e2e_{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "B2B_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url.replace(
                "postgresql://", "postgresql+psycopg2://", 1
            )
            + f"/{meta_db}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            # Set here, not left to Airflow: a component started in a home without airflow.cfg generates a
            # Fernet key and writes the file, and components starting together each generated their own
            # key, so a connection or trigger one encrypted could not be read by another (seen as a task's
            # connection answering 404 and a triggerer's "kwargs unreadable").
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            # Tasks call the Execution API with a 5 s default; on a busy 2-core host (two test workers and
            # their stacks) an answer can take longer, and the task died before running, with an empty log.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "B2B_INCLUDE_DIR": str(include_dir),
            "B2B_DATA_DIR": str(home / "b2b_data"),
            **(extra_env or {}),
        }
    )
    template = _migrated_template(pg_url, env)
    _admin(f'CREATE DATABASE "{meta_db}" TEMPLATE "{template}"', pg_url)
    stack = AirflowStack(url=f"http://127.0.0.1:{port}", env=env, home=home, meta_db=meta_db, pg_url=pg_url)
    atexit.register(stack.stop)
    for component in components:
        stack.start_component(component)
    if "api-server" in components:
        stack.wait_for(
            "the API server",
            lambda: httpx.get(f"{stack.url}/api/v2/monitor/health", timeout=2).status_code == 200,
            # Seen taking 125-130 s to import and start with 7 agents' suites on 2 cores (load 23).
            timeout=300,
        )
    return stack
