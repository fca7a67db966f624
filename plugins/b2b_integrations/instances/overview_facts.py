"""The facts behind the engineers' overview, for every instance at once, in a fixed number of queries.

A status call per instance would cost ~3,000 calls at 1,000 customers x 3 integrations; instead (API
server side, on the caller's session over Airflow's metadata DB):

1. the DAGs with their ``customer:``/``integration:``/``pattern:`` tags (the factory sets them);
2. per DAG and run state, the newest run (one window query): latest run, last success, last failure;
3. the task instances of those last finished runs that failed or needed a retry (one query);
4. the public errors the failed steps pushed (one XCom query), rows loaded in 24 h (one XCom query);
5. quarantined inbox messages not replayed yet (one query over the inboxes' state store);
6. per app database the instances' ledgers name, failed files / dead letters / pending deliveries grouped
   by customer, integration and flow (one query per ledger and database).

Config problems come from the parse reports the DAG files leave (``factory/shards.py``), never from a
new parse. What the customer files say (which instances exist, active, connection bindings) comes from
``CustomerIndex``, which re-reads only edited files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from b2b_integrations.errors import Problem
from b2b_integrations.instances.customer_index import CustomerEntry
from b2b_integrations.instances.observe import _LEDGER_KINDS, ROWS_WINDOW, _state, load_counts
from b2b_integrations.instances.overview import DagFacts, RunRef

TAG_PREFIXES = ("customer:", "integration:", "pattern:")
FINISHED = ("success", "failed")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def tagged_dags(session: Any) -> dict[str, dict[str, Any]]:
    """dag_id -> {customer, integration, pattern, is_paused, next_run} of the factory's live DAGs."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel, DagTag

    rows = session.execute(
        sa.select(DagModel.dag_id, DagModel.is_paused, DagModel.next_dagrun_create_after, DagTag.name)
        .join(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagModel.is_stale.is_(False))
        .where(sa.or_(*(DagTag.name.startswith(p) for p in TAG_PREFIXES)))
    ).all()
    dags: dict[str, dict[str, Any]] = {}
    for dag_id, paused, next_run, tag in rows:
        found = dags.setdefault(dag_id, {"is_paused": bool(paused), "next_run": _aware(next_run)})
        kind, _, value = tag.partition(":")
        found[kind] = value
    return {k: v for k, v in dags.items() if "customer" in v and "integration" in v}


def _ranked_runs(dag_ids: list[str]) -> Any:
    """Every run of the given DAGs with its rank among the DAG's runs in the same state (1 = newest)."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun

    rank = (
        sa.func.row_number()
        .over(
            partition_by=(DagRun.dag_id, DagRun.state), order_by=(DagRun.run_after.desc(), DagRun.id.desc())
        )
        .label("rank")
    )
    return (
        sa.select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_after, DagRun.end_date, rank)
        .where(DagRun.dag_id.in_(dag_ids))
        .subquery()
    )


def newest_runs(session: Any, dag_ids: list[str]) -> dict[str, dict[str, tuple[str, datetime | None]]]:
    """dag_id -> state -> (run_id, end or due time) of the DAG's newest run in that state."""
    import sqlalchemy as sa

    inner = _ranked_runs(dag_ids)
    found: dict[str, dict[str, tuple[str, datetime | None]]] = defaultdict(dict)
    for row in session.execute(sa.select(inner).where(inner.c.rank == 1)):
        found[row.dag_id][_state(row.state) or "none"] = (row.run_id, _aware(row.end_date or row.run_after))
    return found


def run_tasks(session: Any, dag_ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dag_id, run_id) -> {failed: [(end, task_id)], retried: bool} for the newest success and the newest
    failure of each given DAG."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance as TI

    found: dict[tuple[str, str], dict[str, Any]] = {}
    if not dag_ids:
        return found
    # The runs are picked by the database (the ranked subquery), not sent back as a list of pairs: a
    # VALUES list of the ~2 x N x 3 newest runs cost SQLAlchemy more to compile (1.7 s at 5,000 pairs)
    # than PostgreSQL to run, and a tuple IN list makes PostgreSQL compare every task with every pair.
    newest = _ranked_runs(dag_ids)
    rows = session.execute(
        sa.select(TI.dag_id, TI.run_id, TI.task_id, TI.state, TI.try_number, TI.end_date)
        .join(newest, sa.and_(TI.dag_id == newest.c.dag_id, TI.run_id == newest.c.run_id))
        .where(newest.c.rank == 1, newest.c.state.in_(FINISHED))
        .where(sa.or_(TI.state == "failed", TI.try_number > 1))
    ).all()
    for row in rows:
        entry = found.setdefault((row.dag_id, row.run_id), {"failed": [], "retried": False})
        if _state(row.state) == "failed":
            entry["failed"].append((_aware(row.end_date) or datetime.max.replace(tzinfo=UTC), row.task_id))
        if (row.try_number or 0) > 1:
            entry["retried"] = True
    return found


def public_errors(session: Any, steps: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], Any]:
    """(dag_id, run_id, task_id) -> the public error that step pushed, for the given failed steps."""
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel

    from b2b_integrations.sync.outcome import PUBLIC_ERROR_KEY

    if not steps:
        return {}
    wanted = sa.values(
        sa.column("dag_id", sa.String),
        sa.column("run_id", sa.String),
        sa.column("task_id", sa.String),
        name="wanted",
    ).data(steps)  # a join, not a tuple IN list: PostgreSQL would compare every XCom with every triple
    rows = session.execute(
        sa.select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.value)
        .join(wanted, sa.and_(XComModel.dag_id == wanted.c.dag_id, XComModel.run_id == wanted.c.run_id,
                              XComModel.task_id == wanted.c.task_id))
        .where(XComModel.key == PUBLIC_ERROR_KEY)
    ).all()  # fmt: skip
    return {(r.dag_id, r.run_id, r.task_id): XComModel.deserialize_value(r) for r in rows}


def quarantined_messages(session: Any) -> dict[tuple[str, str, str], int]:
    """(customer, integration, flow) -> inbox messages quarantined and not replayed yet, every inbox."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel

    from b2b_integrations.state.quarantine import KEY_PREFIX

    rows = session.execute(
        sa.select(AssetModel.uri, AssetStateStoreModel.value)
        .join(AssetStateStoreModel, AssetStateStoreModel.asset_id == AssetModel.id)
        .where(AssetModel.uri.startswith("b2b://"), AssetModel.uri.endswith("/inbox"))
        .where(AssetStateStoreModel.key.startswith(KEY_PREFIX, autoescape=True))
    ).all()
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for uri, value in rows:
        parts = uri.removeprefix("b2b://").split("/")
        if len(parts) != 4:
            continue
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if isinstance(entry, dict) and not entry.get("replayed_as"):
            counts[(parts[0], parts[1], parts[2])] += 1
    return counts


_GROUPED_LEDGER_SQL = {
    "failed_files": "SELECT f.customer_id, f.integration, f.flow, count(*) FROM b2b_file_ledger f "
    "WHERE f.status = 'failed' AND NOT EXISTS (SELECT 1 FROM b2b_file_ledger l WHERE "
    "l.customer_id = f.customer_id AND l.integration = f.integration AND l.flow = f.flow AND "
    "l.file_name = f.file_name AND l.status = 'loaded' AND l.processed_at >= f.processed_at) "
    "GROUP BY f.customer_id, f.integration, f.flow",
    "dead_letters": "SELECT customer_id, integration, flow, count(*) FROM b2b_dead_letters "
    "WHERE replayed_at IS NULL GROUP BY customer_id, integration, flow",
    "pending_deliveries": "SELECT customer_id, integration, flow, count(*) FROM b2b_deliveries "
    "WHERE status <> 'delivered' GROUP BY customer_id, integration, flow",
}
_LEDGER_TABLE = {"failed_files": "b2b_file_ledger", "dead_letters": "b2b_dead_letters",
                 "pending_deliveries": "b2b_deliveries"}  # fmt: skip


def ledger_uses(
    customers: Iterable[CustomerEntry], templates: Any
) -> dict[str, dict[str, set[tuple[str, str, str]]]]:
    """conn id -> ledger name -> {(customer, integration, flow)} whose steps keep that ledger there."""
    slots: dict[str, list[tuple[str, str, str]]] = {}  # integration -> [(flow, ledger, slot)]
    uses: dict[str, dict[str, set[tuple[str, str, str]]]] = defaultdict(lambda: defaultdict(set))
    for customer in customers:
        for instance in customer.instances:
            if instance.integration not in slots:
                slots[instance.integration] = _ledger_slots(templates, instance.integration)
            for flow, ledger, slot in slots[instance.integration]:
                conn_id = instance.connections.get(slot)
                if conn_id:
                    uses[conn_id][ledger].add((customer.id, instance.integration, flow))
    return uses


def _ledger_slots(templates: Any, integration: str) -> list[tuple[str, str, str]]:
    try:
        template = templates.template_for(integration, None)
    except Exception:  # noqa: BLE001 - no such template: the loader reports it, there is no ledger to count
        return []
    found = []
    for flow_name, flow in (getattr(template, "flows", None) or {}).items():
        for step in flow.steps:
            ledger = _LEDGER_KINDS.get(getattr(step, "kind", ""))
            slot = getattr(step, "db_connection", None)
            if ledger and isinstance(slot, str):
                found.append((flow_name, ledger, slot))
    return found


def ledger_counts(
    uses: dict[str, dict[str, set[tuple[str, str, str]]]],
) -> tuple[dict[tuple[str, str, str], dict[str, int | None]], dict[str, str]]:
    """((customer, integration, flow) -> ledger -> count or None when unreadable; conn id -> why unreadable)."""
    from b2b_integrations.clients.sql import get_db_hook

    counts: dict[tuple[str, str, str], dict[str, int | None]] = defaultdict(dict)
    unreachable: dict[str, str] = {}
    for conn_id, ledgers in sorted(uses.items()):
        for ledger, keys in ledgers.items():
            for key in keys:
                counts[key][ledger] = 0
        try:
            hook, _ = get_db_hook(conn_id)
            with closing(hook.get_conn()) as conn:
                for ledger, keys in ledgers.items():
                    for customer, integration, flow, count in _grouped(conn, ledger):
                        if (customer, integration, flow) in keys:
                            counts[(customer, integration, flow)][ledger] = int(count)
                conn.rollback()
        except Exception as e:  # noqa: BLE001 - one app database down must not fail the page
            unreachable[conn_id] = (
                f"the database of connection {conn_id!r} could not be read ({type(e).__name__})"
            )
            for ledger, keys in ledgers.items():
                for key in keys:
                    counts[key][ledger] = None
    return counts, unreachable


def _grouped(conn: Any, ledger: str) -> list[tuple[Any, ...]]:
    with closing(conn.cursor()) as cur:
        try:
            cur.execute(_GROUPED_LEDGER_SQL[ledger])
            return list(cur.fetchall())
        except Exception:
            conn.rollback()
            with closing(conn.cursor()) as check:
                try:
                    check.execute(f"SELECT 1 FROM {_LEDGER_TABLE[ledger]} WHERE 1 = 0")  # noqa: S608 - constant
                except Exception:  # noqa: BLE001 - no such table yet: nothing was ever recorded
                    conn.rollback()
                    return []
            raise


def config_problems(include_dir: Path) -> list[Problem]:
    """Every problem the DAG files' last parses reported (the parse reports of the current shard count)."""
    from b2b_integrations.factory.shards import ReportStore, shard_count

    shards, _ = shard_count()
    reports = ReportStore()
    problems: list[Problem] = []
    for shard in range(shards):
        report = reports.read(include_dir, shard, shards)
        if report is not None:
            problems.extend(report.problems)
    return list(dict.fromkeys(problems))


def problems_by_instance(
    problems: list[Problem], customers: Iterable[CustomerEntry]
) -> dict[tuple[str, str], list[Problem]]:
    """(customer, integration) -> its problems, with the rule of ``observe.instance_problems``."""
    from b2b_integrations.instances.observe import instance_problems

    by_file: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        path = Path(p.file)
        if path.parent.name == "customers":
            by_file[f"customer:{path.stem}"].append(p)
        elif "integrations" in path.parts:
            by_file[f"template:{path.stem}"].append(p)
    found: dict[tuple[str, str], list[Problem]] = {}
    for customer in customers:
        own = by_file.get(f"customer:{customer.id}", [])
        for instance in customer.instances:
            candidates = own + by_file.get(f"template:{instance.integration}", [])
            if candidates:
                mine = instance_problems(candidates, customer.id, instance.integration)
                if mine:
                    found[(customer.id, instance.integration)] = mine
    return found


def dag_facts(
    session: Any, customers: list[CustomerEntry], templates: Any
) -> tuple[list[DagFacts], dict[str, str]]:
    """Every live factory DAG's facts (see the module docstring), and the app databases that could not be read."""
    dags = tagged_dags(session)
    dag_ids = sorted(dags)
    runs = newest_runs(session, dag_ids) if dag_ids else {}
    tasks = run_tasks(session, dag_ids)
    failed_steps = []
    for (dag_id, run_id), entry in tasks.items():
        if entry["failed"] and runs[dag_id].get("failed", ("",))[0] == run_id:
            failed_steps.append((dag_id, run_id, min(entry["failed"])[1]))
    errors = public_errors(session, failed_steps)
    rows = load_counts(session, dag_ids, datetime.now(UTC) - ROWS_WINDOW) if dag_ids else {}
    messages = quarantined_messages(session)
    ledgers, unreachable = ledger_counts(ledger_uses(customers, templates))
    failed_step_of = {(d, r): t for d, r, t in failed_steps}
    return [
        _facts(
            dag_id, dags[dag_id], runs.get(dag_id, {}), tasks, failed_step_of, errors, rows, messages, ledgers
        )
        for dag_id in dag_ids
    ], unreachable


def _facts(
    dag_id: str,
    dag: dict[str, Any],
    by_state: dict[str, tuple[str, datetime | None]],
    tasks: dict[tuple[str, str], dict[str, Any]],
    failed_step_of: dict[tuple[str, str], str],
    errors: dict[tuple[str, str, str], Any],
    rows: dict[str, dict[str, int]],
    messages: dict[tuple[str, str, str], int],
    ledgers: dict[tuple[str, str, str], dict[str, int | None]],
) -> DagFacts:
    from b2b_integrations.sync.outcome import public_error

    customer, integration = dag["customer"], dag["integration"]
    prefix = f"{customer}__{integration}__"
    flow = dag_id[len(prefix) :] if dag_id.startswith(prefix) else dag_id
    latest = max(by_state.items(), key=lambda kv: kv[1][1] or datetime.min.replace(tzinfo=UTC), default=None)
    success = RunRef(*by_state["success"]) if "success" in by_state else None
    failure = RunRef(*by_state["failed"]) if "failed" in by_state else None
    step = failed_step_of.get((dag_id, failure.run_id)) if failure else None
    reason = None
    if failure is not None:
        reason = public_error(step, errors.get((dag_id, failure.run_id, step)) if step else None)["message"]
    newest_done = max(
        (r for r in (success, failure) if r),
        key=lambda r: r.at or datetime.min.replace(tzinfo=UTC),
        default=None,
    )
    retried = bool(newest_done and tasks.get((dag_id, newest_done.run_id), {}).get("retried"))
    loaded = rows.get(dag_id, {})
    counts: dict[str, int | None] = {
        "rows_loaded_24h": loaded.get("rows_loaded", 0),
        "quarantined_records_24h": loaded.get("quarantined_records", 0),
        "quarantined_messages": messages.get((customer, integration, flow), 0),
        **ledgers.get((customer, integration, flow), {}),
    }
    return DagFacts(
        dag_id=dag_id, customer=customer, integration=integration, flow=flow, pattern=dag.get("pattern", ""),
        is_paused=dag["is_paused"], next_run=dag["next_run"], latest_state=latest[0] if latest else None,
        last_success=success, last_failure=failure, failed_task=step, failure_reason=reason, retried=retried,
        counts=counts,
    )  # fmt: skip
