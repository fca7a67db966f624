"""Fixtures for integration tests that need real servers: a private OpenSSH sshd (tests/sshd.py), the demo CRM
(tests/crm_server.py), the HTTP sink standing in for Slack and upload endpoints (tests/http_sink.py), an SMTP
server (tests/smtp_server.py). Modules that need other settings (a bigger CRM, say) define their own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_server import CrmServer, start_crm_server
from http_sink import HttpSink, start_http_sink
from s3_server import S3Server, start_s3
from smtp_server import SmtpServer, start_smtp_server
from sshd import SshServer, start_sshd


def _slug(request: pytest.FixtureRequest) -> str:
    """A short identifier unique to this test: its sanitized name plus a random suffix."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"{name}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One real sshd (SFTP via internal-sftp) on 127.0.0.1 for the whole session; login = current user."""
    server = start_sshd()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sftp_conn(sshd: SshServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """The id of an Airflow connection (``AIRFLOW_CONN_<ID>``, removed after the test) to ``sshd``."""
    conn_id = f"sftp_{_slug(request)}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sshd.airflow_conn_json())
    return conn_id


@pytest.fixture
def sftp_folder(sshd: SshServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty folder under ``sshd.root``, as an absolute path (the same on the server and locally)."""
    folder = Path(sshd.root) / _slug(request)
    folder.mkdir(parents=True)
    return str(folder)


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    """A throwaway PostgreSQL database (our app's database in these tests), dropped after the module."""
    import psycopg2

    from helpers import PG

    name = f"b2b_app_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    """The demo CRM with its default data, one per test module."""
    server = start_crm_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    """The HTTP sink (Slack API, incoming webhook, upload endpoint stand-in), one per test module."""
    server = start_http_sink()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback collecting messages, one per test module."""
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's standalone S3 server (tests/s3_server.py) for the whole session; tests make their own buckets."""
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()
