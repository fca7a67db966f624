"""Pure helpers: schedules, references, SQL statements, staging paths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from b2b_integrations.config.references import iter_references, resolve
from b2b_integrations.config.schedules import parse_schedule
from b2b_integrations.sinks.sql import SqlStatementError, create_table_statement, insert_statement
from b2b_integrations.staging import read_records, stage_path, write_records


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("@daily", "@daily"),
        ("*/5 * * * *", "*/5 * * * *"),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_parse_schedule(expr: str, expected: object) -> None:
    assert parse_schedule(expr) == expected


@pytest.mark.parametrize("expr", ["0m", "5 * * *", "99 * * * *", "@sometimes", "daily", "15 minutes"])
def test_parse_schedule_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expr)


def test_references() -> None:
    value = {"a": "${config.n}", "b": ["x-${customer.id}", "{{ ds }}"], "c": "${oops}"}
    assert list(iter_references(value)) == [
        (("a",), "config", "n"),
        (("b", 0), "customer", "id"),
        (("c",), "", "${oops}"),
    ]
    scopes = {"config": {"n": 5}, "customer": {"id": "acme"}, "connections": {}}
    assert resolve({"a": "${config.n}", "b": ["x-${customer.id}", "{{ ds }}"]}, scopes) == {
        "a": 5,
        "b": ["x-acme", "{{ ds }}"],
    }


def test_upsert_statements_per_dialect() -> None:
    pg = insert_statement("postgres", "s.t", ["id", "a", "b"], ["id"], True, "%s")
    assert (
        pg == "INSERT INTO s.t AS b2b_target (id, a, b) VALUES (%s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET a = excluded.a, b = excluded.b"
    )
    lite = insert_statement("sqlite", "t", ["id", "a"], ["id"], True, "?")
    assert lite.endswith("VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET a = excluded.a")
    assert insert_statement("mysql", "t", ["id", "a"], ["id"], True, "%s").endswith(
        "ON DUPLICATE KEY UPDATE a = VALUES(a)"
    )
    assert insert_statement("postgres", "t", ["id"], ["id"], True, "%s").endswith("DO NOTHING")
    assert (
        insert_statement("postgres", "t", ["id", "a"], [], False, "%s")
        == "INSERT INTO t (id, a) VALUES (%s, %s)"
    )


def test_conflict_rules_make_the_upsert_conditional_and_keep_app_owned_columns() -> None:
    from b2b_integrations.sinks.sql import ConflictRule, SqlStatementError

    rule = ConflictRule(last_writer_by="updated_at", app_owned=("phone",))
    sql = insert_statement(
        "postgres", "contacts", ["id", "name", "phone", "updated_at"], ["id"], True, "%s", rule=rule
    )
    assert sql.endswith(
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
        "WHERE b2b_target.updated_at IS NULL OR excluded.updated_at > b2b_target.updated_at"
    )
    with pytest.raises(SqlStatementError, match="need postgres or sqlite"):
        insert_statement("mysql", "t", ["id", "phone", "updated_at"], ["id"], True, "%s", rule=rule)
    with pytest.raises(SqlStatementError, match="conflict.last_writer_by column 'updated_at' is not among"):
        insert_statement("sqlite", "t", ["id", "phone"], ["id"], True, "?", rule=rule)
    # An app-owned column the step does not load is simply left alone.
    assert insert_statement("sqlite", "t", ["id", "updated_at"], ["id"], True, "?", rule=rule).endswith(
        "DO UPDATE SET updated_at = excluded.updated_at "
        "WHERE b2b_target.updated_at IS NULL OR excluded.updated_at > b2b_target.updated_at"
    )


def test_last_writer_rule_on_a_real_sqlite_table() -> None:
    import sqlite3

    from b2b_integrations.sinks.sql import ConflictRule

    rule = ConflictRule(last_writer_by="updated_at", app_owned=("phone",))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, name TEXT, phone TEXT, updated_at TEXT)")
    sql = insert_statement("sqlite", "c", ["id", "name", "phone", "updated_at"], ["id"], True, "?", rule=rule)
    db.execute(sql, (1, "Ann", "111", "2026-11-29T10:00:00Z"))
    db.execute(sql, (1, "Ann (stale)", "222", "2026-11-29T09:00:00Z"))  # older: ignored
    db.execute(sql, (1, "Ann (echo)", "222", "2026-11-29T10:00:00Z"))  # same time (an echo): ignored
    assert db.execute("SELECT name, phone FROM c").fetchall() == [("Ann", "111")]
    db.execute(sql, (1, "Anne", "333", "2026-11-29T11:00:00Z"))  # newer: wins, but phone is the app's
    assert db.execute("SELECT name, phone, updated_at FROM c").fetchall() == [
        ("Anne", "111", "2026-11-29T11:00:00Z")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("postgres", "t; drop", ["a"], [], False, "%s"), "invalid table name"),
        (("postgres", "t", ["a b"], [], False, "%s"), "cannot be SQL column names"),
        (("oracle", "t", ["a"], ["a"], True, ":1"), "not supported for connection type 'oracle'"),
        (("postgres", "t", ["a"], ["id"], True, "%s"), "key column(s) ['id']"),
    ],
)
def test_statement_errors(args: tuple, message: str) -> None:
    with pytest.raises(
        SqlStatementError,
        match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        insert_statement(*args)


def test_create_table_statement() -> None:
    assert (
        create_table_statement("t", {"id": "VARCHAR(10)", "n": "NUMERIC(10, 2)"}, ["id"])
        == "CREATE TABLE IF NOT EXISTS t (id VARCHAR(10), n NUMERIC(10, 2), PRIMARY KEY (id))"
    )
    with pytest.raises(SqlStatementError, match="unsupported SQL type"):
        create_table_statement("t", {"id": "INT); DROP TABLE x; --"}, [])


def test_staging_round_trip_and_safe_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path))
    path = stage_path("acme", "crm", "contacts", "manual__2025-01-01T00:00:00+00:00", "../../etc")
    assert path.is_relative_to(tmp_path) and ".." not in path.parts
    frame = pd.DataFrame(
        [{"id": 1, "name": "Zoë", "when": "2025-01-01"}, {"id": 2, "name": None, "when": "x"}]
    )
    ref = write_records(frame, path)
    assert ref["rows"] == 2 and ref["columns"] == ["id", "name", "when"]
    back = read_records(ref)
    assert back.to_dict(orient="records")[0] == {"id": 1, "name": "Zoë", "when": "2025-01-01"}
    empty = write_records(pd.DataFrame(columns=["id"]), path)  # a retry overwrites, never appends
    assert read_records(empty).empty and list(read_records(empty).columns) == ["id"]
