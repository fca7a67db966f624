"""DAGs of our own app, not of a customer: the outbox poller, the monitors and the staging retention
(``include/app.yaml``)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from b2b_integrations.config.models import AppMonitors, AppSettings
    from b2b_integrations.config.staging import StagingSettings

OUTBOX_DAG_ID = "b2b_app__outbox"
MONITORS_DAG_ID = "b2b_app__monitors"
RETENTION_DAG_ID = "b2b_app__staging_retention"
APP_DAG_IDS = (OUTBOX_DAG_ID, MONITORS_DAG_ID, RETENTION_DAG_ID)


def build_app_dags(app: AppSettings | None, auto_register: bool = True) -> dict[str, DAG]:
    from airflow.sdk import DAG

    from b2b_integrations.config.schedules import parse_schedule
    from b2b_integrations.factory.build import _start_date
    from b2b_integrations.operators.outbox_poll import OutboxPollOperator

    dags: dict[str, DAG] = {}
    monitors = app.monitors if app is not None else None
    if monitors is not None and monitors.enabled:
        dags[MONITORS_DAG_ID] = _monitors_dag(monitors, auto_register)
    if app is not None and app.staging is not None:
        dags[RETENTION_DAG_ID] = _retention_dag(app.staging, auto_register)
    outbox = app.outbox if app is not None else None
    if outbox is None or not outbox.enabled:
        return dags
    with DAG(
        dag_id=OUTBOX_DAG_ID,
        description=f"Publish our app's outbox ({outbox.table}) as app events",
        doc_md=(
            f"# Outbox poller\n\nReads new rows of `{outbox.table}` (connection `{outbox.connection}`) in id order "
            f"and publishes them through `POST /b2b/events` (connection `{outbox.api_connection}`); the position "
            "moves only after the API acknowledged them. Configured in `include/app.yaml`."
        ),
        schedule=parse_schedule(outbox.schedule),
        start_date=_start_date(),
        catchup=False,
        max_active_runs=1,
        auto_register=auto_register,
        tags=["b2b:app", "pattern:event_driven_export"],
        # A feed: retry soon (a restarted API server, a database failover), not after Airflow's 5 minutes.
        default_args={
            "owner": "b2b-integrations",
            "retries": 5,
            "retry_delay": timedelta(seconds=15),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=5),
        },
    ) as dag:
        OutboxPollOperator(
            task_id="publish_outbox",
            db_conn_id=outbox.connection,
            api_conn_id=outbox.api_connection,
            table=outbox.table,
            columns=dict(outbox.columns),
            batch_size=outbox.batch_size,
            settle_seconds=outbox.settle_seconds,
            max_seconds=outbox.max_seconds,
            poll_interval=outbox.poll_interval,
        )
    dags[OUTBOX_DAG_ID] = dag
    return dags


def _monitors_dag(monitors: AppMonitors, auto_register: bool) -> DAG:
    from airflow.sdk import DAG

    from b2b_integrations.config.schedules import parse_schedule
    from b2b_integrations.factory.build import _start_date
    from b2b_integrations.operators.monitors import EvaluateMonitorsOperator

    with DAG(
        dag_id=MONITORS_DAG_ID,
        description="Evaluate every instance's alert monitors",
        doc_md=(
            "# Alert monitors\n\nAsks the API server (connection "
            f"`{monitors.api_connection}`) to evaluate every instance's monitors: overdue, duration "
            "exceeded, consecutive failures, deactivation, recovered. Each alert is sent once (a ledger in "
            "the metadata DB); see docs/monitors.md. Configured in `include/app.yaml`."
        ),
        schedule=parse_schedule(monitors.schedule),
        start_date=_start_date(),
        catchup=False,
        max_active_runs=1,
        auto_register=auto_register,
        tags=["b2b:app", "b2b:monitors"],
        # The next evaluation is the retry: a run that failed is not worth repeating a minute late.
        default_args={"owner": "b2b-integrations", "retries": 0},
    ) as dag:
        EvaluateMonitorsOperator(task_id="evaluate", api_conn_id=monitors.api_connection)
    return dag


def _retention_dag(staging: StagingSettings, auto_register: bool) -> DAG:
    from airflow.sdk import DAG

    from b2b_integrations.config.schedules import parse_schedule
    from b2b_integrations.factory.build import _start_date
    from b2b_integrations.operators.staging_retention import StagingRetentionOperator

    with DAG(
        dag_id=RETENTION_DAG_ID,
        description="Delete staged records older than the retention",
        doc_md=(
            "# Staging retention\n\nDeletes the records steps handed each other (`runs/` of "
            "`B2B_STAGING_URL`, else `B2B_DATA_DIR`) once last written more than "
            f"{staging.retention_hours:g} hours ago. Configured in `include/app.yaml` (`staging`)."
        ),
        schedule=parse_schedule(staging.schedule),
        start_date=_start_date(),
        catchup=False,
        max_active_runs=1,
        auto_register=auto_register,
        tags=["b2b:app", "b2b:staging"],
        default_args={"owner": "b2b-integrations", "retries": 2, "retry_delay": timedelta(minutes=5)},
    ) as dag:
        StagingRetentionOperator(task_id="remove_old_staged_files", max_age_hours=staging.retention_hours)
    return dag
