"""DAG integrity: the shipped factory file parses without import errors, every DAG serializes, and a
broken config file becomes an import error of the problems file (which holds no DAG), naming file, line and
key path, while the factory file loads every other DAG without an import error."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO, minimal_customer, minimal_template, write_include

DAGS = REPO / "dags"


def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_shipped_dags_parse_and_serialize() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    bag = dagbag()
    assert bag.import_errors == {}
    assert {
        "acme__inventory_sync__snapshot",
        "acme__crm_contacts__contacts",
        "acme__crm_contacts__invoices",
    } <= set(bag.dags)
    from b2b_integrations.config.loader import load_project
    from b2b_integrations.factory.planner import plan_project

    assert set(bag.dags) == {plan.dag_id for plan in plan_project(load_project(REPO / "include"))}
    for dag in bag.dags.values():
        data = DagSerialization.to_dict(dag)
        restored = DagSerialization.from_dict(data)
        assert restored.dag_id == dag.dag_id
        assert [t.task_id for t in restored.tasks] == [t.task_id for t in dag.tasks]


def test_generated_dag_shape() -> None:
    dag = dagbag().dags["acme__inventory_sync__snapshot"]
    assert set(dag.tags) == {"customer:acme", "integration:inventory_sync", "pattern:custom", "tier:gold"}
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.default_args["retries"] == 2
    assert [t.task_id for t in dag.topological_sort()] == ["fetch_levels", "flag_low_stock", "load_levels"]
    assert dag.params["low_stock_threshold"] == 12
    # The manual-run form validates against the template's declaration (minimum: 0).
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param("low_stock_threshold").resolve(-1)
    assert dag.params.get_param("low_stock_threshold").resolve(5) == 5
    assert "Acme Corporation" in dag.doc_md
    assert dag.task_dict["load_levels"].outlets  # feeds the low_stock_alerts flow


def test_broken_files_surface_as_import_error_and_spare_other_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template(), "broken_tpl": "name: broken_tpl\nflows: [\n"},
        {
            "acme": minimal_customer("acme"),
            "globex": minimal_customer("globex", config={"region": "eu", "threshold": "ten"}),
            "initech": "id: initech\nname: Initech\nintegrations:\n  broken_tpl: {}\n",
        },
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    bag = dagbag()
    assert sorted(bag.dags) == ["acme__sync__snapshot"]
    # The factory file has no import error: Airflow would mark every DAG in it stale.
    assert list(bag.import_errors) == [str(DAGS / "b2b_config_problems.py")]
    error = next(iter(bag.import_errors.values()))
    assert "include/customers/globex.yaml:" in error
    assert "integrations.sync.config.threshold: expected integer, got str 'ten'" in error
    assert "include/integrations/broken_tpl.yaml:3: <document>: invalid YAML" in error
    assert (
        "include/customers/initech.yaml:4: integrations.broken_tpl: integration template 'broken_tpl' is invalid"
        in error
    )


def test_strict_mode_fails_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template()},
        {"acme": minimal_customer("acme"), "globex": minimal_customer("globex", config={})},
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_STRICT", "1")
    bag = dagbag()
    assert bag.dags == {}
    factory_error = bag.import_errors[str(DAGS / "b2b_integrations_dags.py")]
    assert "missing required value 'region'" in factory_error


def test_plugin_is_registered_once_without_import_errors() -> None:
    import sys

    from airflow import plugins_manager

    plugins, import_errors = plugins_manager._get_plugins()
    ours = [p for p in plugins if p.name == "b2b_integrations"]
    assert import_errors == {}
    assert len(ours) == 1
    assert str(ours[0].source).endswith("b2b_integrations_plugin.py")
    assert ours[0].fastapi_apps[0]["url_prefix"] == "/b2b"
    # .airflowignore keeps the loader out of the package: none of its files became a top-level module.
    package = REPO / "plugins" / "b2b_integrations"
    package_files = {p.stem for p in package.rglob("*.py")} - {"__init__", "__main__"}
    # Compared by file, not by name: a real top-level module may share a name (py-amqp's `amqp`).
    leaked = {
        name
        for name in package_files & set(sys.modules)
        if Path(getattr(sys.modules[name], "__file__", None) or "/").resolve().is_relative_to(package)
    }
    assert leaked == set()


@pytest.mark.e2e
def test_import_error_and_good_dags_both_reach_the_metadata_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    """What the UI shows: the problems file's import error lists the problem, the valid DAGs are stored and
    active (the factory file has no import error, so Airflow marks none of its DAGs stale)."""
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from sqlalchemy import select

    include = write_include(
        tmp_path / "include",
        {"sync": minimal_template()},
        {"dbok": minimal_customer("dbok"), "dbbad": minimal_customer("dbbad", config={"region": "mars"})},
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    from airflow.models.dagbundle import DagBundleModel

    with create_session() as session:
        session.merge(DagBundleModel(name="b2b-test-bundle"))
    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS, bundle_name="b2b-test-bundle")
    sync_bag_to_db(bag, "b2b-test-bundle", None)
    with create_session() as session:
        errors = session.scalars(
            select(ParseImportError).where(ParseImportError.bundle_name == "b2b-test-bundle")
        ).all()
        stored = session.execute(
            select(DagModel.dag_id, DagModel.is_stale).where(DagModel.bundle_name == "b2b-test-bundle")
        ).all()
    assert [e.filename for e in errors] == ["b2b_config_problems.py"]
    assert "include/customers/dbbad.yaml:" in errors[0].stacktrace
    assert "integrations.sync.config.region: expected one of ['eu', 'us'], got 'mars'" in errors[0].stacktrace
    assert [tuple(row) for row in stored] == [("dbok__sync__snapshot", False)]
