"""Which remote files an import takes: pure selection rules, no server."""

from __future__ import annotations

import pytest

from b2b_integrations.sources.files import (
    RemoteFile,
    matches,
    ready_files,
    stand_in_name,
    tagged_name,
    unsafe_name_reason,
)
from b2b_integrations.state import ledger


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("orders.csv", None),
        ("Ünïcode-Bestellung 2025.csv", None),
        ("", "empty or dot name"),
        ("..", "empty or dot name"),
        ("..evil.csv", "contains '..'"),
        ("a/b.csv", "contains a path separator"),
        ("a\\b.csv", "contains a path separator"),
        ("bell\x07.csv", "contains control characters"),
        ("line\nbreak.csv", "contains control characters"),
        ("rtl\u202e.csv", "contains control characters"),
        (b"latin1-\xfc.csv".decode("utf-8", "surrogateescape"), "not valid UTF-8"),
        ("x" * 200, None),
        ("x" * 201, "longer than 200 bytes"),
        ("ü" * 101, "longer than 200 bytes"),
    ],
)
def test_unsafe_names(name: str, reason: str | None) -> None:
    assert unsafe_name_reason(name) == reason


def test_glob_and_regex_both_apply() -> None:
    assert matches("orders-1.csv", "*.csv", None)
    assert not matches("orders-1.CSV", "*.csv", None)  # case-sensitive, like the server
    assert matches("orders-1.csv", "*.csv", r"orders-\d+\.csv")
    assert not matches("returns-1.csv", "*.csv", r"orders-\d+\.csv")


def test_ready_files_need_a_stable_previous_look_and_skip_the_ledger() -> None:
    previous = {
        "a.csv": RemoteFile(mtime=100, name="a.csv", size=10),
        "b.csv": RemoteFile(mtime=100, name="b.csv", size=10),
        "c.csv": RemoteFile(mtime=90, name="c.csv", size=5),
    }
    listing = [
        RemoteFile(mtime=100, name="a.csv", size=10),  # unchanged: ready
        RemoteFile(mtime=101, name="b.csv", size=12),  # growing: not yet
        RemoteFile(mtime=90, name="c.csv", size=5),  # unchanged but already loaded
        RemoteFile(mtime=80, name="d.csv", size=7),  # first seen now: next look
        RemoteFile(mtime=100, name="notes.txt", size=1),
    ]
    done = {("c.csv", 5, 90)}
    assert [f.name for f in ready_files(listing, previous, "*.csv", None, done)] == ["a.csv"]


def test_ready_files_are_oldest_first() -> None:
    files = [RemoteFile(mtime=m, name=n, size=1) for m, n in ((30, "a.csv"), (10, "z.csv"), (10, "b.csv"))]
    previous = {f.name: f for f in files}
    assert [f.name for f in ready_files(files, previous, "*", None, set())] == ["b.csv", "z.csv", "a.csv"]


def test_stand_ins_of_refused_names_are_usable_and_never_shared() -> None:
    refused = ["a\nb.csv", "a\rb.csv", "a\tb.csv", "a/b.csv", "a\\b.csv", "..a_b.csv", "", "x" * 300]
    stand_ins = [stand_in_name(name) for name in refused]
    assert len(set(stand_ins)) == len(refused)  # a_b.csv for the first five, were it not for the hash
    assert all(unsafe_name_reason(s) is None for s in stand_ins)
    assert stand_in_name("a\nb.csv") == stand_in_name("a\nb.csv")  # the same name, the same stand-in
    assert stand_in_name("a\nb.csv").startswith("a_b.") and stand_in_name("a\nb.csv").endswith(".csv")


def test_tagged_names_keep_the_extension() -> None:
    assert tagged_name("orders.csv", "3f2a9c1d4e5b") == "orders.3f2a9c1d4e5b.csv"
    assert tagged_name("orders", "3f2a") == "orders.3f2a"
    assert tagged_name("day.tar.gz", "3f2a") == "day.tar.3f2a.gz"


def _entry(status: str, sha256: str = "a" * 64, rows_loaded: int = 0) -> ledger.LedgerEntry:
    return ledger.LedgerEntry(
        "acme", "files", "orders", "day1.csv", sha256, 10, 100, status, rows_loaded, 1, None, "2025-01-01"
    )


def test_ledger_counts_only_loaded_files_as_done_and_records_each_outcome_once() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    ledger.ensure_ledger(conn)
    scope = ("acme", "files", "orders")

    def state() -> list[tuple[object, ...]]:
        return conn.execute("SELECT file_name, status, rows_loaded FROM b2b_file_ledger").fetchall()

    ledger.record_now(conn, "?", _entry("failed"))
    ledger.record_now(conn, "?", _entry("failed"))  # failed again: the same row, no duplicate key
    assert state() == [("day1.csv", "failed", 0)]
    assert not ledger.was_loaded(conn, "?", *scope, "day1.csv", "a" * 64)
    assert ledger.done_files(conn, "?", *scope) == set()

    ledger.record_now(conn, "?", _entry("loaded", rows_loaded=5))
    assert state() == [("day1.csv", "loaded", 5)]
    assert ledger.was_loaded(conn, "?", *scope, "day1.csv", "a" * 64)
    assert ledger.done_files(conn, "?", *scope) == {("day1.csv", 10, 100)}

    ledger.record_now(conn, "?", _entry("failed"))  # a later failure does not undo the load
    assert state() == [("day1.csv", "loaded", 5)]
