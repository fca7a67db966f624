"""The monitors' ledger on a real PostgreSQL: an alert is recorded once, each target is claimed by one
evaluation only (also when two claim at the same moment), failed sends come back until the attempts run
out, and a send stuck in ``sending`` is taken again only after ``STUCK_AFTER``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from b2b_integrations.monitors import ledger
from b2b_integrations.monitors.rules import FAILURES, RECOVERED, Alert
from helpers import PG

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _alert(kind: str = FAILURES, episode: str = "run_1", flow: str = "flip") -> Alert:
    return Alert(
        kind, "warning", "acme", "probe", flow, f"acme__probe__{flow}", episode, "its last 3 runs failed"
    )


@pytest.fixture
def sessions(pg_db: str) -> Iterator[Any]:
    engine = sa.create_engine(f"{PG.replace('postgresql://', 'postgresql+psycopg2://')}/{pg_db}")

    @contextmanager
    def session() -> Iterator[Session]:
        with Session(engine) as s, s.begin():
            yield s

    ledger._created.clear()
    with session() as s:
        ledger.ensure_table(s)
        s.execute(sa.text("DELETE FROM b2b_monitor_alerts"))  # the database is the module's
    try:
        yield session
    finally:
        engine.dispose()


def test_an_alert_is_recorded_once_with_one_row_per_target(sessions: Any) -> None:
    with sessions() as s:
        assert ledger.record(s, _alert(), NOW, ["slack:acme_slack", "webhook"]) is True
    with sessions() as s:
        assert (
            ledger.record(s, _alert(), NOW + timedelta(minutes=1), ["slack:acme_slack", "webhook"]) is False
        )
        assert ledger.record(s, _alert(episode="run_7"), NOW, ["webhook"]) is True  # a new streak
    with sessions() as s:
        rows = s.execute(sa.text("SELECT episode, target, state FROM b2b_monitor_alerts ORDER BY id")).all()
    assert rows == [
        ("run_1", "*", "recorded"),
        ("run_1", "slack:acme_slack", "pending"),
        ("run_1", "webhook", "pending"),
        ("run_7", "*", "recorded"),
        ("run_7", "webhook", "pending"),
    ]


def test_two_evaluations_claiming_at_once_take_each_target_once(sessions: Any) -> None:
    with sessions() as s:
        for n in range(20):
            ledger.record(s, _alert(episode=f"run_{n}"), NOW, ["slack:acme_slack", "webhook"])
    taken: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim(index: int) -> None:
        start.wait()
        try:
            with sessions() as s:
                taken[index] = [d.id for d in ledger.claim(s, NOW)]
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(taken[0] + taken[1]) == sorted(set(taken[0] + taken[1]))  # nothing taken twice
    assert len(taken[0]) + len(taken[1]) == 40
    with sessions() as s:
        assert ledger.claim(s, NOW + timedelta(minutes=1)) == []  # all sending, none stuck yet


def test_failed_sends_come_back_until_attempts_run_out_and_stuck_ones_after_a_while(sessions: Any) -> None:
    with sessions() as s:
        ledger.record(s, _alert(RECOVERED, "run_9"), NOW, ["webhook"])
    for attempt in range(1, ledger.MAX_ATTEMPTS + 1):
        with sessions() as s:
            (delivery,) = ledger.claim(s, NOW)
        assert delivery.attempts == attempt and delivery.alert == _alert(RECOVERED, "run_9")
        with sessions() as s:
            ledger.settle(s, delivery.id, NOW, "HTTP 503")
    with sessions() as s:
        assert ledger.claim(s, NOW) == []  # five attempts: given up, kept with its last error

    with sessions() as s:
        ledger.record(s, _alert(episode="run_2"), NOW, ["webhook"])
    with sessions() as s:
        (stuck,) = ledger.claim(s, NOW)  # then the process died before settling it
    with sessions() as s:
        assert ledger.claim(s, NOW + ledger.STUCK_AFTER - timedelta(seconds=1)) == []
    with sessions() as s:
        (again,) = ledger.claim(s, NOW + ledger.STUCK_AFTER + timedelta(seconds=1))
    assert again.id == stuck.id and again.attempts == 2


def test_alert_times_say_when_a_flow_last_alerted_and_recovered(sessions: Any) -> None:
    with sessions() as s:
        ledger.record(s, _alert(episode="run_1"), NOW, [])
        ledger.record(s, _alert(RECOVERED, "run_5"), NOW + timedelta(minutes=5), [])
        ledger.record(s, _alert(episode="run_1", flow="other"), NOW + timedelta(minutes=9), [])
    with sessions() as s:
        times = ledger.alert_times(s, ["acme__probe__flip", "acme__probe__quiet"])
    assert times == {"acme__probe__flip": (NOW, NOW + timedelta(minutes=5))}
