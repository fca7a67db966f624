"""Retention of staged records: delete the files steps handed each other once they are old enough."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class StagingRetentionOperator(BaseOperator):
    """
    Delete staged files (``runs/`` of the staging location: ``B2B_STAGING_URL`` on object storage, else
    ``B2B_DATA_DIR``) last written more than ``max_age_hours`` ago; see ``staging.remove_older_than``.

    :param max_age_hours: Age after which a staged file is deleted. (templated)
    """

    template_fields: Sequence[str] = ("max_age_hours",)
    ui_color = "#f3efe0"

    def __init__(self, *, max_age_hours: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_age_hours = max_age_hours

    def execute(self, context: Context) -> dict[str, int]:
        from b2b_integrations.staging import remove_older_than, staging_root

        summary = remove_older_than(float(self.max_age_hours) * 3600)
        self.log.info(
            "Staged files under %s older than %s h: %d removed (%d bytes), %d kept",
            staging_root(),
            self.max_age_hours,
            summary.files_removed,
            summary.bytes_removed,
            summary.files_kept,
        )
        return {"files_removed": summary.files_removed, "bytes_removed": summary.bytes_removed}
