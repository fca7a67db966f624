"""``include/app.yaml``'s ``staging`` block: how long staged records are kept."""

from __future__ import annotations

from pydantic import Field

from b2b_integrations.config.base import StrictModel


class StagingSettings(StrictModel):
    """Retention of staged records (the files steps hand each other, locally or on object storage)."""

    retention_hours: float = Field(
        168,
        ge=1,
        description="Staged files last written longer ago than this are deleted. Must exceed the longest "
        "run, and the time a failed run may wait to be retried from its failed step.",
    )
    schedule: str = Field("@daily", description="When the retention DAG runs: an interval (6h) or a cron.")
