"""Transforms for the instances status tests (allow-listed there via B2B_TRANSFORM_PREFIXES)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any


def leaky(frame: Any, *, conn_id: str) -> Any:
    """Fails the way a careless library does: its message carries the connection's password and an extra
    value, read straight from the environment, so Airflow's masker in the task never saw them."""
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    hint = conn["extra"]["region_hint"]
    logging.getLogger(__name__).warning("the partner API answered for %s at %s", conn["password"], hint)
    raise ValueError(f"the partner API refused the credential {conn['password']} (hint {hint})")
