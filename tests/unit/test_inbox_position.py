"""The inbox position after a read: past every message read, never past one not read."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from b2b_integrations.inbox import next_position, unreadable_event_id

T1, T2, T3 = (datetime(2026, 12, 3, 10, 0, s, tzinfo=UTC) for s in (1, 2, 3))


def _pair(at: datetime, message_id: str) -> tuple[SimpleNamespace, dict[str, str]]:
    return SimpleNamespace(timestamp=at), {"message_id": message_id}


def test_messages_seen_at_the_position_are_not_handed_out_again() -> None:
    fetched = [_pair(T1, "a"), _pair(T2, "b"), _pair(T2, "c")]
    fresh, after = next_position({"timestamp": T1.isoformat(), "ids": ["a"]}, fetched, [])
    assert [m["message_id"] for _, m in fresh] == ["b", "c"]
    assert after == {"timestamp": T2.isoformat(), "ids": ["b", "c"]}


def test_nothing_read_keeps_the_position() -> None:
    position = {"timestamp": T1.isoformat(), "ids": ["a"]}
    assert next_position(position, [], []) == ([], position)
    assert next_position(None, [], []) == ([], None)


def test_an_unreadable_event_after_the_newest_moves_the_position_past_its_instant() -> None:
    fresh, after = next_position(None, [_pair(T1, "a")], [T3])
    assert [m["message_id"] for _, m in fresh] == ["a"]
    assert after == {"timestamp": "2026-12-03T10:00:03.000001+00:00", "ids": []}
    # One before the newest readable event: the newest's instant already lies past it.
    _, after = next_position(None, [_pair(T3, "z")], [T2])
    assert after == {"timestamp": T3.isoformat(), "ids": ["z"]}
    assert unreadable_event_id(T2) == f"event@{T2.isoformat()}"
