"""``validate`` catches what a run would hit beyond the files: callables that do not import (checked in a
subprocess) and, with ``--check-connections``, connection ids this deployment does not define."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from b2b_integrations.cli import main
from helpers import minimal_customer, minimal_template, write_include


def _include(tmp_path: Path, callable_path: str, **customers: str) -> Path:
    template = minimal_template()
    template["flows"]["snapshot"]["steps"][0]["callable"] = callable_path
    return write_include(
        tmp_path / "include",
        {"sync": template},
        {name: minimal_customer(name, connections={"db": conn_id}) for name, conn_id in customers.items()},
    )


def test_a_callable_missing_from_an_allowed_package_is_an_error_naming_its_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    include = _include(
        tmp_path, "b2b_integrations.transforms.demo.generate_inventoryy", acme="acme_db", globex="globex_db"
    )
    assert main(["validate", str(include)]) == 1
    out = capsys.readouterr().out
    assert (
        "error: include/integrations/sync.yaml:26: flows.snapshot.steps[0].callable: "
        "'b2b_integrations.transforms.demo' has no callable named 'generate_inventoryy'; "
        "the DAGs of customer(s) acme, globex would fail at this step at run time"
    ) in out
    assert main(["validate", str(include), "--no-import-check"]) == 0


def test_a_module_that_fails_to_import_is_reported_without_running_in_the_cli_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "plugins" / "b2b_transforms"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stock.py").write_text(
        "import os\nos.environ['B2B_IMPORTED_HERE'] = '1'\nraise RuntimeError('boom')\n"
    )
    monkeypatch.delenv("AIRFLOW__CORE__PLUGINS_FOLDER", raising=False)
    include = _include(tmp_path, "b2b_transforms.stock.add_reorder_qty", acme="acme_db")
    assert main(["validate", str(include)]) == 1
    out = capsys.readouterr().out
    assert "flows.snapshot.steps[0].callable: RuntimeError: boom; the DAGs of customer(s) acme" in out
    assert "B2B_IMPORTED_HERE" not in os.environ
    assert "b2b_transforms" not in sys.modules


def test_check_connections_names_the_ids_this_deployment_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ACME_DB", '{"conn_type": "sqlite", "host": "/tmp/acme.db"}')
    include = _include(
        tmp_path,
        "b2b_integrations.transforms.demo.generate_inventory",
        acme="acme_db",
        globex="globex_app_db",
    )
    assert main(["validate", str(include)]) == 0  # not asked: connections are the deployment's business
    assert main(["validate", str(include), "--check-connections"]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: include/customers/globex.yaml:8: integrations.sync.connections.db: connection id 'globex_app_db' "
        "is not defined in this deployment (Airflow connections, AIRFLOW_CONN_GLOBEX_APP_DB, secrets backends); "
        "create it, e.g. airflow connections add globex_app_db --conn-uri "
        "'postgres://USER:PASSWORD@HOST:PORT/SCHEMA'"
    ]
