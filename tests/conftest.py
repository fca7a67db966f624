"""Test environment: a private AIRFLOW_HOME and a throwaway metadata database per test session.

Airflow reads its configuration when first imported, so the environment is set here, at conftest import,
before any test module imports Airflow. The metadata DB is a fresh PostgreSQL database on 127.0.0.1:5432
where that server runs (as on CI), SQLite otherwise; it is dropped at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="b2b-test-airflow-"))
PG_ADMIN_URL = os.environ.get("B2B_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_ADMIN_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


USE_POSTGRES = _postgres_available()
META_DB = f"b2b_meta_{uuid.uuid4().hex[:10]}"

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "B2B_DATA_DIR": str(_HOME / "b2b_data"),
        # Last valid copies are shared state across parses: tests reuse customer names (acme, globex), so
        # one test's copy would stand in for another test's broken file. Tests of the fallback set a
        # folder of their own.
        "B2B_LAST_VALID_DIR": "off",
    }
)
if USE_POSTGRES:
    _pg_admin(f'CREATE DATABASE "{META_DB}"')
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/{META_DB}"
    )
else:
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if USE_POSTGRES:
        import sys

        if "airflow.settings" in sys.modules:  # close Airflow's pooled connections before the drop
            sys.modules["airflow.settings"].dispose_orm()
        _pg_admin(f'DROP DATABASE IF EXISTS "{META_DB}" WITH (FORCE)')
    shutil.rmtree(_HOME, ignore_errors=True)


NEEDS_BY_FIXTURE = {"sshd": "sshd", "browser": "browser", "airflow_db": "metadata_db"}
"""Fixture -> the marker a test using it (directly or through another fixture) gets."""
SLOW = ("airflow_stack", "metadata_db", "sshd", "browser", "scale")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs, from its fixtures, so ``-m "not sshd"`` or ``-m browser`` select
    by need; and every test needing one of them as ``e2e`` (the slow ones)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in NEEDS_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(marker)
        if any(item.get_closest_marker(m) for m in SLOW):
            item.add_marker("e2e")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """A migrated Airflow metadata DB (created once per session)."""
    from airflow.utils import db

    db.resetdb()
    yield os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
