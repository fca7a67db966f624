"""Step operators in real DAG runs: loads into SQLite, and failures that must not be retried."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, write_include

pytestmark = pytest.mark.e2e


def _template(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "checks",
        "connections": {"db": {"type": "sqlite"}},
        "defaults": {"retries": 3, "retry_delay_seconds": 1},
        "flows": {"run": {"trigger": {"type": "manual"}, "steps": steps}},
    }


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    customer_id: str,
    steps: list[dict[str, Any]],
    **test_options: Any,
):
    from airflow.dag_processing.dagbag import DagBag

    customer = {
        "id": customer_id,
        "name": customer_id,
        "integrations": {"checks": {"connections": {"db": f"{customer_id}_db"}}},
    }
    include = write_include(tmp_path / "include", {"checks": _template(steps)}, {customer_id: customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_TRANSFORM_PREFIXES", "sample_transforms")
    target = tmp_path / "target.db"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{customer_id.upper()}_DB", json.dumps({"conn_type": "sqlite", "host": str(target)})
    )
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    run = bag.dags[f"{customer_id}__checks__run"].test(**test_options)
    return run, {ti.task_id: ti for ti in run.get_task_instances()}, target


def test_load_into_sqlite_with_nulls_and_upsert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    steps = [
        {
            "id": "make",
            "kind": "transform",
            "callable": "sample_transforms.rows",
            "options": {"count": 4, "tag": "${customer.id}"},
        },
        {
            "id": "load",
            "kind": "load",
            "connection": "db",
            "table": "scores",
            "key": ["id"],
            "create_table": True,
            "columns": {"id": "INTEGER", "tag": "TEXT", "score": "REAL"},
        },
    ]
    run, tis, target = _run(tmp_path, monkeypatch, "lite", steps)
    assert run.state == "success"
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT id, tag, score FROM scores ORDER BY id").fetchall() == [
            (1, "lite", 1.5),
            (2, "lite", None),
            (3, "lite", 4.5),
            (4, "lite", None),
        ]


@pytest.mark.parametrize(
    ("customer_id", "step"),
    [
        ("wrongco", {"id": "bad", "kind": "transform", "callable": "sample_transforms.wrong_type"}),
        ("noinputco", {"id": "bad", "kind": "report_export", "report": "r", "format": "csv"}),
    ],
    ids=["transform-returns-wrong-type", "report-without-rows"],
)
def test_fatal_step_errors_fail_without_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, customer_id: str, step: dict[str, Any]
) -> None:
    run, tis, _ = _run(tmp_path, monkeypatch, customer_id, [step])
    assert run.state == "failed"
    # The template allows 3 retries; AirflowFailException skips them.
    assert tis["bad"].state == "failed" and tis["bad"].try_number == 1


def test_manual_run_without_logical_date_renders_ds_and_a_database_error_names_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Airflow 3 triggers manual runs without a logical date: ``{{ ds }}`` is the day the run was asked
    for. A load into a table nobody created fails with the driver's error led by whose step it is."""
    steps = [
        {"id": "make", "kind": "transform", "callable": "sample_transforms.rows", "options": {"count": 2, "tag": "{{ ds }}"}},
        {"id": "load", "kind": "load", "connection": "db", "table": "never_created", "key": ["id"], "retries": 0},
    ]  # fmt: skip
    run, tis, _ = _run(tmp_path, monkeypatch, "nodateco", steps, logical_date=None)
    assert run.logical_date is None
    assert tis["make"].state == "success" and tis["load"].state == "failed"
    from b2b_integrations.staging import stage_path

    staged = stage_path("nodateco", "checks", "run", run.run_id, "make").read_text(encoding="utf-8")
    tags = {json.loads(line)["tag"] for line in staged.splitlines()}
    assert tags == {run.run_after.date().isoformat()}
    output = capfd.readouterr()
    assert (
        "customer nodateco, integration checks, flow run, step load: OperationalError: no such table: never_created"
        in output.out + output.err
    )
