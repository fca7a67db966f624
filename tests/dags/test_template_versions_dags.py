"""A customer pinned to a template version gets DAGs built from that version, through Airflow's own
parse-and-store path (``airflow dags reserialize`` on PostgreSQL) and in a task's parse; a rollout moves it
to the new version under the same DAG id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_config_isolation import _dags, _import_errors, _reserialize, _task_parse_labels

from b2b_integrations.instances.history import History
from b2b_integrations.instances.rollout import apply_rollout, plan_rollout
from b2b_integrations.instances.store import InstanceStore
from helpers import minimal_customer, minimal_template, write_include

pytestmark = pytest.mark.e2e

PINNED, CURRENT = "ver_pinned__sync__snapshot", "ver_current__sync__snapshot"


def _version(number: str, limit_name: str, **upgrade: Any) -> dict[str, Any]:
    """``sync`` at ``number``: its label defaults to ``v<number>``; the integer variable is ``limit_name``."""
    template = minimal_template(version=number, **({"upgrade": upgrade} if upgrade else {}))
    template["config"]["label"]["default"] = f"v{number}"
    template["config"][limit_name] = template["config"].pop("threshold")
    return template


def _param(dag_id: str, name: str) -> Any:
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        params = SerializedDagModel.get(dag_id, session=session).data["dag"]["params"]
    return next((p[1]["default"] for p in params if p[0] == name), None)


def test_pinned_dag_is_built_from_its_version_and_a_rollout_moves_it(
    tmp_path: Path, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last_valid = tmp_path / "last_valid"
    include = write_include(
        tmp_path / "include",
        {"sync": _version("2", "threshold", renames={"config": {"limit": "threshold"}})},
        {
            "ver_pinned": minimal_customer("ver_pinned", version="1", config={"region": "eu", "limit": 7}),
            "ver_current": minimal_customer("ver_current"),
        },
    )
    versions = include / "integrations" / "versions" / "sync"
    versions.mkdir(parents=True)
    (versions / "1.yaml").write_text(yaml.safe_dump(_version("1", "limit")), encoding="utf-8")

    _reserialize(include, last_valid)
    before = _dags("ver_")
    assert set(before) == {PINNED, CURRENT}
    assert not any(d["stale"] or d["import_errors"] for d in before.values())
    assert (before[PINNED]["label"], _param(PINNED, "limit"), _param(PINNED, "threshold")) == ("v1", 7, None)
    assert (before[CURRENT]["label"], _param(CURRENT, "threshold")) == ("v2", 10)
    assert "b2b_config_problems.py" not in _import_errors()
    # A task of the pinned DAG builds it from version 1 as well (the task-parse path reads the version).
    assert _task_parse_labels(include, last_valid, {PINNED, CURRENT}, monkeypatch) == {
        PINNED: "v1",
        CURRENT: "v2",
    }
    assert (last_valid / "integrations" / "versions" / "sync" / "1.yaml").is_file()

    plan = plan_rollout(include, "sync", "2", customers=["ver_pinned"])
    assert plan.ok and [i.settings["config"] for i in plan.items] == [{"region": "eu", "threshold": 7}]
    outcomes = apply_rollout(InstanceStore(include, History(tmp_path / "history")), plan, actor="test")
    assert [o.applied for o in outcomes] == [True]

    _reserialize(include, last_valid)
    after = _dags("ver_")
    assert set(after) == {PINNED, CURRENT}  # same DAG ids, none stale
    assert not any(d["stale"] or d["import_errors"] for d in after.values())
    assert (after[PINNED]["label"], _param(PINNED, "threshold"), _param(PINNED, "limit")) == ("v2", 7, None)
    assert _task_parse_labels(include, last_valid, {PINNED}, monkeypatch) == {PINNED: "v2"}
