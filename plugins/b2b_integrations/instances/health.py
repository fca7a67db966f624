"""One word for how an instance is doing, decided from facts the status route gathered (pure, no I/O).

The words, in the order they win (the first that applies is the answer, so a customer sees the most
urgent thing first):

- ``config problem``: its customer file or its integration template has a problem the loader reports
  (the deployment runs the last valid version meanwhile, or nothing for a new instance);
- ``paused``: the instance is inactive, or every flow it has is paused (nothing will run);
- ``failing``: the last finished run of some flow failed;
- ``never run``: no flow has run yet;
- ``degraded``: runs succeed, but something was set aside (quarantined records, messages or files, dead
  letters, deliveries waiting) or the last run of a flow needed a retry;
- ``healthy``: none of the above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Health = Literal["healthy", "degraded", "failing", "paused", "never run", "config problem"]
HEALTH_WORDS: tuple[Health, ...] = ("healthy", "degraded", "failing", "paused", "never run", "config problem")


@dataclass(frozen=True)
class FlowFacts:
    """What one flow's status says, reduced to what the health word depends on."""

    flow: str
    is_paused: bool
    last_state: str | None = None
    """State of the flow's last finished run (``success`` / ``failed``), None when it never finished one."""
    has_runs: bool = False
    retried: bool = False
    """A step of the last finished run needed more than one try."""
    set_aside: dict[str, int] = field(default_factory=dict)
    """Counts of things set aside and not handled yet (quarantined records, dead letters ...), by name."""


@dataclass(frozen=True)
class InstanceFacts:
    active: bool
    config_problems: int
    flows: Sequence[FlowFacts]


def decide(facts: InstanceFacts) -> tuple[Health, list[str]]:
    """The health word and the reasons behind it (each names the flow it comes from)."""
    if facts.config_problems:
        return "config problem", [f"{facts.config_problems} config problem(s): see config_problems"]
    if not facts.active:
        return "paused", ["the instance is inactive: its flows are paused"]
    if facts.flows and all(f.is_paused for f in facts.flows):
        return "paused", ["every flow is paused"]
    failing = [f"flow {f.flow}: last run failed" for f in facts.flows if f.last_state == "failed"]
    if failing:
        return "failing", failing
    if not any(f.has_runs for f in facts.flows):
        return "never run", ["no flow has run yet"]
    degraded = [
        f"flow {f.flow}: {count} {name.replace('_', ' ')}"
        for f in facts.flows
        for name, count in sorted(f.set_aside.items())
        if count
    ]
    degraded += [f"flow {f.flow}: the last run needed a retry" for f in facts.flows if f.retried]
    if degraded:
        return "degraded", degraded
    return "healthy", []
