"""Base class for operators generated from flow steps (also usable in hand-written DAGs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
    DagRunTriggerException,
    DownstreamTasksSkipped,
)

from b2b_integrations.config.base import JINJA_REFUSED, jinja_markers_in
from b2b_integrations.config.references import iter_references, resolve
from b2b_integrations.errors import FatalStepError, RetriableStepError, StepFailed
from b2b_integrations.inbox import (  # noqa: F401 - inbox_messages, unreadable_event_id: old import path
    api_status,
    inbox_messages,
    next_position,
    read_inbox,
    unreadable_event_id,
)
from b2b_integrations.staging import (
    EVENT_CURSOR_KEY,
    STAGED_KEY,
    StagedRecords,
    read_records,
    stage_path,
    write_records,
)

MESSAGE_ID = "_b2b_message_id"
RECEIVED_AT = "_b2b_received_at"

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
        event_inbox: str | None = None,
        event_cursor_from: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.customer_id = customer_id
        self.integration = integration
        self.flow = flow
        self.input_task_id = input_task_id
        self.config_refs = config_refs or {}
        self.event_inbox = event_inbox
        """URI of the flow's inbox asset (event-driven flows, first and last step)."""
        self.event_cursor_from = event_cursor_from
        """Last step only: the first step, whose result says up to which event this run got."""
        self.handled_events: list[str] = []  # message ids of the webhooks this run's input came from
        self.events_cursor: dict[str, Any] | None = None
        self.quarantined: list[dict[str, Any]] = []
        """Messages this step set aside (see :meth:`quarantine`); the last step stores them."""

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        import jinja2

        params = context.get("params") or {}
        for _, scope, key in iter_references(self.config_refs):
            # Whoever set the run's params (the trigger form, Airflow's REST API), a value filled into a
            # templated option must not become a template: Jinja here reads every connection's secrets.
            if scope == "config" and next(jinja_markers_in(params.get(key)), None) is not None:
                raise AirflowFailException(f"{self.where}: config.{key}: {JINJA_REFUSED}")
        for name, raw in self.config_refs.items():
            setattr(self, name, resolve(raw, {"config": params}))
        try:
            super().render_template_fields(with_run_date(context), jinja_env)
        except jinja2.TemplateError as e:
            # The same template fails the same way on every try.
            raise AirflowFailException(f"{self.where}: cannot render its options: {e}") from e
        except Exception as e:
            raise StepFailed(f"{self.where}: cannot render its options: {type(e).__name__}: {e}") from e

    @property
    def where(self) -> str:
        """``customer acme, integration crm, flow contacts, step load``: prefix for error messages."""
        return f"customer {self.customer_id}, integration {self.integration}, flow {self.flow}, step {self.task_id}"

    def execute(self, context: Context) -> Any:
        # Per-run state starts empty even when the operator object runs again in one process (dag.test()).
        self.handled_events, self.quarantined, self.events_cursor = [], [], None
        try:
            result = self.run_step(context)
        except FatalStepError as e:
            raise AirflowFailException(self._named(e)) from e
        except _CONTROL_FLOW:
            raise
        except AirflowFailException as e:
            raise AirflowFailException(self._named(e)) from e
        except Exception as e:
            # Whatever raised it (a driver's UndefinedTable, Airflow's missing connection, a bug), the
            # message must say whose run failed; Airflow retries it as it would the original.
            if self.where in str(e):
                raise
            named = RetriableStepError if isinstance(e, RetriableStepError) else StepFailed
            raise named(self._named(e, "" if named is RetriableStepError else type(e).__name__)) from e
        if isinstance(result, dict) and self.events_cursor is not None:
            # Which events this run processed, and the position the last step commits when all went well.
            result = {**result, "webhook_events": self.handled_events, "webhook_cursor": self.events_cursor}
        if isinstance(result, dict) and self.quarantined:
            result = {**result, "quarantined": self.quarantined}
        if self.event_cursor_from is not None:
            self._advance_event_cursor(context, result)
        if isinstance(result, dict) and "path" in result:
            # Flows triggered by this one's output receive the staged records through the asset event.
            for outlet in self.outlets:
                context["outlet_events"][outlet].extra = {STAGED_KEY: dict(result)}
        return result

    def run_step(self, context: Context) -> Any:
        """Do the step's work; subclasses implement this instead of ``execute``."""
        raise NotImplementedError

    def _named(self, error: BaseException, kind: str = "") -> str:
        """The error's message led by :attr:`where`, unless it names the step already."""
        text = str(error).strip() or type(error).__name__
        if self.where in text:
            return text
        return f"{self.where}: {kind}: {text}" if kind else f"{self.where}: {text}"

    def quarantine(
        self,
        message_id: str,
        text: str,
        *,
        received_at: str | None = None,
        field: str | None = None,
        record: int | None = None,
    ) -> None:
        """Set aside an inbox message (or one record of it) that can never succeed as it is.

        The rest of the batch goes on; the flow's last step stores the message with its reasons in the
        inbox's quarantine (``state.quarantine``, listed and replayed with ``python -m b2b_integrations
        quarantine``) and moves the inbox position past it.
        """
        from b2b_integrations.state.quarantine import reason

        where = "".join(
            [f", record {record}" if record is not None else "", f", field {field!r}" if field else ""]
        )
        self.log.warning("%s: message %s%s quarantined: %s", self.where, message_id, where, text)
        self.quarantined.append(
            {
                "message_id": message_id,
                "received_at": received_at,
                "reason": reason(self.task_id, text, field=field, record=record),
            }
        )

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
        """The input records as one DataFrame, or None when the step has no input.

        A flow's first step triggered by webhooks gets one record per event (a payload that is a JSON list
        gives one record per item), with ``_b2b_message_id`` and ``_b2b_received_at`` columns.
        """
        import pandas as pd

        refs = self.input_refs(context)
        frames = [read_records(ref) for ref in refs or []]
        webhook = self._webhook_records(context) if self.input_task_id is None else []
        if webhook:
            frames.append(pd.DataFrame.from_records(webhook))
        elif self.handled_events and self.input_task_id is None:
            # Every new message was quarantined: no records, but the run must go on to the last step,
            # which stores them and moves the position past them.
            frames.append(pd.DataFrame(columns=[MESSAGE_ID, RECEIVED_AT]))
        if not frames and self.event_inbox is not None and self.input_task_id is None:
            # Another run already took the events that triggered this one (or it was started by hand).
            raise AirflowSkipException("no new events on the inbox; nothing to do")
        if not frames:
            return None
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        self.log.info("Read %d input rows from %d batch(es)", len(frame), len(frames))
        return frame

    def _inbox(self) -> Any:
        return next(a for a in self.inlets if getattr(a, "uri", None) == self.event_inbox)

    def _webhook_records(self, context: Context) -> list[dict[str, Any]]:
        """Every event on the inbox after the stored position, not only those that triggered this run.

        A burst of webhooks can outrun the scheduler: events stored while it creates a run may not trigger
        another one. Reading from the position makes each run take everything waiting, and a failed run
        leaves the position alone, so its events come again.
        """
        if self.event_inbox is None:
            return []
        inbox = self._inbox()
        cursor = context["asset_state_store"][inbox].get(EVENT_CURSOR_KEY)
        accessor = context["inlet_events"][inbox]
        # inclusive: the ids seen at the position's timestamp are skipped below
        fetched, unreadable = read_inbox(
            accessor, cursor["timestamp"] if cursor else None, self.log, self.where
        )
        fresh, self.events_cursor = next_position(cursor, fetched, unreadable)
        for at in unreadable:
            self.handled_events.append(unreadable_event_id(at))
            self.quarantine(
                unreadable_event_id(at),
                f"the inbox event recorded at {at.isoformat()} cannot be returned by Airflow's Execution API "
                "(HTTP 500: a message in it has NaN/Infinity or nesting too deep); its messages are unknown "
                "to the task ('quarantine replay' queues them again one by one)",
                received_at=at.isoformat(),
            )
        events = [m for _, m in fresh]
        if not events and unreadable:
            return []
        if not events:
            self.events_cursor = self.events_cursor or {"timestamp": None, "ids": []}
            self.log.info("No new webhook events on the inbox")
            return []
        self.handled_events = [*self.handled_events, *(e["message_id"] for e in events)]
        self.log.info("Handling %d webhook event(s): %s", len(events), ", ".join(self.handled_events))
        records: list[dict[str, Any]] = []
        store = context["asset_state_store"][inbox]
        for event in events:
            payload = event["payload"] if "payload" in event else self._stored_body(store, event)
            if payload is None:
                continue  # quarantined by _stored_body
            if (bad := unportable_value(payload)) is not None:
                field, problem = bad
                self.quarantine(
                    event["message_id"], problem, received_at=event.get("received_at"), field=field
                )
                continue
            items = payload if isinstance(payload, list) else [payload]
            meta = {MESSAGE_ID: event["message_id"], RECEIVED_AT: event.get("received_at")}
            for item in items:
                records.append({**(item if isinstance(item, dict) else {"value": item}), **meta})
        return records

    def _stored_body(self, store: Any, event: dict[str, Any]) -> Any:
        """A large message's body from the inbox's state store; None (the message quarantined) when it can
        never be read: gone, or a body the Execution API cannot return (NaN, Infinity, nesting deeper than
        its JSON encoder allows: the API answers 500 for that key, every time)."""
        key = event["payload_key"]
        try:
            payload = store.get(key)
        except Exception as e:
            if api_status(e) != 500:
                raise  # API unreachable, timeout, 502/503: a retry reads it
            try:
                store.get(EVENT_CURSOR_KEY)  # the API answers another read...
            except Exception:
                raise e from None
            try:
                payload = store.get(key)  # ...and this key fails again: the fault is this body's
            except Exception as again:
                if api_status(again) != 500:
                    raise
                self.quarantine(
                    event["message_id"],
                    f"its stored body (state store key {key!r}) cannot be returned by Airflow's Execution "
                    "API (HTTP 500; e.g. NaN/Infinity or nesting too deep)",
                    received_at=event.get("received_at"),
                )
                return None
        if payload is None:
            self.quarantine(
                event["message_id"],
                f"its stored body is gone from the inbox's state store (key {key!r})",
                received_at=event.get("received_at"),
            )
        return payload

    def _advance_event_cursor(self, context: Context, result: Any) -> None:
        """Last step of an event-driven flow: its work is done, so the run's events are consumed."""
        first = (
            result
            if self.event_cursor_from == self.task_id
            else context["ti"].xcom_pull(task_ids=self.event_cursor_from)
        )
        cursor = first.get("webhook_cursor") if isinstance(first, dict) else None
        store = context["asset_state_store"][self._inbox()]
        self._store_quarantined(context, store)
        if cursor and cursor.get("timestamp"):
            store.set(EVENT_CURSOR_KEY, cursor)
            self.log.info("Inbox position moved to %s", cursor["timestamp"])

    def _store_quarantined(self, context: Context, store: Any) -> None:
        """Every message this run's steps set aside, stored before the position moves past them."""
        from b2b_integrations.state.quarantine import write_entries

        found = list(self.quarantined)
        for task_id in sorted(self.get_flat_relative_ids(upstream=True)):
            upstream = context["ti"].xcom_pull(task_ids=task_id)
            if isinstance(upstream, dict):
                found.extend(upstream.get("quarantined") or [])
        if not found:
            return
        ids = write_entries(
            store,
            found,
            customer_id=self.customer_id,
            integration=self.integration,
            flow=self.flow,
            dag_id=self.dag_id,
            run_id=context["run_id"],
        )
        self.log.warning(
            "%s: %d message(s) quarantined (python -m b2b_integrations quarantine list %s %s %s): %s",
            self.where,
            len(ids),
            self.customer_id,
            self.integration,
            self.flow,
            ", ".join(ids),
        )

    def stage_output(self, context: Context, frame: pd.DataFrame) -> StagedRecords:
        """Stage records for the next step; the path is fixed per run and task, so retries overwrite."""
        path = stage_path(self.customer_id, self.integration, self.flow, context["run_id"], self.task_id)
        ref = write_records(frame, path)
        self.log.info("Staged %d rows for the next step", ref["rows"])
        return ref


_INT64 = 2**63
# Exceptions that steer Airflow (skip, reschedule, trigger) rather than report a failure: passed on as raised.
_CONTROL_FLOW = (
    AirflowSkipException,
    AirflowRescheduleException,
    DagRunTriggerException,
    DownstreamTasksSkipped,
)
# Set by Airflow only for runs with a logical date, which Airflow 3 leaves out of manual runs by default.
_RUN_DATE_KEYS = ("logical_date", "ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz")


def with_run_date(context: Any) -> Any:
    """The context for rendering a step's options: in a run without a logical date (a manual trigger),
    ``{{ ds }}``, ``{{ ts }}``, ``{{ logical_date }}`` and the data interval come from the time the run was
    requested (``run_after``), as a cron-scheduled run's would come from its tick; any other run's context
    is returned unchanged."""
    dag_run = context.get("dag_run")
    at = getattr(dag_run, "run_after", None)
    if context.get("logical_date") is not None or at is None:
        return context
    import pendulum

    at = pendulum.instance(at)
    ds, ts = at.strftime("%Y-%m-%d"), at.isoformat()
    values = dict(
        zip(
            _RUN_DATE_KEYS,
            (
                at,
                ds,
                ds.replace("-", ""),
                ts,
                at.strftime("%Y%m%dT%H%M%S"),
                ts.replace("-", "").replace(":", ""),
            ),
            strict=True,
        )
    )
    interval = {key: at for key in ("data_interval_start", "data_interval_end") if context.get(key) is None}
    return {**context, **values, **interval}


def unportable_value(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, reason) of the first value records cannot carry between steps and into a database:
    a non-finite number (JSON has none; a pub/sub body may still spell NaN) or an integer beyond 64 bits
    (the staged records' JSON reader refuses it, and no SQL integer type holds it)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return path or "(body)", f"field {path or '(body)'!r}: {value} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return path or "(body)", f"field {path or '(body)'!r}: integer {value} does not fit in 64 bits"
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for child_path, child in items:
        if (found := unportable_value(child, child_path)) is not None:
            return found
    return None
