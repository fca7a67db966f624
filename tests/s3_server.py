"""A real S3-protocol server for tests: moto's standalone server (``moto_server``) in a subprocess.

``start_s3()`` runs it on a free loopback port (tests/servers.py) and waits until it answers; ``S3Server``
gives the Airflow connection that points at it (``aws`` with ``endpoint_url`` in its extra, so the amazon
provider's hooks and Airflow's ``ObjectStoragePath`` reach it exactly as they would reach AWS) and a plain
boto3 client for the tests' own setup and checks. Its log goes to a file, never to a pipe nobody reads.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import free_port, wait_until_answers

START_TIMEOUT = 30.0
ACCESS_KEY = "testing"  # moto accepts any key; these are not secrets
SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]
    log_file: Path
    tmpdir: Path

    def airflow_conn(self, **extra: Any) -> dict[str, Any]:
        """This server as an Airflow ``aws`` connection (dict form), with ``extra`` keys added."""
        return {
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"endpoint_url": self.endpoint, "region_name": REGION, **extra},
        }

    def airflow_conn_json(self, **extra: Any) -> str:
        """For ``AIRFLOW_CONN_<ID>``."""
        return json.dumps(self.airflow_conn(**extra))

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self, prefix: str = "b2b") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (paginated), sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def start_s3() -> S3Server:
    """Start ``moto_server`` on 127.0.0.1 and return once it answers S3 requests."""
    port = free_port()
    tmpdir = Path(tempfile.mkdtemp(prefix="objstore-moto-"))
    log_file = tmpdir / "moto.log"
    binary = Path(sys.executable).with_name("moto_server")
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends the server and nothing else
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    endpoint = f"http://127.0.0.1:{port}"
    server = S3Server(endpoint=endpoint, proc=proc, log_file=log_file, tmpdir=tmpdir)
    try:
        wait_until_answers(proc, f"{endpoint}/moto-api/", log_file, START_TIMEOUT, "moto_server")
    except BaseException:
        server.stop()
        raise
    return server
