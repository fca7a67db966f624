"""A transform callable that reports, from inside a running task, which DAGs its process built."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any


def live_dags(frame: Any, *, out: str) -> list[dict[str, Any]]:
    """Write the ids of every DAG object alive in this process to ``out`` (after a full collection, so
    only DAGs something still holds count: the ones the DAG file registered)."""
    from airflow.sdk import DAG

    gc.collect()
    dag_ids = sorted({obj.dag_id for obj in gc.get_objects() if isinstance(obj, DAG)})
    Path(out).write_text(json.dumps(dag_ids), encoding="utf-8")
    return [{"dag_id": dag_id} for dag_id in dag_ids]
