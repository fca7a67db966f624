"""The health word of an instance, decided from its facts (instances/health.py)."""

from __future__ import annotations

import pytest

from b2b_integrations.instances.health import FlowFacts, InstanceFacts, decide

OK = FlowFacts("sync", is_paused=False, last_state="success", has_runs=True)


def _facts(*flows: FlowFacts, active: bool = True, problems: int = 0) -> InstanceFacts:
    return InstanceFacts(active=active, config_problems=problems, flows=list(flows))


@pytest.mark.parametrize(
    ("facts", "word", "reason"),
    [
        (_facts(OK), "healthy", None),
        (_facts(OK, problems=2), "config problem", "2 config problem(s)"),
        (_facts(OK, active=False), "paused", "inactive"),
        (_facts(FlowFacts("a", is_paused=True, has_runs=True, last_state="failed")), "paused", "every flow"),
        (
            _facts(OK, FlowFacts("push", is_paused=False, last_state="failed", has_runs=True)),
            "failing",
            "flow push: last run failed",
        ),
        (_facts(FlowFacts("a", is_paused=False), FlowFacts("b", is_paused=False)), "never run", "no flow"),
        (
            _facts(FlowFacts("a", False, "success", True, set_aside={"dead_letters": 3})),
            "degraded",
            "flow a: 3 dead letters",
        ),
        (_facts(FlowFacts("a", False, "success", True, retried=True)), "degraded", "needed a retry"),
        # A count of zero is nothing set aside.
        (_facts(FlowFacts("a", False, "success", True, set_aside={"quarantined_files": 0})), "healthy", None),
        # A run in progress (not finished yet) with an earlier success counts as that success.
        (_facts(FlowFacts("a", False, None, True)), "healthy", None),
    ],
    ids=[
        "healthy",
        "config-problem-wins",
        "inactive",
        "all-paused-wins-over-failed",
        "one-failed-flow",
        "never-run",
        "dead-letters",
        "retry",
        "zero-counts",
        "running-only",
    ],
)
def test_health_word(facts: InstanceFacts, word: str, reason: str | None) -> None:
    found, reasons = decide(facts)
    assert found == word
    if reason is None:
        assert reasons == []
    else:
        assert any(reason in r for r in reasons), reasons


def test_failing_lists_every_failed_flow_and_outranks_degraded() -> None:
    flows = [
        FlowFacts("a", False, "failed", True),
        FlowFacts("b", False, "success", True, set_aside={"quarantined_messages": 1}),
        FlowFacts("c", False, "failed", True),
    ]
    assert decide(_facts(*flows)) == ("failing", ["flow a: last run failed", "flow c: last run failed"])


def test_an_instance_without_flows_never_ran() -> None:
    assert decide(_facts())[0] == "never run"
