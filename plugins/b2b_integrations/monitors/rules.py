"""The monitor rules: facts about one flow in, the alerts it deserves now out. No I/O, no clock.

Each alert names an *episode*: what stays the same while the problem lasts (the due time a flow is late
for, the run that runs too long, the first failed run of a failure streak, the run that recovered). The
ledger keys every alert by (instance, flow, kind, episode), so evaluating every minute repeats the same
key and nothing is sent twice; a new episode is a new alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from b2b_integrations.config.monitors import Monitors

OVERDUE = "overdue"
DURATION_EXCEEDED = "duration_exceeded"
FAILURES = "failures"
DEACTIVATION_WARNING = "deactivation_warning"
DEACTIVATED = "deactivated"
RECOVERED = "recovered"
PROBLEM_KINDS = (OVERDUE, DURATION_EXCEEDED, FAILURES, DEACTIVATION_WARNING, DEACTIVATED)


@dataclass(frozen=True)
class FlowFacts:
    """What Airflow's metadata DB and the ledger say about one flow's DAG, at one moment."""

    customer: str
    integration: str
    flow: str
    dag_id: str
    is_paused: bool = False
    next_due: datetime | None = None
    """When the scheduler will create the next scheduled run (None: not time-scheduled)."""
    last_success_due: datetime | None = None
    """``run_after`` of the newest successful run."""
    last_success_end: datetime | None = None
    last_success_run_id: str | None = None
    first_unmet_due: datetime | None = None
    """``run_after`` of the oldest scheduled run after the last success (in any state)."""
    failures_since_success: int = 0
    """Failed runs after the last success: the current streak of consecutive failures."""
    first_failure_run_id: str | None = None
    running: tuple[tuple[str, datetime], ...] = ()
    """(run id, start) of each running run."""
    last_alert_at: datetime | None = None
    """When the newest problem alert of this flow was raised (ledger)."""
    last_recovered_at: datetime | None = None


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: str
    """``critical``, ``warning`` or ``info``."""
    customer: str
    integration: str
    flow: str
    dag_id: str
    episode: str
    message: str
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def deactivates(self) -> bool:
        return self.kind == DEACTIVATED


def evaluate(facts: FlowFacts, monitors: Monitors, now: datetime) -> list[Alert]:
    """The alerts ``facts`` call for at ``now`` (the ledger decides which are new)."""
    if not monitors.enabled:
        return []
    return [
        *_overdue(facts, monitors, now),
        *_too_long(facts, monitors, now),
        *_failures(facts, monitors),
        *_recovered(facts),
    ]


def _alert(facts: FlowFacts, kind: str, severity: str, episode: str, message: str,
           run_id: str | None = None, **details: Any) -> Alert:  # fmt: skip
    return Alert(kind, severity, facts.customer, facts.integration, facts.flow, facts.dag_id, episode, message,
                 run_id, details)  # fmt: skip


def _overdue(facts: FlowFacts, monitors: Monitors, now: datetime) -> list[Alert]:
    due = _unmet_due(facts, now)
    if monitors.overdue_after is None or due is None or facts.is_paused:
        return []
    late = (now - due).total_seconds()
    if late <= monitors.overdue_after:
        return []
    return [_alert(facts, OVERDUE, "critical", due.isoformat(),
                   f"has not succeeded since its run due at {due.isoformat(timespec='seconds')} "
                   f"({_span(late)} late; allowed {_span(monitors.overdue_after)})",
                   due_at=due.isoformat(), late_seconds=round(late), allowed_seconds=monitors.overdue_after)]  # fmt: skip


def _too_long(facts: FlowFacts, monitors: Monitors, now: datetime) -> list[Alert]:
    if monitors.max_duration is None:
        return []
    found = []
    for run_id, started in facts.running:
        ran = (now - started).total_seconds()
        if ran > monitors.max_duration:
            found.append(_alert(facts, DURATION_EXCEEDED, "warning", run_id,
                                f"run {run_id} has been running for {_span(ran)} (allowed {_span(monitors.max_duration)})",
                                run_id, started_at=started.isoformat(), running_seconds=round(ran),
                                allowed_seconds=monitors.max_duration))  # fmt: skip
    return found


def _failures(facts: FlowFacts, monitors: Monitors) -> list[Alert]:
    failed, streak = facts.failures_since_success, facts.first_failure_run_id or ""
    if not streak or facts.is_paused:
        return []
    found = []
    warn, deactivate = monitors.warn_after_failures, monitors.deactivate_after_failures
    if warn is not None and failed >= warn:
        found.append(_alert(facts, FAILURES, "warning", streak, f"its last {failed} runs failed", streak,
                            failures=failed, threshold=warn))  # fmt: skip
    if deactivate is not None and failed >= deactivate - 1:
        found.append(_alert(facts, DEACTIVATION_WARNING, "critical", streak,
                            f"its last {failed} runs failed: the integration is deactivated (its DAGs paused) "
                            f"after {deactivate} consecutive failures",
                            streak, failures=failed, deactivate_after=deactivate))  # fmt: skip
    if deactivate is not None and failed >= deactivate:
        found.append(_alert(facts, DEACTIVATED, "critical", streak,
                            f"its last {failed} runs failed: the integration was deactivated (its DAGs paused); "
                            "activate it again once the cause is fixed",
                            streak, failures=failed, deactivate_after=deactivate))  # fmt: skip
    return found


def _recovered(facts: FlowFacts) -> list[Alert]:
    alerted, recovered, ended = facts.last_alert_at, facts.last_recovered_at, facts.last_success_end
    if alerted is None or ended is None or not facts.last_success_run_id:
        return []
    if (recovered is not None and recovered >= alerted) or ended <= alerted:
        return []
    run_id = facts.last_success_run_id
    return [_alert(facts, RECOVERED, "info", run_id, f"succeeded again (run {run_id})", run_id)]


def _unmet_due(facts: FlowFacts, now: datetime) -> datetime | None:
    """The oldest due time since the last success that no successful run has met yet."""
    if facts.first_unmet_due is not None:
        return facts.first_unmet_due
    due = facts.next_due
    # The scheduler has not created the run that was due (down, or the DAG was just unpaused).
    if due is not None and due <= now and (facts.last_success_due is None or due > facts.last_success_due):
        return due
    return None


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
