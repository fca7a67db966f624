"""Alert monitors of an instance (``monitors:``): overdue, duration exceeded, N failures, deactivation.

Three levels, each key taken from the most specific one that sets it:
``include/app.yaml`` ``monitors.defaults`` < the template's ``monitors:`` < the customer's
``integrations.<name>.monitors``. A leaf may hold a ``${config.x}`` reference (the customer's value of a
template variable); the merged block is resolved and checked again per instance (:func:`effective`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, PlainValidator, ValidationError, WithJsonSchema, field_validator, model_validator

from b2b_integrations.config.base import StrictModel

MAX_DURATION_SECONDS = 30 * 86400  # a month: longer is a typo, not a monitor
MAX_FAILURES = 1000
_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "seconds (a number) or a duration such as '90s', '15m', '2h', '1d'"


def duration_seconds(value: Any) -> float:
    """Seconds of a duration (number of seconds, or '15m'); ValueError saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        seconds = float(match["n"]) * _UNIT_SECONDS[match["unit"]]
    else:
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a positive finite duration, got {value!r}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"at most 30 days ({MAX_DURATION_SECONDS} s), got {value!r}")
    return seconds


def _or_reference(check: Any, schema: dict[str, Any]) -> Any:
    def validate(value: Any) -> Any:
        if isinstance(value, str) and "${" in value:
            return value  # checked once resolved for a customer (effective)
        return check(value)

    return Annotated[Any, PlainValidator(validate), WithJsonSchema(
        {"anyOf": [schema, {"type": "string", "pattern": r"\$\{"}]}
    )]  # fmt: skip


def _failures(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FAILURES:
        raise ValueError(f"expected a whole number of failures from 1 to {MAX_FAILURES}, got {value!r}")
    return value


DurationValue = _or_reference(
    duration_seconds,
    {"anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_SECONDS},
        {"type": "string", "pattern": _DURATION.pattern},
    ]},
)  # fmt: skip
FailureCount = _or_reference(_failures, {"type": "integer", "minimum": 1, "maximum": MAX_FAILURES})


class MonitorSettings(StrictModel):
    """What to watch on each flow of an instance; every key optional (unset: the next level's value)."""

    enabled: bool | None = Field(None, description="false: no monitor alerts for this instance.")
    overdue_after: DurationValue | None = Field(
        None,
        description="Alert when a scheduled run has not succeeded this long after it was due "
        f"({DURATION_HELP}). Unset: off.",
    )
    max_duration: DurationValue | None = Field(
        None, description=f"Alert when a run is still running after this long ({DURATION_HELP}). Unset: off."
    )
    warn_after_failures: FailureCount | None = Field(
        None, description="Warn when a flow's last N finished runs all failed. Unset: 3."
    )
    deactivate_after_failures: FailureCount | None = Field(
        None,
        description="Deactivate the instance (pause its DAGs) when a flow's last M finished runs all "
        "failed, announced by a warning at M-1. Unset: never (off by default).",
    )

    @model_validator(mode="after")
    def _deactivation_after_warning(self) -> MonitorSettings:
        m = self.deactivate_after_failures
        if isinstance(m, int) and m < 2:
            raise ValueError("deactivate_after_failures must be at least 2, so a warning can announce it")
        return self


class AppMonitors(StrictModel):
    """``include/app.yaml`` ``monitors:``: the evaluating DAG and where alerts go besides Slack and e-mail."""

    enabled: bool = Field(True, description="false: no monitors DAG.")
    api_connection: str = Field(
        pattern=r"^[A-Za-z0-9_.\-]{1,250}$",
        description="Airflow connection of the API server (base URL, an API user's login/password): the "
        "monitors DAG asks it to evaluate every instance's monitors.",
    )
    schedule: str = Field("1m", description="How often monitors are evaluated (an interval or a cron).")
    webhook_connection: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]{1,250}$",
        description="http connection of the SaaS backend: base URL, and the Standard Webhooks signing "
        "secret as password. Unset: no webhook.",
    )
    webhook_endpoint: str = Field("", description="Path appended to the connection's base URL.")
    defaults: MonitorSettings = Field(
        default_factory=MonitorSettings, description="Defaults of every instance."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from b2b_integrations.config.schedules import check_schedule

        return check_schedule(value)


DEFAULT_WARN_AFTER_FAILURES = 3


@dataclass(frozen=True)
class Monitors:
    """One instance's monitors, resolved and checked (seconds and counts; None: off)."""

    enabled: bool = True
    overdue_after: float | None = None
    max_duration: float | None = None
    warn_after_failures: int | None = DEFAULT_WARN_AFTER_FAILURES
    deactivate_after_failures: int | None = None


class MonitorConfigError(ValueError):
    """A merged, resolved block is invalid; ``key`` is the block's key that is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def effective(
    *levels: MonitorSettings | Mapping[str, Any] | None, config: Mapping[str, Any] | None = None
) -> Monitors:
    """Merge the levels (least specific first), resolve ``${config.*}`` and check the result.

    :raises MonitorConfigError: naming the key, e.g. ``overdue_after: expected seconds ...``.
    """
    from b2b_integrations.config.references import iter_references, resolve

    merged: dict[str, Any] = {}
    for level in levels:
        if level is None:
            continue
        data = level.model_dump(exclude_none=True) if isinstance(level, MonitorSettings) else dict(level)
        merged.update({k: v for k, v in data.items() if v is not None})
    for path, scope, name in iter_references(merged):
        if scope != "config" or name not in (config or {}):
            key = str(path[0]) if path else "monitors"
            raise MonitorConfigError(key, f"unknown reference {name!r} (use ${{config.<variable>}})")
    resolved = resolve(merged, {"config": dict(config or {})})
    try:
        checked = MonitorSettings.model_validate(resolved)
    except ValidationError as e:
        from b2b_integrations.config.loader import _describe  # the loader's wording, for one voice

        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "monitors"
        raise MonitorConfigError(key, _describe(first)) from None
    for key in ("overdue_after", "max_duration", "warn_after_failures", "deactivate_after_failures"):
        value = getattr(checked, key)
        if isinstance(value, str) and "${" in value:  # a reference resolved to another reference
            raise MonitorConfigError(key, f"unresolved reference {value!r}")
    return Monitors(
        enabled=checked.enabled if checked.enabled is not None else True,
        overdue_after=duration_seconds(checked.overdue_after) if checked.overdue_after is not None else None,
        max_duration=duration_seconds(checked.max_duration) if checked.max_duration is not None else None,
        warn_after_failures=checked.warn_after_failures or DEFAULT_WARN_AFTER_FAILURES,
        deactivate_after_failures=checked.deactivate_after_failures,
    )
