"""A generated DAG runs for real: dag.test() against the migrated metadata DB, loading into PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import PG, minimal_customer, minimal_template, pg_rows, shipped_template, write_include

pytestmark = pytest.mark.e2e


def test_inventory_snapshot_runs_and_rerun_does_not_duplicate(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    template = shipped_template("inventory_sync")
    customer = {
        "id": "runco",
        "name": "Run Co",
        "integrations": {
            "inventory_sync": {
                "config": {"sku_count": 30, "low_stock_threshold": 20},
                "connections": {"warehouse_db": "runco_wh"},
            }
        },
    }
    include = write_include(tmp_path / "include", {"inventory_sync": template}, {"runco": customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_RUNCO_WH", f"{PG}/{pg_db}")

    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["runco__inventory_sync__snapshot"]

    first = dag.test()
    assert first.state == "success"
    rows = pg_rows(pg_db, "SELECT customer_id, sku, on_hand, low_stock FROM inventory_levels ORDER BY sku")
    assert len(rows) == 30
    assert {r[0] for r in rows} == {"runco"}
    assert all(r[3] == (r[2] < 20) for r in rows)

    # The flow fed by this one's output receives the loaded rows through the asset event.
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        extras = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "b2b://runco/inventory_sync/snapshot/output")
        ).all()
    assert len(extras) == 1
    staged = extras[0]["b2b_staged"]
    assert staged["rows"] == 30 and Path(staged["path"]).is_file()

    second = dag.test()  # same period again: upsert by key, nothing duplicated
    assert second.state == "success"
    assert pg_rows(pg_db, "SELECT count(*) FROM inventory_levels") == [(30,)]

    # A manual run with edited params (the UI's trigger form) uses them instead of the customer's values.
    third = dag.test(run_conf={"sku_count": 33, "low_stock_threshold": 0})
    assert third.state == "success"
    assert pg_rows(pg_db, "SELECT count(*), count(*) FILTER (WHERE low_stock) FROM inventory_levels") == [
        (33, 0)
    ]


def test_a_manual_runs_params_reach_a_reference_inside_the_load_target(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load's table options reach its operator as one ``target``: a ``${config.*}`` inside it (here a
    column type) is filled in from the run's params like any other option, not left as the customer's."""
    from airflow.dag_processing.dagbag import DagBag

    template = minimal_template()
    template["flows"]["snapshot"]["steps"][1].update(
        create_table=True,
        key=["customer_id", "sku"],
        columns={
            "customer_id": "TEXT",
            "sku": "VARCHAR(${config.threshold})",
            "on_hand": "INTEGER",
            "as_of": "TEXT",
        },
    )
    customer = minimal_customer("targetco", config={"region": "eu", "threshold": 12})
    customer["integrations"]["sync"]["connections"] = {"db": "targetco_db"}
    include = write_include(tmp_path / "include", {"sync": template}, {"targetco": customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_TARGETCO_DB", f"{PG}/{pg_db}")

    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["targetco__sync__snapshot"].test(run_conf={"threshold": 40})
    assert run.state == "success"
    width = (
        "SELECT character_maximum_length FROM information_schema.columns "
        "WHERE table_name = 'levels' AND column_name = 'sku'"
    )
    assert pg_rows(pg_db, width) == [(40,)]  # the run's value, not the customer's 12
    assert pg_rows(pg_db, "SELECT count(*), min(customer_id), max(customer_id) FROM levels") == [
        (5, "targetco", "targetco")
    ]
