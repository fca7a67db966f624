"""The fault suite's one hand-written Airflow DAG: a deferrable SFTP new-files sensor, then the file import.

The DAG factory has no sensor step, yet the triggerer-kill scenario needs a flow that waits in the
triggerer. A deferred SFTP sensor is one whose "messages" survive a triggerer outage by design: the files
stay in the folder, so the restarted trigger finds them (a Redis pub/sub message published while no
triggerer listens is simply gone). The import loads into a table without a unique key, so a file loaded
twice would show as duplicate rows.

The sensor retries, as the factory's tasks do (retries 2): Airflow 3.3's scheduler fails a deferred
task whose trigger fires before it has read the executor's report of the deferring try (same try number),
when the resumed try is already queued ("state mismatch": "finished with state success, but the task
instance's state attribute is queued"). The triggerer-kill scenario checks that a retry had that cause.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from b2b_integrations.operators.sftp_import import SftpFileImportOperator
from b2b_integrations.sensors.sftp import SftpNewFilesSensor

FOLDER = os.environ.get("B2B_FAULT_SENSOR_FOLDER", "/nonexistent")
IDENTITY = {"customer_id": "sensorco", "integration": "fault_sensor", "flow": "files"}

with DAG(
    dag_id="sensorco__fault_sensor__files",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["fault-suite"],
):
    wait = SftpNewFilesSensor(
        task_id="wait_for_files",
        sftp_conn_id="sensorco_sftp",
        folder=FOLDER,
        pattern="*.csv",
        db_conn_id="sensorco_db",
        deferrable=True,
        poke_interval=1,
        timeout=600,
        retries=2,
        retry_delay=timedelta(seconds=1),
        **IDENTITY,
    )
    load = SftpFileImportOperator(
        task_id="import_files",
        sftp_conn_id="sensorco_sftp",
        folder=FOLDER,
        pattern="*.csv",
        file_format={"format": "csv"},
        row_schema={"fields": [{"name": "event_id", "type": "string", "required": True}]},
        db_conn_id="sensorco_db",
        target={"table": "sensor_events", "mode": "insert"},
        source_file_column="source_file",
        settle_seconds=0,
        **IDENTITY,
    )
    wait >> load
