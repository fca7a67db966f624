"""Schedule expressions: cron, Airflow presets, or a plain interval such as ``15m``.

Pure functions, so a bad cron is caught by the validation CLI and at parse time with the same message.
"""

from __future__ import annotations

import re
from datetime import timedelta

PRESETS = frozenset(
    {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
)
_INTERVAL = re.compile(r"^(?P<n>[1-9][0-9]*)(?P<unit>s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(expr: str) -> str | timedelta:
    """Return the value to pass as a DAG ``schedule``; raise ValueError explaining what is accepted."""
    text = expr.strip()
    if text in PRESETS:
        return text
    match = _INTERVAL.match(text)
    if match:
        return timedelta(seconds=int(match["n"]) * _UNIT_SECONDS[match["unit"]])
    if text.startswith("@"):
        raise ValueError(f"unknown schedule preset {text!r}; expected one of {sorted(PRESETS)}")
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid schedule {text!r}: expected a 5-field cron expression (e.g. '*/15 * * * *'), "
            "a preset such as '@daily', or an interval such as '15m', '2h', '1d'"
        )
    from croniter import croniter  # local import: only reached for cron strings

    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression {text!r}: a field is out of range or malformed")
    return text


def check_schedule(expr: str) -> str:
    """Pydantic-friendly validator: raises ValueError for a bad expression, returns it unchanged."""
    parse_schedule(expr)
    return expr
