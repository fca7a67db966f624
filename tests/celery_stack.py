"""A real Airflow on CeleryExecutor for scale-out tests and benchmarks: API server, scheduler, dag-processor
and N ``airflow celery worker`` processes, with the machine's Redis as broker and a throwaway PostgreSQL
metadata database (also Celery's result backend, as in the official docker-compose).

``start_celery_stack(include_dir, env, workers=2)`` migrates the database through
``airflow_stack.start_airflow_stack`` (no components), then starts every component in its own process group
with its log in the stack's home. Each worker gets its own Celery node name and, through
``[core] hostname_callable`` = :func:`worker_hostname`, its own ``task_instance.hostname``, so a test can tell
which worker ran which task although both run on this machine. Tasks go to a queue private to the stack, so
two stacks sharing a Redis database never take each other's tasks. ``stop()`` ends every process group
(even after a failed start), drops the database and flushes the stack's Redis database.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from airflow_stack import AIRFLOW, AirflowStack, start_airflow_stack

TESTS = Path(__file__).resolve().parent
REDIS_HOST = os.environ.get("B2B_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("B2B_TEST_REDIS_PORT", "6379"))
WORKER_NAME_VAR = "B2B_TEST_WORKER_NAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the test workers: the name the stack gave this worker process."""
    return os.environ[WORKER_NAME_VAR]


def redis_available(db: int = 0) -> bool:
    """Whether the machine's Redis answers (tests skip the scale-out run without it)."""
    import redis

    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class CeleryStack:
    """A running CeleryExecutor deployment; ``airflow`` holds the processes, env, home and metadata DB."""

    airflow: AirflowStack
    redis_db: int
    queue: str
    workers: list[str] = field(default_factory=list)
    _stopped: bool = False

    @property
    def url(self) -> str:
        return self.airflow.url

    def sql(self, query: str) -> list[tuple]:
        return self.airflow.sql(query)

    def log(self, component: str) -> str:
        return self.airflow.log(component)

    def wait_for(self, what: str, check, timeout: float = 120.0, every: float = 0.5):  # noqa: ANN001, ANN201
        return self.airflow.wait_for(what, check, timeout=timeout, every=every)

    def token(self, username: str = "admin") -> str:
        """A JWT for the REST API (see ``AirflowStack.token``)."""
        return self.airflow.token(username)

    def stop(self) -> None:
        """Stop every process group, drop the metadata DB, flush the Redis DB. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.airflow.stop()
        finally:
            import redis

            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db, socket_timeout=5).flushdb()


def start_celery_stack(
    include_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    workers: int = 2,
    concurrency: int = 2,
    redis_db: int = 11,
    components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor"),
    private_data_dirs: bool = False,
) -> CeleryStack:
    """Start Airflow with CeleryExecutor and ``workers`` Celery workers of ``concurrency`` slots each.

    :param redis_db: Redis database number used as the broker; flushed by ``stop()``.
    :param private_data_dirs: Give each worker its own ``B2B_DATA_DIR`` (``<home>/b2b_data_<worker>``), as
        workers on separate hosts would have: records cross between them only through object storage
        (``B2B_STAGING_URL`` in ``extra_env``).
    """
    queue = f"b2b_test_{uuid.uuid4().hex[:8]}"
    celery_env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        **(extra_env or {}),
    }
    airflow = start_airflow_stack(include_dir, celery_env, components=())
    stack = CeleryStack(airflow=airflow, redis_db=redis_db, queue=queue)
    atexit.register(stack.stop)
    try:
        # The metadata DB's name is known only now; Celery keeps task results in it (as docker-compose does).
        airflow.env["AIRFLOW__CELERY__RESULT_BACKEND"] = (
            f"db+postgresql://postgres@127.0.0.1:5432/{airflow.meta_db}"
        )
        port = airflow.env["AIRFLOW__API__PORT"]
        for component in components:
            _spawn(airflow, component, [component, *(["--port", port] if component == "api-server" else [])])
        for index in range(1, workers + 1):
            name = f"worker{index}"
            _spawn(
                airflow,
                name,
                ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency),
                 "--queues", queue, "--without-gossip", "--without-mingle", "--skip-serve-logs"],
                {
                    **({"B2B_DATA_DIR": str(airflow.home / f"b2b_data_{name}")} if private_data_dirs else {}),
                    WORKER_NAME_VAR: name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_stack.worker_hostname",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), airflow.env.get("PYTHONPATH")])),
                },
            )  # fmt: skip
            stack.workers.append(name)
        if "api-server" in components:
            airflow.wait_for(
                "the API server",
                lambda: httpx.get(f"{airflow.url}/api/v2/monitor/health", timeout=2).status_code == 200,
            )
        for name in stack.workers:
            airflow.wait_for(f"celery {name} to be ready", lambda n=name: " ready." in airflow.log(n))
    except BaseException:
        stack.stop()
        raise
    return stack


def _spawn(airflow: AirflowStack, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    with (airflow.home / f"{name}.log").open("wb") as log:
        airflow.procs[name] = subprocess.Popen(
            [AIRFLOW, *args],
            env={**airflow.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the worker and its pool children
        )
