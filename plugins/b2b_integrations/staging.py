"""Hand-off of records between the steps of one flow run.

Steps pass a small reference through XCom (path, row count, columns); the records themselves go to a
per-run file, so XCom stays small whatever the volume. Paths are deterministic per run and step, and files
are written to a temporary name then renamed, so a retried step replaces its output instead of adding to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import pandas as pd

# Key of the staged-records reference inside an asset event's extra.
STAGED_KEY = "b2b_staged"
EVENT_CURSOR_KEY = "b2b_inbox_position"  # asset state store key: the last consumed inbox event
# Asset-event extra key of stored webhooks: a list of {message_id, received_at, payload | payload_key}
# (a large body sits in the inbox asset's state store under payload_key). Webhooks that arrive together
# share one asset event.
WEBHOOK_KEY = "b2b_webhooks"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+]")


class StagedRecords(TypedDict):
    """What a step returns to XCom."""

    path: str
    rows: int
    columns: list[str]


def data_dir() -> Path:
    """B2B_DATA_DIR, else $AIRFLOW_HOME/b2b_data."""
    env = os.environ.get("B2B_DATA_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "b2b_data"


def safe_path_part(part: str) -> str:
    # Run ids contain ':' and '+'; customer names are identifiers already. Never let a part climb out.
    cleaned = _UNSAFE.sub("_", part)
    return cleaned if cleaned not in ("", ".", "..") else "_"


def stage_path(customer_id: str, integration: str, flow: str, run_id: str, task_id: str) -> Path:
    parts = [safe_path_part(p) for p in (customer_id, integration, flow, run_id)]
    return data_dir().joinpath("runs", *parts, f"{safe_path_part(task_id)}.ndjson")


def write_records(frame: pd.DataFrame, path: Path) -> StagedRecords:
    """Write records as NDJSON atomically and return the reference for XCom."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ndjson.tmp")
    if len(frame):
        frame.to_json(tmp, orient="records", lines=True, date_format="iso", force_ascii=False)
    else:
        tmp.write_text("", encoding="utf-8")
    os.replace(tmp, path)
    return StagedRecords(path=str(path), rows=len(frame), columns=[str(c) for c in frame.columns])


def read_records(ref: StagedRecords | dict[str, Any]) -> pd.DataFrame:
    """Read the records a previous step staged (types as JSON gives them; no date guessing)."""
    import pandas as pd

    path = Path(ref["path"])
    if not path.exists():
        raise FileNotFoundError(f"staged records {path} are missing; re-run the upstream step")
    if ref.get("rows", 0) == 0:
        return pd.DataFrame(columns=ref.get("columns", []))
    return pd.read_json(path, orient="records", lines=True, dtype=False, convert_dates=False)
