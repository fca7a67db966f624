"""A task process builds only the DAG it runs (Airflow's parsing context), and builds it exactly as the
full parse does, whatever the number of customers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, minimal_customer, minimal_template, write_include

DAGS = REPO / "dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
CONTEXT_DAG_ID = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"  # what Airflow's task runner sets around its parse


def _bag(monkeypatch: pytest.MonkeyPatch, dag_id: str | None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    if dag_id is None:
        monkeypatch.delenv(CONTEXT_DAG_ID, raising=False)
    else:
        monkeypatch.setenv(CONTEXT_DAG_ID, dag_id)
    return DagBag(dag_folder=str(DAGS))


def _serialized(dag: Any) -> dict[str, Any]:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.to_dict(dag)


def test_each_shipped_dag_builds_alone_and_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    full = _bag(monkeypatch, None)
    assert full.import_errors == {} and len(full.dags) > 10
    for dag_id, dag in full.dags.items():
        alone = _bag(monkeypatch, dag_id)
        assert list(alone.dags) == [dag_id]
        assert alone.import_errors == {}
        assert _serialized(alone.dags[dag_id]) == _serialized(dag), dag_id


def test_unknown_or_foreign_dag_ids_build_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template()},
        {
            "acme": minimal_customer("acme"),
            "off": {**minimal_customer("off"), "enabled": False},
        },
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    for dag_id in (
        "some_other_dag",  # another DAG file's DAG: `airflow tasks test` parses the whole folder
        "ghost__sync__snapshot",  # no such customer
        "acme__nope__snapshot",  # no such integration
        "acme__sync__nope",  # no such flow
        "off__sync__snapshot",  # disabled customer
        "../acme__sync__snapshot",  # not an id: never a path
        "acme__sync__snapshot__x",
    ):
        bag = _bag(monkeypatch, dag_id)
        assert bag.dags == {} and bag.import_errors == {}, dag_id
    assert list(_bag(monkeypatch, "acme__sync__snapshot").dags) == ["acme__sync__snapshot"]


def test_task_parse_reads_only_its_customer_and_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other customers' files and templates it does not use are never opened: here they are unreadable
    (a directory where a file should be), which the full parse reports and the task parse never sees."""
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template(), "other": minimal_template("other")},
        {"acme": minimal_customer("acme")},
    )
    (include / "customers" / "globex.yaml").mkdir()
    (include / "integrations" / "unused.yaml").mkdir()
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    full = _bag(monkeypatch, None)
    problems = full.import_errors[str(DAGS / "b2b_config_problems.py")]
    assert "customers/globex.yaml" in problems and "integrations/unused.yaml" in problems
    # Strict mode turns any problem the parse met into the DAG file's import error: none was met.
    monkeypatch.setenv("B2B_STRICT", "1")
    alone = _bag(monkeypatch, "acme__sync__snapshot")
    assert list(alone.dags) == ["acme__sync__snapshot"] and alone.import_errors == {}
    from b2b_integrations.factory.register import build_task_dag

    assert build_task_dag(include, "acme__sync__snapshot").project.files_checked == 2


def test_broken_customer_task_runs_on_its_last_valid_copy_like_the_full_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last_valid = tmp_path / "last_valid"
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template(), "other": minimal_template("other")},
        {
            "acme": minimal_customer("acme", config={"region": "eu", "label": "v1"}),
            # Two integrations: the copy must be checked against both templates, as the full parse does.
            "globex": {
                **minimal_customer("globex"),
                "integrations": {
                    "sync": {"config": {"region": "eu", "label": "v1"}, "connections": {"db": "g_db"}},
                    "other": {"config": {"region": "us"}, "connections": {"db": "g_db"}},
                },
            },
        },
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_LAST_VALID_DIR", str(last_valid))
    assert len(_bag(monkeypatch, None).dags) == 3  # keeps the last valid copies
    # acme breaks (wrong type); globex's file breaks and names a template that does not exist.
    write_include(
        include, customers={"acme": minimal_customer("acme", config={"region": "eu", "threshold": "x"})}
    )
    (include / "customers" / "globex.yaml").write_text(
        "id: globex\nname: G\nintegrations:\n  sync: {config: {region: eu, label: v2}, connections: {db: g}}\n"
        "  missing: {}\n",
        encoding="utf-8",
    )
    full = _bag(monkeypatch, None)
    assert sorted(full.dags) == ["acme__sync__snapshot", "globex__other__snapshot", "globex__sync__snapshot"]
    for dag_id, dag in full.dags.items():
        alone = _bag(monkeypatch, dag_id)
        assert list(alone.dags) == [dag_id]
        assert _serialized(alone.dags[dag_id]) == _serialized(dag), dag_id
    assert full.dags["acme__sync__snapshot"].params["label"] == "v1"
    assert full.dags["globex__sync__snapshot"].params["label"] == "v1"
    # A task parse never writes copies: what runs is the dag-processor's decision.
    before = {p: p.stat().st_mtime_ns for p in last_valid.rglob("*.yaml")}
    write_include(include, customers={"acme": minimal_customer("acme", config={"region": "us"})})
    _bag(monkeypatch, "acme__sync__snapshot")
    assert {p: p.stat().st_mtime_ns for p in last_valid.rglob("*.yaml")} == before


@pytest.mark.e2e
def test_airflow_tasks_test_builds_only_the_dag_it_runs(tmp_path: Path, airflow_db: str) -> None:
    """Through Airflow's own path: `airflow tasks test` parses the DAG folder under the parsing context and
    runs the task in that process; the task itself lists the DAG objects alive around it."""
    out = tmp_path / "live_dags.json"
    template = minimal_template(
        "probe",
        flows={
            "check": {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "probe",
                        "kind": "transform",
                        "callable": "parse_probe.live_dags",
                        "options": {"out": str(out)},
                    }
                ],
            }
        },
    )
    customers = {f"cust{i}": minimal_customer(f"cust{i}", "probe") for i in range(5)}
    customers.update({f"sync{i}": minimal_customer(f"sync{i}") for i in range(5)})
    include = write_include(tmp_path / "include", {"probe": template, "sync": minimal_template()}, customers)
    env = {
        **os.environ,
        "B2B_INCLUDE_DIR": str(include),
        "B2B_TRANSFORM_PREFIXES": "parse_probe",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
    }
    env.pop(CONTEXT_DAG_ID, None)
    # The DAGs must be in the metadata DB first, as the dag-processor would have put them there.
    done = subprocess.run(
        [AIRFLOW, "dags", "reserialize", "-B", "dags-folder"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [AIRFLOW, "tasks", "test", "-B", "dags-folder", "cust3__probe__check", "probe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert json.loads(out.read_text(encoding="utf-8")) == ["cust3__probe__check"]
