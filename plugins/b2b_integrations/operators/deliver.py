"""Deliver a report file to the customer's targets, each once per report and period (the ``deliver`` step)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.delivery import build_target
from b2b_integrations.delivery.base import DeliveryContext, DeliveryTarget, ReportFile, delivery_id
from b2b_integrations.delivery.config import parse_targets
from b2b_integrations.errors import FatalStepError, RetriableStepError, StepError
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.state import deliveries

if TYPE_CHECKING:
    from airflow.sdk import Context

FORCE_PARAM = "force_resend"
_TRUE = frozenset({"true", "1", "yes", "on"})


def is_true(value: Any) -> bool:
    """A flag from an argument, a param or a run's conf: booleans, or text such as a rendered template."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return value is True or (isinstance(value, int) and value == 1)


def force_requested(force: Any, context: Context | dict[str, Any]) -> str | None:
    """Where a forced resend was asked for (argument, params or run conf), or None."""
    if is_true(force):
        return "the force argument"
    if is_true((context.get("params") or {}).get(FORCE_PARAM)):
        return f"params[{FORCE_PARAM!r}]"
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    if isinstance(conf, dict) and is_true(conf.get(FORCE_PARAM)):
        return f"the run's conf[{FORCE_PARAM!r}]"
    return None


def _label(target: DeliveryTarget) -> str:
    """``email``, or ``finance (email)`` when the name does not say the type."""
    return target.name if target.name == target.type else f"{target.name} ({target.type})"


@dataclass
class _Outcome:
    target: DeliveryTarget
    status: str  # "sent", "skipped" or "failed"
    receipt: dict[str, Any] | None = None
    error: str | None = None
    fatal: bool = False

    def as_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.target.name, "type": self.target.type, "status": self.status}
        if self.receipt is not None:
            out["receipt"] = self.receipt
        if self.error is not None:
            out["error"] = self.error
        return out


class DeliverOperator(StepOperator):
    """
    Send the upstream report file to each target (SFTP, email, Slack, HTTP, local/object storage), once per
    report and period.

    For each target in order: skip it if the delivery ledger (``b2b_deliveries`` in ``db_conn_id``'s
    database) says it already has this report for this period, unless a resend is forced; otherwise deliver
    and commit the ledger row at once. A failing target does not stop the others; at the end the task fails
    naming every failed target, and its retry sends only those. Forced resends: ``force``, or
    ``force_resend`` true in the run's params or conf.

    :param db_conn_id: Airflow connection of the database holding the delivery ledger.
    :param targets: Target options (see ``delivery.config``), e.g. ``[{"type": "sftp", "connection": ...,
        "folder": "/outbox"}]``. A target's ``connection`` is an Airflow connection id, unless
        ``target_conn_ids`` maps the target's name (generated DAGs: slots bound by the planner). (templated)
    :param target_conn_ids: Target name -> Airflow connection id.
    :param report: The report to deliver (the report step's result dict); default: the return value of
        ``input_task_id``. (templated, so an ``XComArg`` works)
    :param force: Deliver even to targets that already have this report and period. (templated)
    """

    template_fields: Sequence[str] = ("targets", "report", "force")
    ui_color = "#fdf3e1"

    def __init__(
        self,
        *,
        db_conn_id: str | None,
        targets: list[dict[str, Any]],
        target_conn_ids: dict[str, str | None] | None = None,
        report: dict[str, Any] | None = None,
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.db_conn_id = db_conn_id
        self.targets = targets
        self.target_conn_ids = target_conn_ids or {}
        self.report = report
        self.force = force

    def run_step(self, context: Context) -> dict[str, Any]:
        report, targets = self._inputs(context)
        forced_by = force_requested(self.force, context)
        try:
            report.verify()
        except RetriableStepError as e:
            raise RetriableStepError(f"{self.where}: {e}") from None
        self.log.info(
            "Delivering %s (report %s, period %s, %d bytes, %s rows) to %d target(s)%s",
            report.name, report.report, report.period, report.size, report.rows, len(targets),
            f"; resend forced by {forced_by}" if forced_by else "",
        )  # fmt: skip
        hook, _ = get_db_hook(self.db_conn_id)
        with closing(hook.get_conn()) as conn:
            deliveries.ensure_table(conn)
            outcomes = [
                self._deliver_one(conn, hook.placeholder, report, target, f"{n}/{len(targets)}", forced_by)
                for n, target in enumerate(targets, start=1)
            ]
        counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("sent", "skipped", "failed")}
        self.log.info("Delivery summary: %(sent)d sent, %(skipped)d skipped, %(failed)d failed", counts)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise self._failure(report, failed, len(targets))
        return {"report": report.report, "period": report.period, "file": report.name, **counts,
                "targets": [o.as_xcom() for o in outcomes]}  # fmt: skip

    def _inputs(self, context: Context) -> tuple[ReportFile, list[DeliveryTarget]]:
        raw = self.report
        source = "the report argument"
        if raw is None:
            if self.input_task_id is None:
                raise FatalStepError("no report: set input_task_id (the report step) or report")
            raw = context["ti"].xcom_pull(task_ids=self.input_task_id)
            source = f"upstream step {self.input_task_id!r}"
        try:
            report = ReportFile.from_xcom(raw)
        except ValueError as e:
            raise FatalStepError(f"{source}: {e}") from None
        try:
            configs = parse_targets(self.targets)
        except ValueError as e:
            raise FatalStepError(f"invalid deliver targets: {e}") from None
        targets = []
        for config in configs:
            name = config.target_name
            conn_id = self.target_conn_ids[name] if name in self.target_conn_ids else config.connection
            targets.append(build_target(config, conn_id))
        return report, targets

    def _deliver_one(
        self,
        conn: Any,
        placeholder: str,
        report: ReportFile,
        target: DeliveryTarget,
        position: str,
        forced_by: str | None,
    ) -> _Outcome:
        label = f"target {position} {_label(target)}"
        key = deliveries.DeliveryKey(
            self.customer_id, self.integration, report.report, report.period, target.name
        )
        previous = deliveries.lookup(conn, placeholder, key)
        if previous is not None and previous.delivered and not forced_by:
            if previous.sha256 == report.sha256:
                self.log.info("%s: already delivered at %s; skipped", label, previous.delivered_at)
            else:  # e.g. the period was re-rendered after a data fix: a person decides whether to resend
                self.log.warning(
                    "%s: already delivered at %s; skipped, although the report's content changed since (sha256 "
                    "%s -> %s): force a resend to send the new version",
                    label, previous.delivered_at, (previous.sha256 or "")[:12], report.sha256[:12],
                )  # fmt: skip
            return _Outcome(target, "skipped", receipt=previous.receipt)
        context = DeliveryContext(
            customer_id=self.customer_id,
            integration=self.integration,
            flow=self.flow,
            delivery_id=delivery_id(*key.values(), generation=previous.sends if previous else 0),
            log=self.log,
        )
        self.log.info("target %s: sending to %s", position, target.describe())
        try:
            receipt = target.deliver(report, context)
        except Exception as e:
            # Our errors are worded for people; anything else (a library's) is named by its type.
            error = context.redact(
                str(e) if isinstance(e, StepError) and str(e) else f"{type(e).__name__}: {e}"
            )
            self.log.warning("%s: failed: %s", label, error)
            deliveries.record_failed(
                conn, placeholder, key, target_type=target.type, flow=self.flow, error=error
            )
            return _Outcome(target, "failed", error=error, fatal=isinstance(e, FatalStepError))
        deliveries.record_delivered(
            conn, placeholder, key, target_type=target.type, flow=self.flow, file_name=report.name,
            sha256=report.sha256, size_bytes=report.size, receipt=receipt,
        )  # fmt: skip
        self.log.info("%s: sent: %s", label, receipt)
        return _Outcome(target, "sent", receipt=receipt)

    def _failure(self, report: ReportFile, failed: list[_Outcome], total: int) -> Exception:
        details = "; ".join(f"{_label(o.target)}: {o.error}" for o in failed)
        message = (
            f"report {report.report} for period {report.period} ({report.name}): {len(failed)} of {total} "
            f"target(s) failed: {details}"
        )
        if all(o.fatal for o in failed):
            return FatalStepError(f"{message} (retrying cannot help: fix the target or its connection)")
        # StepOperator only prefixes fatal errors; this one is retried, so it carries the prefix itself.
        return RetriableStepError(
            f"{self.where}: {message} (the targets that succeeded are recorded and are not sent again on retry)"
        )
