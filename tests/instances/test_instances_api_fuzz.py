"""Property-based requests against the plugin's OpenAPI document (schemathesis) on the real API server:
whatever the generated input, no answer is a 5xx, and every write the server accepted was one the loader
accepts (the include folder still loads after the run)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import minimal_customer, minimal_template, write_include

pytestmark = pytest.mark.airflow_stack

ST = str(Path(sys.executable).parent / "st")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("fuzz") / "include",
        templates={"sync": minimal_template("sync")},
        customers={"acme": minimal_customer("acme")},
    )
    stack = start_airflow_stack(include, components=("api-server",))
    try:
        yield stack
    finally:
        stack.stop()


def _run(stack: AirflowStack, tmp_path: Path, token: str, name: str) -> subprocess.CompletedProcess[str]:
    schema = httpx.get(f"{stack.url}/b2b/openapi.json", timeout=30)
    assert schema.status_code == 200
    assert httpx.get(f"{stack.url}/b2b/docs", timeout=30).status_code == 200  # README points there
    assert any(path.startswith("/api/v1/customers") for path in schema.json()["paths"])
    return subprocess.run(
        [
            ST, "run", f"{stack.url}/b2b/openapi.json", "--url", f"{stack.url}/b2b",
            "--checks", "not_a_server_error", "--max-examples", "15", "--seed", "20261203",
            "--header", f"Authorization: Bearer {token}", "--request-timeout", "30",
            "--report", "junit", "--report-dir", str(tmp_path / name), "--continue-on-failure",
        ],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,  # st keeps a cache in its cwd
    )  # fmt: skip


def test_no_generated_request_gets_a_server_error(stack: AirflowStack, tmp_path: Path) -> None:
    engineer = stack.token("admin")
    result = _run(stack, tmp_path, engineer, "engineer")
    assert result.returncode == 0, (
        result.stdout[-6000:] + result.stderr[-2000:] + stack.log("api-server")[-3000:]
    )
    token = httpx.post(
        f"{stack.url}/b2b/api/v1/customers/acme/tokens",
        json={"ttl_seconds": 900},
        headers={"Authorization": f"Bearer {engineer}"},
        timeout=30,
    ).json()["token"]
    result = _run(stack, tmp_path, token, "customer")
    assert result.returncode == 0, (
        result.stdout[-6000:] + result.stderr[-2000:] + stack.log("api-server")[-3000:]
    )
    # whatever was written, the folder still loads: every accepted write passed the loader
    from b2b_integrations.config.loader import load_project

    loaded = load_project(Path(stack.env["B2B_INCLUDE_DIR"]), last_valid=None)
    assert loaded.problems == []
