"""One customer's broken file never stops another, through Airflow's own parse-and-store path.

``airflow dags reserialize`` parses the DAG folder in a separate process and writes what it found to the
metadata DB exactly as the dag-processor does (``update_dag_parsing_results_in_db``), including the step
that marks every DAG of a file with an import error as stale. Each kind of broken file is dropped into a
deployment that was valid, and the DB must then show: every DAG still active (the broken customers on their
last valid version), the problems listed with file, line and key path as the problems file's import error,
and no import error on the factory file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import minimal_customer, minimal_template, write_include

pytestmark = pytest.mark.e2e

AIRFLOW = str(Path(sys.executable).parent / "airflow")
BUNDLE = "dags-folder"
PROBLEMS_FILE = "b2b_config_problems.py"

# Each customer's file is valid first, then broken in one way. Values are raw YAML (what a person types).
BROKEN: dict[str, str] = {
    "iso_unknown_key": "id: iso_unknown_key\nname: X\nintegrashuns: {}\nintegrations:\n  sync:\n"
    "    config: {region: eu}\n    connections: {db: acme_db}\n",
    "iso_yaml_syntax": "id: iso_yaml_syntax\nname: X\nintegrations:\n  sync: {config: {region: eu\n",
    "iso_duplicate_key": "id: iso_duplicate_key\nname: X\nname: Y\nintegrations:\n  sync:\n"
    "    config: {region: eu}\n    connections: {db: acme_db}\n",
    "iso_bad_cron": "id: iso_bad_cron\nname: X\nintegrations:\n  sync:\n    config: {region: eu}\n"
    "    connections: {db: acme_db}\n    flows:\n      snapshot: {schedule: '61 * * * *'}\n",
    "iso_unknown_integration": "id: iso_unknown_integration\nname: X\nintegrations:\n  sinc:\n"
    "    config: {region: eu}\n    connections: {db: acme_db}\n",
    "iso_missing_required": "id: iso_missing_required\nname: X\nintegrations:\n  sync:\n"
    "    config: {threshold: 3}\n    connections: {db: acme_db}\n",
    "iso_wrong_type": "id: iso_wrong_type\nname: X\nintegrations:\n  sync:\n"
    "    config: {region: eu, threshold: ten}\n    connections: {db: acme_db}\n",
}
# Where each problem must be pointed at: (file, line, key path) as the problems file prints them.
EXPECTED_PROBLEM = {
    "iso_unknown_key": ("iso_unknown_key.yaml:3", "integrashuns: unknown key"),
    "iso_yaml_syntax": ("iso_yaml_syntax.yaml:", "<document>: invalid YAML"),
    "iso_duplicate_key": ("iso_duplicate_key.yaml:3", "name: duplicate key"),
    "iso_bad_cron": ("iso_bad_cron.yaml:8", "integrations.sync.flows.snapshot.schedule: invalid cron"),
    "iso_unknown_integration": ("iso_unknown_integration.yaml:4", "integrations.sinc: unknown integration"),
    "iso_missing_required": ("iso_missing_required.yaml:5", "missing required value 'region'"),
    "iso_wrong_type": ("iso_wrong_type.yaml:5", "integrations.sync.config.threshold: expected integer"),
}
HEALTHY = ("iso_ok_one", "iso_ok_two")
TEMPLATE_USER = "iso_tpl_user"  # uses the template "other", which breaks in step two


def _customer(customer_id: str, integration: str = "sync", label: str = "v1") -> dict[str, Any]:
    return minimal_customer(customer_id, integration, config={"region": "eu", "label": label})


def _reserialize(include: Path, last_valid: Path) -> None:
    env = {
        **os.environ,
        "B2B_INCLUDE_DIR": str(include),
        "B2B_LAST_VALID_DIR": str(last_valid),
        # Airflow skips rewriting a DAG serialized less than 30 s ago; these passes follow each other.
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
        # The subject is isolation, not parse speed: on a loaded CI machine the default 30 s import timeout
        # would turn a slow parse into an import error of the factory file (every DAG stale).
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    }
    env.pop("B2B_STRICT", None)
    done = subprocess.run(
        [AIRFLOW, "dags", "reserialize", "-B", BUNDLE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _dags(prefix: str = "iso_") -> dict[str, dict[str, Any]]:
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(
                DagModel.dag_id,
                DagModel.is_stale,
                DagModel.has_import_errors,
                DagModel.next_dagrun_create_after,
            ).where(DagModel.bundle_name == BUNDLE, DagModel.dag_id.startswith(prefix))
        ).all()
        result = {}
        for dag_id, stale, import_errors, next_create in rows:
            serialized = SerializedDagModel.get(dag_id, session=session)
            params = serialized.data["dag"]["params"] if serialized else []
            label = next((p[1]["default"] for p in params if p[0] == "label"), None)
            result[dag_id] = {
                "stale": stale,
                "import_errors": import_errors,
                "schedulable": next_create is not None,
                "label": label,
            }
        return result


def _import_errors() -> dict[str, str]:
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(ParseImportError.filename, ParseImportError.stacktrace).where(
                ParseImportError.bundle_name == BUNDLE
            )
        ).all()
    return {filename: stacktrace for filename, stacktrace in rows}


def _task_parse_labels(
    include: Path, last_valid: Path, dag_ids: set[str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """What a task process of each DAG builds (Airflow's parsing context set to that DAG): the label."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_LAST_VALID_DIR", str(last_valid))
    labels = {}
    for dag_id in sorted(dag_ids):
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
        bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
        assert set(bag.dags) <= {dag_id} and bag.import_errors == {}
        labels[dag_id] = bag.dags[dag_id].params["label"] if dag_id in bag.dags else None
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    return labels


@pytest.fixture(params=[1, 3], ids=["one-file", "3-shards"])
def shards(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Both layouts: every customer in the factory file, and customers spread over 3 shard files."""
    monkeypatch.setenv("B2B_SHARDS", str(request.param))
    return request.param


def _files_holding_dags(prefix: str = "iso_") -> set[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(
            session.scalars(
                select(DagModel.relative_fileloc).where(
                    DagModel.bundle_name == BUNDLE, DagModel.dag_id.startswith(prefix)
                )
            )
        )


def test_every_kind_of_broken_file_spares_every_other_dag(
    tmp_path: Path, airflow_db: str, monkeypatch: pytest.MonkeyPatch, shards: int
) -> None:
    last_valid = tmp_path / "last_valid"
    customers: dict[str, Any] = {name: _customer(name) for name in (*HEALTHY, *BROKEN)}
    customers[TEMPLATE_USER] = _customer(TEMPLATE_USER, "other")
    include = write_include(
        tmp_path / "include", {"sync": minimal_template(), "other": minimal_template("other")}, customers
    )
    _reserialize(include, last_valid)
    before = _dags()
    expected = {f"{name}__{'other' if name == TEMPLATE_USER else 'sync'}__snapshot" for name in customers}
    assert set(before) == expected
    assert not any(d["stale"] for d in before.values())
    assert PROBLEMS_FILE not in _import_errors()
    assert len(_files_holding_dags()) == shards

    # Every kind of breakage at once, a broken template, and a new customer whose file never was valid.
    for name, text in BROKEN.items():
        (include / "customers" / f"{name}.yaml").write_text(text, encoding="utf-8")
    other = minimal_template("other")
    other["flows"]["snapshot"]["steps"][1]["kind"] = "lode"
    (include / "integrations" / "other.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    (include / "customers" / "iso_newcomer.yaml").write_text(
        "id: iso_newcomer\nname: New\nintegrations:\n  sync:\n    config: {region: moon}\n", encoding="utf-8"
    )
    # And a healthy customer changes its config at the same time: the change must apply.
    write_include(include, customers={"iso_ok_two": _customer("iso_ok_two", label="v2")})
    # A new template with one broken flow (no valid version yet): its other flow is built all the same.
    fresh = minimal_template("fresh")
    fresh["flows"]["broken"] = {**fresh["flows"]["snapshot"], "steps": [{**fresh["flows"]["snapshot"]["steps"][0], "callable": "os.system"}]}  # fmt: skip
    write_include(include, {"fresh": fresh}, {"freshco": _customer("freshco", "fresh")})
    _reserialize(include, last_valid)
    # Not matched by "iso_%" (SQL LIKE): the next layout's run starts on this DB, with this DAG still in it.
    assert {k: v["stale"] for k, v in _dags("freshco").items()} == {"freshco__fresh__snapshot": False}

    after = _dags()
    assert set(after) == expected, "no DAG may disappear; the newcomer has no valid version yet"
    stale = sorted(dag_id for dag_id, d in after.items() if d["stale"] or d["import_errors"])
    assert stale == []
    assert all(d["schedulable"] for d in after.values())
    assert after["iso_ok_two__sync__snapshot"]["label"] == "v2"
    assert after["iso_wrong_type__sync__snapshot"]["label"] == "v1"  # the last valid version runs
    # A task of each DAG builds it from the same files as the DAG the DB holds (last valid copies included).
    assert _task_parse_labels(include, last_valid, expected, monkeypatch) == {
        dag_id: d["label"] for dag_id, d in after.items()
    }

    errors = _import_errors()
    assert set(errors) == {PROBLEMS_FILE}  # no DAG file (shard) has an import error
    problems = errors[PROBLEMS_FILE]
    for name, (where, what) in EXPECTED_PROBLEM.items():
        line = next((ln for ln in problems.splitlines() if f"customers/{where}" in ln and what in ln), None)
        assert line is not None, f"{name}: no problem line with {where!r} and {what!r} in:\n{problems}"
        assert f"customers/{name}.yaml: <document>: this customer's integrations keep running on" in problems
    assert (
        "integrations/other.yaml:" in problems
        and "flows.snapshot.steps[1].kind: unknown kind 'lode'; expected one of 'transform', 'load'"
        in problems
    )
    assert "integrations/other.yaml: <document>: its flows keep running on the last valid version" in problems
    assert "customers/iso_newcomer.yaml:5: integrations.sync.config.region: expected one of" in problems
    assert (
        "integrations/fresh.yaml:" in problems
        and "flows.broken.steps[0].callable: callable 'os.system'" in problems
    )

    # Fixing a file applies it and clears its problem.
    write_include(include, customers={"iso_wrong_type": _customer("iso_wrong_type", label="v3")})
    _reserialize(include, last_valid)
    assert _dags()["iso_wrong_type__sync__snapshot"]["label"] == "v3"
    assert "iso_wrong_type" not in _import_errors()[PROBLEMS_FILE]


def test_problems_clear_when_every_file_is_fixed(tmp_path: Path, airflow_db: str, shards: int) -> None:
    """The problems file's import error goes away once nothing is wrong (no stale error left behind)."""
    last_valid = tmp_path / "last_valid"
    name = f"fix_me_s{shards}"  # one metadata DB for the session: each layout its own customer
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template()},
        {name: f"id: {name}\nname: X\nintegrations: {{sync: {{config: {{region: mars}}}}}}\n"},
    )
    _reserialize(include, last_valid)
    assert f"{name}.yaml" in _import_errors()[PROBLEMS_FILE]
    assert _dags(name) == {}
    write_include(include, customers={name: _customer(name)})
    _reserialize(include, last_valid)
    assert PROBLEMS_FILE not in _import_errors()
    assert set(_dags(name)) == {f"{name}__sync__snapshot"}
    assert sorted(os.listdir(last_valid / "customers")) == [f"{name}.yaml"]


def test_a_shard_holding_too_many_customers_is_named_and_its_dags_stay(
    tmp_path: Path, airflow_db: str, monkeypatch: pytest.MonkeyPatch, shards: int
) -> None:
    """A shard over ``B2B_MAX_CUSTOMERS_PER_SHARD`` is a problem of the problems file, with the B2B_SHARDS to
    set; its DAGs are still registered (the count warns before a parse is killed at the timeout, which
    Airflow would record as nothing at all)."""
    from b2b_integrations.factory.shards import customers_per_shard, shard_file

    last_valid = tmp_path / "last_valid"
    names = [f"crowd{shards}_{i}" for i in range(7)]  # one metadata DB for the session: each layout its own
    include = write_include(
        tmp_path / "include", {"sync": minimal_template()}, {n: _customer(n) for n in names}
    )
    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "2")
    _reserialize(include, last_valid)
    errors = _import_errors()
    assert set(errors) == {PROBLEMS_FILE}
    oversized = {shard: size for shard, size in customers_per_shard(include, shards).items() if size > 2}
    assert oversized  # 7 customers in at most 3 shards
    for shard, size in oversized.items():
        assert (
            f"{shard_file(shard)}: <document>: holds {size} customers, more than B2B_MAX_CUSTOMERS_PER_SHARD=2"
            in errors[PROBLEMS_FILE]
        )
    # 7 customers, at most 2 each with a fifth of headroom: 5 shard files.
    assert f"set B2B_SHARDS to 5 (now {shards})" in errors[PROBLEMS_FILE]
    dags = _dags(f"crowd{shards}_")
    assert set(dags) == {f"{n}__sync__snapshot" for n in names}
    assert not any(d["stale"] or d["import_errors"] for d in dags.values())

    monkeypatch.setenv("B2B_MAX_CUSTOMERS_PER_SHARD", "7")
    _reserialize(include, last_valid)
    assert PROBLEMS_FILE not in _import_errors()
