"""Which remote files an import takes: pure selection rules, no server."""

from __future__ import annotations

import pytest

from b2b_integrations.sources.files import RemoteFile, matches, ready_files, unsafe_name_reason


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
        ("x" * 256, "longer than 255 bytes"),
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
