"""Record-level checks of the load step (declared SQL columns, key fields) and the transient/poison split."""

from __future__ import annotations

import sqlite3

import pytest

from b2b_integrations.errors import FatalStepError, RetriableStepError, is_transient
from b2b_integrations.formats.validation import sql_record_checker
from b2b_integrations.operators.base import unportable_value

COLUMNS = {
    "id": "VARCHAR(8)",
    "qty": "INTEGER",
    "total": "NUMERIC(5,2)",
    "paid": "BOOLEAN",
    "day": "DATE",
    "meta": "JSONB",
}


@pytest.mark.parametrize(
    ("record", "problems"),
    [
        ({"id": "A1", "qty": 3, "total": 999.99, "paid": True, "day": "2026-01-31"}, []),
        ({"id": "A1", "qty": 3.0, "total": "12.5", "paid": "yes"}, []),  # the database converts these
        ({"qty": 1}, [("id", "field 'id' is required")]),
        ({"id": float("nan")}, [("id", "field 'id' is required")]),  # pandas' missing value
        ({"id": "   "}, [("id", "field 'id' is required")]),
        ({"id": "TOO-LONG-1"}, [("id", "field 'id': 'TOO-LONG-1' is longer than 8 characters")]),
        ({"id": "A1", "qty": 2**31}, [("qty", "field 'qty': 2147483648 is out of range for INTEGER")]),
        ({"id": "A1", "qty": "3x"}, [("qty", "field 'qty': expected integer, got '3x'")]),
        ({"id": "A1", "total": 1000}, [("total", "field 'total': 1000.0 has more than 3 integer digits (NUMERIC(5,2))")]),
        ({"id": "A1", "total": float("inf")}, [("total", "field 'total': expected number, got inf")]),
        ({"id": "A1", "paid": "maybe"}, [("paid", "field 'paid': expected boolean, got 'maybe'")]),
        ({"id": "A1", "day": "31.01.2026"}, [("day", "field 'day': expected date, got '31.01.2026'")]),
        ({"id": {"nested": 1}}, [("id", "field 'id': expected one VARCHAR(8) value, got dict")]),
        ({"id": "A1", "meta": {"any": ["thing"]}}, []),  # a type we do not know: the database decides
    ],
)  # fmt: skip
def test_each_record_is_checked_against_the_declared_columns_and_key(
    record: dict[str, object], problems: list[tuple[str, str]]
) -> None:
    assert sql_record_checker(COLUMNS, ["id"])(record) == problems


def test_without_declared_columns_only_the_key_is_required() -> None:
    check = sql_record_checker(None, ["tenant", "id"])
    assert check({"tenant": "t", "id": 0, "anything": float("nan")}) == []
    assert check({"tenant": None, "id": 7}) == [("tenant", "field 'tenant' is required")]


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        ({"a": 1, "b": [1.5, {"c": 2**63 - 1}]}, None),
        ({"a": {"b": [1, float("nan")]}}, ("a.b[1]", "field 'a.b[1]': nan is not a finite number")),
        ({"amount": -(2**63) - 1}, ("amount", f"field 'amount': integer {-(2**63) - 1} does not fit in 64 bits")),
        (float("inf"), ("(body)", "field '(body)': inf is not a finite number")),
    ],
)  # fmt: skip
def test_values_no_step_can_carry_are_found_with_their_path(payload: object, found: object) -> None:
    assert unportable_value(payload) == found


class ConnectionRefused(ConnectionError):
    pass


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (RetriableStepError("429"), True),
        (ConnectionRefused(), True),
        (TimeoutError(), True),
        (sqlite3.OperationalError("database is locked"), True),
        (FatalStepError("records lack field(s) ['id']"), False),
        (ValueError("unknown currency GBP"), False),
        (KeyError("invoice_id"), False),
        (ZeroDivisionError(), False),
    ],
)
def test_transient_failures_are_told_from_poison(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_replay_never_queues_a_body_the_scheduler_or_the_api_cannot_handle() -> None:
    from b2b_integrations.replay.quarantine import unqueueable

    deep: object = 1
    for _ in range(65):
        deep = [deep]
    assert unqueueable({"a": {"b": [1, 2]}}) is None
    assert unqueueable(None) is None  # a body kept in the state store: the event holds only its key
    assert unqueueable({"x": deep}) == "nested deeper than 64 levels"
    assert unqueueable({"x": float("nan")}) == "field 'x': nan is not a finite number"
