"""Base class for operators generated from flow steps (also usable in hand-written DAGs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.config.references import resolve
from b2b_integrations.errors import FatalStepError
from b2b_integrations.staging import STAGED_KEY, StagedRecords, read_records, stage_path, write_records

if TYPE_CHECKING:
    import jinja2
    import pandas as pd
    from airflow.sdk import Context


class StepOperator(BaseOperator):
    """
    Common behaviour of step operators: who the run is for, reading the upstream step's records,
    staging this step's records, and failing fast (no retry) on :class:`FatalStepError`.

    :param customer_id: Customer the run belongs to (names files and log lines).
    :param integration: Integration name.
    :param flow: Flow name.
    :param input_task_id: Task whose staged records are this step's input; None for the first step.
    :param config_refs: Argument name -> its value with ``${config.NAME}`` references left in place; resolved
        from the run's params before templating, so a manual run with edited params uses the edited values.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        customer_id: str,
        integration: str,
        flow: str,
        input_task_id: str | None = None,
        config_refs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.customer_id = customer_id
        self.integration = integration
        self.flow = flow
        self.input_task_id = input_task_id
        self.config_refs = config_refs or {}

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        params = context.get("params") or {}
        for name, raw in self.config_refs.items():
            setattr(self, name, resolve(raw, {"config": params}))
        super().render_template_fields(context, jinja_env)

    @property
    def where(self) -> str:
        """``customer acme, integration crm, flow contacts, step load``: prefix for error messages."""
        return f"customer {self.customer_id}, integration {self.integration}, flow {self.flow}, step {self.task_id}"

    def execute(self, context: Context) -> Any:
        try:
            result = self.run_step(context)
        except FatalStepError as e:
            raise AirflowFailException(f"{self.where}: {e}") from e
        if isinstance(result, dict) and "path" in result:
            # Flows triggered by this one's output receive the staged records through the asset event.
            for outlet in self.outlets:
                context["outlet_events"][outlet].extra = {STAGED_KEY: dict(result)}
        return result

    def run_step(self, context: Context) -> Any:
        """Do the step's work; subclasses implement this instead of ``execute``."""
        raise NotImplementedError

    def input_refs(self, context: Context) -> list[dict[str, Any]] | None:
        """
        References to this step's input: the upstream step's XCom, or for a flow's first step the records
        of every asset event that triggered the run (several events queued before a run form one batch).
        None means the step has no input (a scheduled first step).
        """
        if self.input_task_id is not None:
            ref = context["ti"].xcom_pull(task_ids=self.input_task_id)
            if not isinstance(ref, dict) or "path" not in ref:
                raise FatalStepError(
                    f"upstream step {self.input_task_id!r} returned no staged records (got {type(ref).__name__})"
                )
            return [ref]
        events = context.get("triggering_asset_events") or {}
        refs = [
            event.extra[STAGED_KEY]
            for _, batch in events.items()
            for event in batch
            if STAGED_KEY in (event.extra or {})
        ]
        return refs or None

    def load_input(self, context: Context) -> pd.DataFrame | None:
        """The input records as one DataFrame, or None when the step has no input."""
        refs = self.input_refs(context)
        if refs is None:
            return None
        frames = [read_records(ref) for ref in refs]
        if len(frames) == 1:
            frame = frames[0]
        else:
            import pandas as pd

            frame = pd.concat(frames, ignore_index=True)
        self.log.info("Read %d input rows from %d staged batch(es)", len(frame), len(refs))
        return frame

    def stage_output(self, context: Context, frame: pd.DataFrame) -> StagedRecords:
        """Stage records for the next step; the path is fixed per run and task, so retries overwrite."""
        path = stage_path(self.customer_id, self.integration, self.flow, context["run_id"], self.task_id)
        ref = write_records(frame, path)
        self.log.info("Staged %d rows for the next step", ref["rows"])
        return ref
