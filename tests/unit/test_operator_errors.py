"""Operator error messages name customer, integration, flow and step, and never ask for a retry."""

from __future__ import annotations

import pandas as pd
import pytest

from b2b_integrations.callables import import_callable
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.sql_load import SqlLoadOperator, rows_for_insert

WHERE = {"customer_id": "acme", "integration": "crm", "flow": "contacts"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nodots", "must be a dotted path"),
        ("b2b_integrations.transforms.nope.fn", "cannot import module 'b2b_integrations.transforms.nope'"),
        ("b2b_integrations.transforms.demo.nope", "has no callable named 'nope'"),
        ("b2b_integrations.transforms.demo:generate_inventory", None),
    ],
)
def test_import_callable(path: str, message: str | None) -> None:
    if message is None:
        assert import_callable(path).__name__ == "generate_inventory"
        return
    with pytest.raises(FatalStepError, match=message):
        import_callable(path)


def test_load_names_missing_fields_and_table() -> None:
    op = SqlLoadOperator(
        task_id="load",
        conn_id="db",
        target={"table": "contacts", "key": ["id"], "columns": {"id": "INT", "email": "TEXT"}},
        **WHERE,
    )
    with pytest.raises(FatalStepError, match=r"records lack field\(s\) \['email'\] needed by table contacts"):
        op._fields(pd.DataFrame([{"id": 1}]), op._checked_target())


def test_rows_for_insert_uses_native_values_and_nulls() -> None:
    frame = pd.DataFrame([{"a": 1, "b": float("nan"), "c": "x"}, {"a": 2, "b": 2.5, "c": None}])
    rows = rows_for_insert(frame, ["a", "b", "c"])
    assert rows == [(1, None, "x"), (2, 2.5, None)]
    assert type(rows[0][0]) is int
