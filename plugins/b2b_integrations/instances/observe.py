"""What an instance is doing and has done, read from where each fact lives, and the troubleshooting actions.

Facts and where they come from (API server side; every function takes the caller's SQLAlchemy session on
Airflow's metadata DB, or opens a short connection to a customer's app database):

- the flows the instance *should* have and their steps: planned from the customer's file exactly as the
  factory plans them (``load_customer_project`` + ``plan_project``: one customer's file and its templates,
  so the cost does not grow with the number of customers); the same load gives the config problems;
- what Airflow has: ``DagModel`` (paused, next run), ``DagRun`` / ``TaskInstance`` (last run, failed step),
  XComs (a failed step's public error under ``b2b_public_error``; the load steps' return values
  ``rows_loaded`` / ``records_loaded`` / ``rows_quarantined`` / ``records_quarantined``);
- quarantined inbox messages: the inbox asset's state store (``state/quarantine.py``);
- in the app database named by the steps' connections: failed files (``b2b_file_ledger``), dead letters
  (``b2b_dead_letters``) and report deliveries not accepted yet (``b2b_deliveries``). A database that cannot
  be reached leaves those counts ``null`` with the reason, never a failed status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from b2b_integrations.errors import Problem
from b2b_integrations.instances.health import FlowFacts, InstanceFacts, decide

LOG_LINES = 40
LOG_LINE_CHARS = 500
LOG_EXCERPT_CHARS = 8000
LOG_EXCERPTS_PER_PAGE = 10
"""Failed runs of one page of run history that get a log excerpt (each is a log read)."""
ROWS_WINDOW = timedelta(hours=24)
ROWS_KEYS = ("rows_loaded", "records_loaded")
QUARANTINED_KEYS = ("rows_quarantined", "records_quarantined")
# Step kinds whose database holds a ledger this status reads, and which ledger.
_LEDGER_KINDS = {
    "sftp_import": "failed_files",
    "object_import": "failed_files",
    "deliver_events": "dead_letters",
    "deliver": "pending_deliveries",
}


@dataclass(frozen=True)
class InstancePlan:
    """The instance as its files say it runs: flows (DAG plans), template, and config problems."""

    plans: list[Any]
    template: Any
    problems: list[Problem]
    running_on: str | None = None
    """Set when the customer file is broken and its last valid copy runs: which copy (when it was kept)."""

    def flow(self, name: str) -> Any | None:
        return next((p for p in self.plans if p.flow == name), None)


def plan_instance(include_dir: Path, customer: str, integration: str) -> InstancePlan:
    """Load one customer (with its last valid copy, as the factory does) and plan this integration."""
    from b2b_integrations.config.last_valid import default_store
    from b2b_integrations.config.loader import load_customer_project
    from b2b_integrations.factory.planner import plan_project

    project = load_customer_project(include_dir, customer, last_valid=default_store())
    plans = plan_project(project, integration)
    settings = next(
        (c.integrations.get(integration) for c in project.customers if c.customer.id == customer), None
    )
    template = project.template_for(integration, settings) if settings is not None else None
    running_on = next(
        (copy for file, copy in project.on_last_valid.items() if Path(file).parent.name == "customers"), None
    )
    # The loader's "keeps running on the last valid copy" notice concerns every instance of the file; it
    # is reported as running_on, and only the problems that caused it decide whose health they spoil.
    problems = [
        p for p in project.problems if not (p.key_path == "" and running_on and running_on in p.message)
    ]
    return InstancePlan(plans, template, instance_problems(problems, customer, integration), running_on)


def instance_problems(problems: Iterable[Problem], customer: str, integration: str) -> list[Problem]:
    """The problems that concern this instance: its customer file's own keys and its integration block,
    and its template's file (another integration's block is another instance's problem)."""
    block = re.compile(rf"integrations\.{re.escape(integration)}(?:$|[.\[])")
    found = []
    for p in problems:
        path = Path(p.file)
        if path.parent.name == "customers" and path.stem == customer:
            if not p.key_path.startswith("integrations") or block.match(p.key_path):
                found.append(p)
        elif path.stem == integration and "integrations" in path.parts:
            found.append(p)
    return found


# ---- Airflow's metadata DB ---------------------------------------------------------------------------
def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def dag_rows(session: Any, dag_ids: list[str]) -> dict[str, Any]:
    """DAG id -> its ``DagModel`` row (paused, stale, next run), for those of ``dag_ids`` Airflow has."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel

    rows = session.execute(
        sa.select(
            DagModel.dag_id,
            DagModel.is_paused,
            DagModel.is_stale,
            DagModel.next_dagrun,
            DagModel.next_dagrun_create_after,
        ).where(DagModel.dag_id.in_(dag_ids))
    ).all()
    return {row.dag_id: row for row in rows}


def task_states(session: Any, dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
    """Task id -> (state, try number) of a run's unmapped task instances."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance

    rows = session.execute(
        sa.select(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
        )
    ).all()
    return {task: (_state(state), int(tries or 0)) for task, state, tries in rows}


def failure_of(dag_id: str, run_id: str, steps: list[str]) -> dict[str, Any]:
    """The failed step of a failed run and its public error, decided as the sync endpoint decides them (a
    step's own message for a caller, else only which step failed: exception texts may carry internals)."""
    from b2b_integrations.sync.airflow_runs import AirflowRuns
    from b2b_integrations.sync.outcome import PUBLIC_ERROR_KEY, decide, public_error

    runs = AirflowRuns()
    view = runs.view(dag_id, run_id)
    if view is None:
        return {"failed_step": None, "error": None}
    outcome = decide(view, steps)
    pushed = runs.xcom(dag_id, run_id, outcome.failed_step, PUBLIC_ERROR_KEY) if outcome.failed_step else None
    error = public_error(outcome.failed_step, pushed)
    error.pop("http_status", None)
    return {"failed_step": outcome.failed_step, "error": error}


def _run_json(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": _state(run.state),
        "run_type": _state(run.run_type),
        "run_after": _iso(run.run_after),
        "logical_date": _iso(run.logical_date),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
    }


def _runs_query(dag_id: str) -> Any:
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun

    return (
        sa.select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc(), DagRun.id.desc())
    )


def last_runs(session: Any, dag_id: str) -> tuple[Any | None, Any | None]:
    """The newest run of a DAG, and its newest finished run (the same one when it is finished)."""
    from airflow.models.dagrun import DagRun

    latest = session.scalars(_runs_query(dag_id).limit(1)).first()
    if latest is None or _state(latest.state) in ("success", "failed"):
        return latest, latest
    finished = session.scalars(
        _runs_query(dag_id).where(DagRun.state.in_(("success", "failed"))).limit(1)
    ).first()
    return latest, finished


def load_counts(session: Any, dag_ids: list[str], since: datetime) -> dict[str, dict[str, int]]:
    """Per DAG id: rows loaded and records quarantined by its steps since ``since``, summed from the
    steps' XCom return values (every load step returns ``rows_loaded``/``records_loaded``).

    Only integer values count (a float, a bool, text or a nested value counts 0). On PostgreSQL the sums
    are taken by the database; elsewhere (the demo's SQLite) each value is read and summed here."""
    from airflow.models.xcom import XComModel

    if not dag_ids:
        return {}
    # dag_id = ANY(...), not LIKE 'prefix%': the XCom index on dag_id serves equality in any collation.
    wanted = (
        XComModel.dag_id.in_(dag_ids),
        XComModel.key == "return_value",
        XComModel.timestamp >= since,
    )
    if session.get_bind().dialect.name == "postgresql":
        return _summed_by_postgresql(session, wanted)
    return _summed_here(session, wanted)


def _summed_by_postgresql(session: Any, wanted: tuple[Any, ...]) -> dict[str, dict[str, int]]:
    # The overview reads ~N x 3 x runs-a-day values; deserializing each in Python was half the page's
    # time (1.3 s of 2.6 s at 1,000 customers x 3 integrations, 10 runs a day).
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel

    def total(keys: tuple[str, ...]) -> Any:
        return sa.func.coalesce(sa.func.sum(sum(_pg_int(XComModel.value, k) for k in keys)), 0)  # type: ignore[arg-type]

    rows = session.execute(
        sa.select(XComModel.dag_id, total(ROWS_KEYS), total(QUARANTINED_KEYS))
        .where(*wanted, sa.func.jsonb_typeof(XComModel.value) == "object")
        .group_by(XComModel.dag_id)
    ).all()
    return {
        dag_id: {"rows_loaded": int(loaded), "quarantined_records": int(quarantined)}
        for dag_id, loaded, quarantined in rows
    }


def _summed_here(session: Any, wanted: tuple[Any, ...]) -> dict[str, dict[str, int]]:
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel

    counts: dict[str, dict[str, int]] = {}
    for row in session.execute(sa.select(XComModel.dag_id, XComModel.value).where(*wanted)).all():
        value = XComModel.deserialize_value(row)
        if not isinstance(value, dict):
            continue
        found = counts.setdefault(row.dag_id, {"rows_loaded": 0, "quarantined_records": 0})
        found["rows_loaded"] += sum(_int(value.get(k)) for k in ROWS_KEYS)
        found["quarantined_records"] += sum(_int(value.get(k)) for k in QUARANTINED_KEYS)
    return counts


def _pg_int(value: Any, key: str) -> Any:
    """``value->key`` as a number when it is a JSON integer, else 0 (the rule of ``_int``), in SQL."""
    import sqlalchemy as sa

    text = value.op("->>")(key)
    # A float that happens to be whole is stored with its fraction ("7.0"), so it counts 0 here too.
    is_int = sa.and_(sa.func.jsonb_typeof(value.op("->")(key)) == "number", text.op("~")(r"^-?[0-9]+$"))
    return sa.case((is_int, sa.cast(text, sa.Numeric)), else_=0)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def quarantined_messages(session: Any, customer: str, integration: str) -> dict[str, int]:
    """Flow -> inbox messages quarantined and not replayed yet."""
    from b2b_integrations.state.quarantine import list_quarantined

    counts: dict[str, int] = {}
    for q in list_quarantined(session, customer, integration):
        if not q.replayed_as:
            counts[q.flow] = counts.get(q.flow, 0) + 1
    return counts


# ---- the app databases -------------------------------------------------------------------------------
@dataclass
class LedgerCounts:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # flow -> name -> count
    unreachable: dict[str, str] = field(default_factory=dict)  # flow -> why its counts are missing


def ledger_counts(customer: str, integration: str, plans: list[Any]) -> LedgerCounts:
    """Failed files, dead letters and pending deliveries per flow, from the databases its steps use."""
    wanted: dict[str, list[tuple[str, str]]] = {}  # conn id -> [(flow, count name)]
    for plan in plans:
        for task in plan.tasks:
            name = _LEDGER_KINDS.get(task.kind)
            conn_id = task.arguments.get("db_conn_id")
            if name and isinstance(conn_id, str) and conn_id:
                wanted.setdefault(conn_id, []).append((plan.flow, name))
    result = LedgerCounts()
    for conn_id, uses in wanted.items():
        try:
            found = _count_in(conn_id, customer, integration, uses)
        except Exception as e:  # noqa: BLE001 - a customer database down must not fail the status
            for flow, _ in uses:
                result.unreachable[flow] = (
                    f"the database of connection {conn_id!r} could not be read ({type(e).__name__})"
                )
            continue
        for flow, name, count in found:
            counts = result.counts.setdefault(flow, {})
            counts[name] = counts.get(name, 0) + count
    return result


_LEDGER_SQL = {
    # A failed file counts until a file of the same name loads after it (a corrected re-upload has
    # another sha256, so the failed row itself stays).
    "failed_files": "SELECT count(*) FROM b2b_file_ledger f WHERE f.customer_id = {p} AND f.integration = {p} "
    "AND f.flow = {p} AND f.status = 'failed' AND NOT EXISTS (SELECT 1 FROM b2b_file_ledger l WHERE "
    "l.customer_id = f.customer_id AND l.integration = f.integration AND l.flow = f.flow AND "
    "l.file_name = f.file_name AND l.status = 'loaded' AND l.processed_at >= f.processed_at)",
    "dead_letters": "SELECT count(*) FROM b2b_dead_letters WHERE customer_id = {p} AND integration = {p} "
    "AND flow = {p} AND replayed_at IS NULL",
    "pending_deliveries": "SELECT count(*) FROM b2b_deliveries WHERE customer_id = {p} AND integration = {p} "
    "AND flow = {p} AND status <> 'delivered'",
}
_LEDGER_TABLE = {
    "failed_files": "b2b_file_ledger",
    "dead_letters": "b2b_dead_letters",
    "pending_deliveries": "b2b_deliveries",
}


def _count_in(
    conn_id: str, customer: str, integration: str, uses: list[tuple[str, str]]
) -> Iterator[tuple[str, str, int]]:
    from b2b_integrations.clients.sql import get_db_hook

    hook, _ = get_db_hook(conn_id)
    p = hook.placeholder
    results = []
    with closing(hook.get_conn()) as conn:
        for flow, name in sorted(set(uses)):
            with closing(conn.cursor()) as cur:
                try:
                    cur.execute(_LEDGER_SQL[name].format(p=p), (customer, integration, flow))
                    results.append((flow, name, int(cur.fetchone()[0])))
                except Exception:
                    conn.rollback()
                    if _table_exists(conn, _LEDGER_TABLE[name]):
                        raise
                    results.append((flow, name, 0))  # no such table yet: nothing was ever recorded
        conn.rollback()
    return iter(results)


def _table_exists(conn: Any, table: str) -> bool:
    with closing(conn.cursor()) as cur:
        try:
            cur.execute(f"SELECT 1 FROM {table} WHERE 1 = 0")
        except Exception:  # noqa: BLE001 - the driver's "no such table", whatever its class
            conn.rollback()
            return False
    return True


# ---- status ------------------------------------------------------------------------------------------
def instance_status(
    session: Any, instance: InstancePlan, customer: str, integration: str, active: bool
) -> dict[str, Any]:
    """The status document of ``GET .../status`` (see the module docstring for each figure's source)."""
    now = datetime.now(UTC)
    dag_ids = [plan.dag_id for plan in instance.plans]
    dags = dag_rows(session, dag_ids)
    loaded = load_counts(session, dag_ids, now - ROWS_WINDOW)
    messages = quarantined_messages(session, customer, integration)
    ledgers = ledger_counts(customer, integration, instance.plans)
    flows, facts = [], []
    for plan in instance.plans:
        row = dags.get(plan.dag_id)
        deployed = row is not None and not row.is_stale
        latest, finished = last_runs(session, plan.dag_id) if deployed else (None, None)
        last_run = _run_json(latest) if latest is not None else None
        steps = [t.task_id for t in plan.tasks]
        retried = False
        if finished is not None:
            if last_run is not None and finished is latest and _state(finished.state) == "failed":
                last_run.update(failure_of(plan.dag_id, finished.run_id, steps))
            tries = task_states(session, plan.dag_id, finished.run_id)
            retried = any(count > 1 for _, count in tries.values())
        counts: dict[str, int | None] = {
            "rows_loaded_24h": loaded.get(plan.dag_id, {}).get("rows_loaded", 0),
            "quarantined_records_24h": loaded.get(plan.dag_id, {}).get("quarantined_records", 0),
            "quarantined_messages": messages.get(plan.flow, 0),
        }
        kinds = {t.kind for t in plan.tasks}
        for kind, name in _LEDGER_KINDS.items():
            if kind in kinds:
                counts[name] = (
                    None
                    if plan.flow in ledgers.unreachable
                    else ledgers.counts.get(plan.flow, {}).get(name, 0)
                )
        last_finished = None
        if finished is not None:
            last_finished = {"run_id": finished.run_id, "state": _state(finished.state)}
        flows.append(
            {
                "flow": plan.flow,
                "dag_id": plan.dag_id,
                "deployed": deployed,
                "is_paused": bool(row.is_paused) if row is not None else not active,
                "last_run": last_run,
                "last_finished_run": last_finished,
                "next_run": {
                    "logical_date": _iso(row.next_dagrun) if deployed else None,
                    "create_after": _iso(row.next_dagrun_create_after) if deployed else None,
                    "trigger": _trigger_kind(plan),
                },
                "counts": counts,
                "counts_unavailable": ledgers.unreachable.get(plan.flow),
            }
        )
        set_aside = {
            "quarantined records in the last 24 h": counts["quarantined_records_24h"] or 0,
            **{
                k: v or 0
                for k, v in counts.items()
                if k not in ("rows_loaded_24h", "quarantined_records_24h")
            },
        }
        facts.append(
            FlowFacts(
                plan.flow,
                is_paused=flows[-1]["is_paused"],
                last_state=_state(finished.state) if finished is not None else None,
                has_runs=latest is not None,
                retried=retried,
                set_aside=set_aside,
            )
        )
    health, reasons = decide(InstanceFacts(active, len(instance.problems), facts))
    totals: dict[str, int] = {}
    for flow in flows:
        for name, value in flow["counts"].items():
            totals[name] = totals.get(name, 0) + (value or 0)
    return {
        "customer": customer,
        "integration": integration,
        "health": health,
        "reasons": reasons,
        "active": active,
        "as_of": now.isoformat(timespec="seconds"),
        "config_problems": [_problem_json(p) for p in instance.problems],
        "running_on_last_valid": instance.running_on,
        "counts": totals,
        "flows": flows,
    }


def _trigger_kind(plan: Any) -> str:
    if plan.schedule is not None:
        return "schedule"
    return "event" if plan.schedule_asset is not None or plan.inbox is not None else "manual"


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "key_path": p.key_path, "message": p.message}


# ---- runs --------------------------------------------------------------------------------------------
def run_history(
    session: Any, plan: Any, limit: int, offset: int, secrets: list[str]
) -> tuple[int, list[dict[str, Any]]]:
    """(total, page of runs newest first); a failed run carries its failed step, public error and a
    redacted excerpt of that step's log."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun

    total = session.scalar(sa.select(sa.func.count()).select_from(DagRun).where(DagRun.dag_id == plan.dag_id))
    page = session.scalars(_runs_query(plan.dag_id).limit(limit).offset(offset)).all()
    steps = [t.task_id for t in plan.tasks]
    runs, excerpts = [], 0
    for run in page:
        found = _run_json(run)
        if found["state"] == "failed":
            found.update(failure_of(plan.dag_id, run.run_id, steps))
            if found["failed_step"] and excerpts < LOG_EXCERPTS_PER_PAGE:
                excerpts += 1
                found["log_excerpt"] = log_excerpt(
                    session, plan.dag_id, run.run_id, found["failed_step"], secrets
                )
        runs.append(found)
    return int(total or 0), runs


def log_excerpt(session: Any, dag_id: str, run_id: str, task_id: str, secrets: list[str]) -> str | None:
    """The last lines of a task's last try, read through Airflow's log reader, secrets masked."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.log.log_reader import TaskLogReader

    ti = session.scalars(
        sa.select(TaskInstance).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == -1,
        )
    ).first()
    if ti is None or not ti.try_number:
        return None
    try:
        stream, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {"download_logs": True})
        lines = [line for message in stream for line in _log_lines(message)]
    except Exception as e:  # noqa: BLE001 - a log store that cannot be read leaves the excerpt out
        return f"(the log could not be read: {type(e).__name__})"
    return redact_excerpt(lines[-LOG_LINES:], secrets)


def _log_lines(message: Any) -> list[str]:
    data = message.model_dump() if hasattr(message, "model_dump") else {"event": str(message)}
    event = str(data.get("event") or "")
    if event.startswith("::group::") or event.startswith("::endgroup::"):
        return []
    stamp = data.get("timestamp")
    head = " ".join(
        part
        for part in (
            stamp.strftime("%Y-%m-%dT%H:%M:%S") if isinstance(stamp, datetime) else "",
            str(data.get("level") or "").upper(),
            event,
        )
        if part
    )
    lines = head.splitlines() or [""]
    # Exceptions: type and message of each in the chain, never the frames (code paths are not the
    # customer's business, and the message is what says what went wrong).
    for detail in data.get("error_detail") or []:
        if isinstance(detail, dict):
            lines.append(f"{detail.get('exc_type', 'Error')}: {detail.get('exc_value', '')}")
    return lines


def redact_excerpt(lines: list[str], secrets: list[str]) -> str:
    """Lines masked (Airflow's masker, our patterns and the given secrets) and cut to the size caps."""
    from b2b_integrations.alerts import redact

    masked = [redact(line, secrets) for line in lines]
    cut = [line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 1] + "…" for line in masked]
    text = "\n".join(cut)
    return text if len(text) <= LOG_EXCERPT_CHARS else "…" + text[-(LOG_EXCERPT_CHARS - 1) :]


def connection_secrets(conn_ids: Iterable[str]) -> list[str]:
    """Passwords and every string in the extras of the instance's connections: never shown in an excerpt,
    whether or not the masker of this process has seen them."""
    from airflow.sdk import BaseHook

    secrets: list[str] = []
    for conn_id in sorted(set(conn_ids)):
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # noqa: BLE001 - a connection that does not exist has no secret to hide
            continue
        secrets.extend(s for s in (conn.password, conn.extra) if s)
        try:
            secrets.extend(_strings(json.loads(conn.extra or "{}")))
        except ValueError:
            pass
    return [s for s in secrets if len(s) >= 4]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def instance_conn_ids(instance: InstancePlan, settings: dict[str, Any]) -> list[str]:
    """Every connection id the instance binds or its steps use."""
    ids = {v for v in (settings.get("connections") or {}).values() if isinstance(v, str)}
    for plan in instance.plans:
        for task in plan.tasks:
            ids |= {v for k, v in task.arguments.items() if k.endswith("conn_id") and isinstance(v, str)}
    return sorted(ids)


# ---- actions -----------------------------------------------------------------------------------------
def check_overrides(plan: Any, template: Any, overrides: dict[str, Any]) -> str | None:
    """Why a run-now override is refused (naming the key), or None: only the flow's params may be set,
    each to a value its config variable accepts."""
    from b2b_integrations.config.base import JINJA_REFUSED, jinja_markers_in
    from b2b_integrations.config.variables import check_value

    for key, value in overrides.items():
        if key not in plan.params:
            allowed = ", ".join(sorted(plan.params)) or "none"
            return f"config.{key}: not a config value of this flow (allowed: {allowed})"
        var = template.config.get(key) if template is not None else None
        problem = (
            check_value(var, value)
            if var is not None
            else (None if isinstance(value, bool) else f"expected boolean, got {type(value).__name__}")
        )
        if problem:
            return f"config.{key}: {problem}"
        # A run's params are filled into templated options before Jinja renders them: a marker would run
        # as a template with access to every connection (another customer's secrets).
        for path in jinja_markers_in(value):
            return f"config.{key}{''.join(f'[{p!r}]' for p in path)}: {JINJA_REFUSED}"
    return None


def trigger_run(dag_id: str, conf: dict[str, Any], user: str) -> str:
    """Create a manual run (queued) with ``conf`` as its params' overrides; its run id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(
        dag_id, triggered_by=DagRunTriggeredByType.REST_API, triggering_user_name=user, conf=conf
    )
    if run is None:
        raise LookupError(f"{dag_id} could not be started")
    return str(run.run_id)


def retry_failed(session: Any, dag_id: str, run_id: str) -> tuple[str | None, list[str]]:
    """Clear the failed (and upstream-failed) task instances of a failed run so the scheduler runs them
    again; (the run's state, or None if there is no such run; the task ids cleared)."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances

    # The run row locked first: of two retries at once, the second sees the run queued, not failed.
    state = session.scalar(
        sa.select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id).with_for_update()
    )
    if state is None or _state(state) != "failed":
        return _state(state), []
    tis = session.scalars(
        sa.select(TaskInstance).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.state.in_(("failed", "upstream_failed")),
        )
    ).all()
    clear_task_instances(list(tis), session)
    return "failed", sorted(ti.task_id for ti in tis)
