"""The engineers' overview rows (pure): the same health rule as an instance's status, failure details,
counts, filters, search, urgency order and paging; and the customer index's re-reading of edited files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from b2b_integrations.errors import Problem
from b2b_integrations.instances.customer_index import CustomerIndex
from b2b_integrations.instances.overview import DagFacts, Filters, InstanceKey, RunRef, build_row, overview

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COUNTS = {"rows_loaded_24h": 5, "quarantined_records_24h": 0, "quarantined_messages": 0}


def _flow(customer: str, flow: str = "pull", **facts: object) -> DagFacts:
    base: dict[str, object] = dict(dag_id=f"{customer}__feeds__{flow}", customer=customer, integration="feeds",
                                   flow=flow, pattern="scheduled_data_import", is_paused=False, counts=dict(COUNTS))  # fmt: skip
    base.update(facts)
    return DagFacts(**base)  # type: ignore[arg-type]


def _key(customer: str, active: bool = True) -> InstanceKey:
    return InstanceKey(customer, customer.title(), "feeds", active)


def test_a_newer_success_after_a_failure_is_healthy_and_keeps_the_failure_details() -> None:
    flow = _flow("acme", latest_state="success", last_success=RunRef("r2", T0 + timedelta(hours=1)),
                 last_failure=RunRef("r1", T0), failed_task="load", failure_reason="step 'load' failed")  # fmt: skip
    row = build_row(_key("acme"), [flow], [])
    assert row["health"] == "healthy"
    assert row["last_failure"] == {"dag_id": "acme__feeds__pull", "flow": "pull", "run_id": "r1",
                                   "at": T0.isoformat(), "task_id": "load", "reason": "step 'load' failed"}  # fmt: skip
    assert row["last_success"]["run_id"] == "r2"


def test_failing_when_the_newest_finished_run_failed_in_any_flow() -> None:
    good = _flow("acme", latest_state="success", last_success=RunRef("a", T0 + timedelta(hours=2)))
    bad = _flow("acme", "push", latest_state="failed", last_success=RunRef("b", T0), last_failure=RunRef("c", T0 + timedelta(hours=1)))  # fmt: skip
    row = build_row(_key("acme"), [good, bad], [])
    assert row["health"] == "failing" and row["reasons"] == ["flow push: last run failed"]
    assert row["counts"]["rows_loaded_24h"] == 10


def test_words_for_never_run_paused_config_problem_and_degraded() -> None:
    assert build_row(_key("a"), [_flow("a")], [])["health"] == "never run"
    assert build_row(_key("a", active=False), [_flow("a")], [])["health"] == "paused"
    assert build_row(_key("a"), [_flow("a", is_paused=True)], [])["health"] == "paused"
    assert build_row(_key("a"), [], [Problem("customers/a.yaml", "integrations.feeds.x", "unknown key", 3)])["health"] == "config problem"  # fmt: skip
    dead = _flow(
        "a", latest_state="success", last_success=RunRef("r", T0), counts={**COUNTS, "dead_letters": 2}
    )
    row = build_row(_key("a"), [dead], [])
    assert row["health"] == "degraded" and row["counts"]["dead_letters"] == 2
    retried = _flow("a", latest_state="success", last_success=RunRef("r", T0), retried=True)
    assert build_row(_key("a"), [retried], [])["health"] == "degraded"


def test_an_unreadable_ledger_is_unknown_not_zero() -> None:
    flow = _flow(
        "a", latest_state="success", last_success=RunRef("r", T0), counts={**COUNTS, "dead_letters": None}
    )
    assert build_row(_key("a"), [flow], [])["counts"]["dead_letters"] is None


def test_next_run_is_the_soonest_of_the_unpaused_flows() -> None:
    flows = [_flow("a", "x", next_run=T0 + timedelta(hours=3)), _flow("a", "y", next_run=T0 + timedelta(hours=1), is_paused=True),
             _flow("a", "z", next_run=T0 + timedelta(hours=2))]  # fmt: skip
    assert build_row(_key("a"), flows, [])["next_run"]["flow"] == "z"


def _page(filters: Filters, limit: int = 50, offset: int = 0) -> dict[str, object]:
    keys = [_key(c) for c in ("acme", "globex", "initech")]
    flows = {
        ("acme", "feeds"): [_flow("acme", latest_state="failed", last_failure=RunRef("r", T0))],
        ("globex", "feeds"): [_flow("globex", latest_state="success", last_success=RunRef("r", T0))],
        ("initech", "feeds"): [_flow("initech")],
    }
    return overview(keys, flows, {}, filters, limit, offset)


def test_order_filters_search_and_paging() -> None:
    everything = _page(Filters())
    assert [r["customer"] for r in everything["items"]] == ["acme", "initech", "globex"]  # type: ignore[index]
    assert everything["by_health"] == {"config problem": 0, "failing": 1, "degraded": 0, "never run": 1,
                                       "paused": 0, "healthy": 1}  # fmt: skip
    assert [r["customer"] for r in _page(Filters(health="healthy"))["items"]] == ["globex"]  # type: ignore[index]
    assert [r["customer"] for r in _page(Filters(search="INI"))["items"]] == ["initech"]  # type: ignore[index]
    assert [r["customer"] for r in _page(Filters(search="last run failed"))["items"]] == ["acme"]  # type: ignore[index]
    assert _page(Filters(customer="nobody"))["total"] == 0
    assert _page(Filters(pattern="event_driven_import"))["total"] == 0
    second = _page(Filters(), limit=2, offset=2)
    assert second["total"] == 3 and [r["customer"] for r in second["items"]] == ["globex"]  # type: ignore[index]
    assert _page(Filters(), offset=10**9)["items"] == []


def test_customer_index_reads_a_file_again_only_when_it_changed(tmp_path: Path) -> None:
    folder = tmp_path / "customers"
    folder.mkdir()
    (folder / "acme.yaml").write_text(
        "id: acme\nname: Acme\nintegrations:\n  feeds: {active: false, connections: {db: a_db}}\n"
    )
    (folder / "broken.yaml").write_text("id: [unclosed\n")
    (folder / "Not-A-Name.yaml").write_text("id: x\n")
    index = CustomerIndex(tmp_path)
    acme, broken = index.entries()
    assert (acme.name, acme.instances[0].active, acme.instances[0].connections) == (
        "Acme",
        False,
        {"db": "a_db"},
    )
    assert broken.instances == ()
    path = folder / "acme.yaml"
    path.write_text("id: acme\nname: Acme Corp\nintegrations:\n  feeds: {}\n  orders: {}\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    acme, _ = index.entries()
    assert acme.name == "Acme Corp" and [i.integration for i in acme.instances] == ["feeds", "orders"]
    path.unlink()
    assert [e.id for e in index.entries()] == ["broken"]
