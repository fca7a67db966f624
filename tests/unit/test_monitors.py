"""Alert monitors: the pure rules, the settings' merge and checks, and the config files' validation."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from b2b_integrations.config.loader import load_project
from b2b_integrations.config.monitors import MonitorConfigError, Monitors, effective
from b2b_integrations.monitors.rules import FlowFacts, evaluate
from helpers import REPO, minimal_customer, minimal_template, write_include

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
EXAMPLES = REPO / "docs" / "examples" / "monitors"


def facts(**kw: object) -> FlowFacts:
    return FlowFacts(
        customer="acme", integration="sync", flow="snapshot", dag_id="acme__sync__snapshot", **kw
    )  # type: ignore[arg-type]


def kinds(found: list) -> list[tuple[str, str]]:
    return [(a.kind, a.episode) for a in found]


# ---------------------------------------------------------------------------------------------- rules


def test_overdue_only_after_the_allowed_time_and_keyed_by_the_due_time() -> None:
    due = NOW - timedelta(minutes=10)
    monitors = Monitors(overdue_after=600)
    assert evaluate(facts(first_unmet_due=due), monitors, NOW) == []
    found = evaluate(facts(first_unmet_due=due), monitors, NOW + timedelta(seconds=1))
    assert kinds(found) == [("overdue", due.isoformat())]
    assert found[0].severity == "critical" and "late" in found[0].message


def test_overdue_when_the_scheduler_never_created_the_due_run() -> None:
    due = NOW - timedelta(hours=2)
    ok = facts(next_due=due, last_success_due=due - timedelta(hours=1))
    assert kinds(evaluate(ok, Monitors(overdue_after=60), NOW)) == [("overdue", due.isoformat())]
    # The next due time is in the future, or the last success already met it: nothing is late.
    assert evaluate(facts(next_due=NOW + timedelta(minutes=1)), Monitors(overdue_after=60), NOW) == []
    assert evaluate(facts(next_due=due, last_success_due=due), Monitors(overdue_after=60), NOW) == []


def test_paused_or_disabled_or_unset_monitors_raise_nothing() -> None:
    late = facts(first_unmet_due=NOW - timedelta(days=1), failures_since_success=9, first_failure_run_id="r1")
    assert (
        evaluate(
            facts(first_unmet_due=NOW - timedelta(days=1), is_paused=True), Monitors(overdue_after=1), NOW
        )
        == []
    )
    assert evaluate(late, Monitors(enabled=False, overdue_after=1), NOW) == []
    assert kinds(evaluate(late, Monitors(), NOW)) == [("failures", "r1")]  # overdue unset: off


def test_duration_exceeded_per_run() -> None:
    running = (("r1", NOW - timedelta(minutes=30)), ("r2", NOW - timedelta(minutes=5)))
    found = evaluate(facts(running=running), Monitors(max_duration=600), NOW)
    assert kinds(found) == [("duration_exceeded", "r1")] and found[0].run_id == "r1"


def test_failure_warning_from_n_keyed_by_the_streak() -> None:
    monitors = Monitors(warn_after_failures=3)
    assert evaluate(facts(failures_since_success=2, first_failure_run_id="r1"), monitors, NOW) == []
    three = evaluate(facts(failures_since_success=3, first_failure_run_id="r1"), monitors, NOW)
    four = evaluate(facts(failures_since_success=4, first_failure_run_id="r1"), monitors, NOW)
    assert kinds(three) == kinds(four) == [("failures", "r1")]  # the same episode: sent once


def test_deactivation_is_announced_at_m_minus_1_and_off_by_default() -> None:
    monitors = Monitors(warn_after_failures=10, deactivate_after_failures=3)
    assert evaluate(facts(failures_since_success=1, first_failure_run_id="r1"), monitors, NOW) == []
    assert kinds(evaluate(facts(failures_since_success=2, first_failure_run_id="r1"), monitors, NOW)) == [
        ("deactivation_warning", "r1")
    ]
    found = evaluate(facts(failures_since_success=3, first_failure_run_id="r1"), monitors, NOW)
    assert kinds(found) == [("deactivation_warning", "r1"), ("deactivated", "r1")]
    assert found[-1].deactivates
    # Already paused (by us or by hand): no second deactivation.
    assert (
        evaluate(facts(failures_since_success=3, first_failure_run_id="r1", is_paused=True), monitors, NOW)
        == []
    )
    off = evaluate(facts(failures_since_success=50, first_failure_run_id="r1"), Monitors(), NOW)
    assert not any(a.deactivates for a in off)


def test_recovered_once_after_an_alert() -> None:
    alerted = NOW - timedelta(minutes=10)
    ok = facts(last_alert_at=alerted, last_success_end=NOW - timedelta(minutes=1), last_success_run_id="r9")
    assert kinds(evaluate(ok, Monitors(), NOW)) == [("recovered", "r9")]
    # Recovered already recorded after the alert, or the success is older than the alert, or no alert.
    done = FlowFacts(**{**ok.__dict__, "last_recovered_at": NOW - timedelta(minutes=1)})
    assert evaluate(done, Monitors(), NOW) == []
    older = FlowFacts(**{**ok.__dict__, "last_success_end": alerted - timedelta(seconds=1)})
    assert evaluate(older, Monitors(), NOW) == []
    assert evaluate(FlowFacts(**{**ok.__dict__, "last_alert_at": None}), Monitors(), NOW) == []


# ----------------------------------------------------------------------------------- effective settings


def test_levels_merge_key_by_key_and_references_resolve() -> None:
    monitors = effective(
        {"warn_after_failures": 5, "max_duration": "1h"},
        {"overdue_after": "${config.max_delay}"},
        {"warn_after_failures": 2},
        config={"max_delay": "45m"},
    )
    assert monitors == Monitors(enabled=True, overdue_after=2700, max_duration=3600, warn_after_failures=2)


@pytest.mark.parametrize(
    ("block", "config", "key", "words"),
    [
        ({"overdue_after": -5}, {}, "overdue_after", "positive"),
        ({"overdue_after": "${config.delay}"}, {"delay": float("inf")}, "overdue_after", "finite"),
        ({"overdue_after": "${config.delay}"}, {"delay": float("nan")}, "overdue_after", "finite"),
        ({"max_duration": 10**12}, {}, "max_duration", "at most 30 days"),
        ({"max_duration": "5 fortnights"}, {}, "max_duration", "'15m'"),
        ({"max_duration": True}, {}, "max_duration", "seconds"),
        ({"warn_after_failures": 0}, {}, "warn_after_failures", "from 1 to 1000"),
        ({"deactivate_after_failures": 1}, {}, "monitors", "at least 2"),
        ({"overdue_after": "${config.nope}"}, {}, "overdue_after", "unknown reference 'nope'"),
        ({"overdue_afterr": 5}, {}, "overdue_afterr", "unknown key"),
    ],
)
def test_hostile_settings_are_refused_naming_the_key(block: dict, config: dict, key: str, words: str) -> None:
    with pytest.raises(MonitorConfigError) as caught:
        effective(block, config=config)
    assert caught.value.key == key and words in str(caught.value)


# ------------------------------------------------------------------------------------- config files


def _problems(tmp_path: Path, monitors: object) -> list[str]:
    include = write_include(
        tmp_path / "include", {"sync": minimal_template()}, {"acme": minimal_customer(monitors=monitors)}
    )
    return [f"{p.file}:{p.line}: {p.key_path}: {p.message}" for p in load_project(include).problems]


@pytest.mark.parametrize(
    ("monitors", "path", "words"),
    [
        ({"overdue_after": -1}, "integrations.sync.monitors.overdue_after", "positive"),
        ({"overdue_after": ".inf"}, "integrations.sync.monitors.overdue_after", "expected seconds"),
        ({"max_duration": 1e300}, "integrations.sync.monitors.max_duration", "at most 30 days"),
        ({"warn_after_failures": -3}, "integrations.sync.monitors.warn_after_failures", "from 1 to 1000"),
        ({"page_me": True}, "integrations.sync.monitors.page_me", "unknown key"),
        ("soon", "integrations.sync.monitors", ""),
    ],
)
def test_customer_file_problems_name_file_line_and_key_path(
    tmp_path: Path, monitors: object, path: str, words: str
) -> None:
    found = _problems(tmp_path, monitors)
    assert any(f": {path}: " in p and words in p and "customers/acme.yaml:" in p for p in found), found


def test_the_yaml_infinity_is_refused(tmp_path: Path) -> None:
    include = write_include(tmp_path / "include", {"sync": minimal_template()}, {})
    customer = minimal_customer()
    customer["integrations"]["sync"]["monitors"] = {"max_duration": float("inf")}
    (include / "customers" / "acme.yaml").write_text(yaml.safe_dump(customer), encoding="utf-8")
    problems = load_project(include).problems
    assert any("max_duration" in p.key_path and "finite" in p.message for p in problems)


def test_documented_examples_load_and_give_the_documented_settings(tmp_path: Path) -> None:
    include = tmp_path / "include"
    shutil.copytree(REPO / "include" / "integrations", include / "integrations")
    (include / "customers").mkdir()
    shutil.copy(EXAMPLES / "customer.yaml", include / "customers" / "acme.yaml")
    shutil.copy(EXAMPLES / "app.yaml", include / "app.yaml")
    project = load_project(include)
    assert project.problems == []
    app = project.app.monitors
    assert app.webhook_connection == "saas_backend" and app.api_connection == "b2b_api"
    settings = project.customers[0].integrations["crm_contacts"]
    template = project.template_for("crm_contacts", settings)
    assert effective(app.defaults, template.monitors, settings.monitors) == Monitors(
        overdue_after=2700, max_duration=1200, warn_after_failures=2, deactivate_after_failures=5
    )


def test_a_reference_wrong_only_with_a_customers_value_is_reported_on_its_file(tmp_path: Path) -> None:
    template = minimal_template(monitors={"overdue_after": "${config.label}"})
    include = write_include(
        tmp_path / "include",
        {"sync": template},
        {"acme": minimal_customer(config={"region": "eu", "label": "-3m"})},
    )
    problems = load_project(include).problems
    assert [(p.file, p.key_path) for p in problems] == [
        ("include/customers/acme.yaml", "integrations.sync.monitors.overdue_after")
    ], problems
    assert "with this customer's values: expected seconds" in problems[0].message
    # With a value that fits, the same template is fine.
    (include / "customers" / "acme.yaml").write_text(
        yaml.safe_dump(minimal_customer(config={"region": "eu", "label": "3m"})), encoding="utf-8"
    )
    assert load_project(include).problems == []


def test_app_yaml_declares_the_monitors_dag_and_a_task_start_builds_it_alone(tmp_path: Path) -> None:
    from b2b_integrations.factory.app_dags import MONITORS_DAG_ID
    from b2b_integrations.factory.register import build_dags, build_task_dag

    root = write_include(tmp_path / "include", {"sync": minimal_template()}, {"acme": minimal_customer()})
    shutil.copy(EXAMPLES / "app.yaml", root / "app.yaml")
    result = build_dags(root)
    assert result.problems == []
    dag = result.dags[MONITORS_DAG_ID]
    (task,) = dag.tasks
    assert task.api_conn_id == "b2b_api" and dag.max_active_runs == 1 and dag.catchup is False
    alone = build_task_dag(root, MONITORS_DAG_ID)
    assert list(alone.dags) == [MONITORS_DAG_ID]
    assert build_task_dag(root, MONITORS_DAG_ID, shard=1, shards=2).dags == {}


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        (
            "monitors:\n  api_connection: b2b_api\n  defaults: {max_duration: -1}\n",
            "monitors.defaults.max_duration",
            "positive",
        ),
        (
            "monitors:\n  api_connection: b2b_api\n  defaults: {overdue_after: .nan}\n",
            "monitors.defaults.overdue_after",
            "finite",
        ),
        ("monitors:\n  api_connection: b2b_api\n  webhook: x\n", "monitors.webhook", "unknown key"),
        ("monitors:\n  api_connection: 'no spaces allowed'\n", "monitors.api_connection", "pattern"),
        (
            "monitors:\n  api_connection: b2b_api\n  schedule: every minute\n",
            "monitors.schedule",
            "invalid schedule",
        ),
    ],
)
def test_hostile_app_yaml_monitors_are_located_problems(
    tmp_path: Path, text: str, path: str, words: str
) -> None:
    root = write_include(tmp_path / "include")
    (root / "app.yaml").write_text(text)
    project = load_project(root)
    assert project.app is None
    assert [(p.key_path, words in p.message) for p in project.problems] == [(path, True)], project.problems


def test_slack_and_email_texts_cannot_ping_or_inject() -> None:
    from b2b_integrations.monitors.notify import email_message, slack_payload
    from b2b_integrations.monitors.rules import Alert

    alert = Alert(
        "failures",
        "warning",
        "acme",
        "sync",
        "<!channel>",
        "acme__sync__x",
        "r1",
        "its <b>last</b> runs failed\r\nBcc: x@y",
    )
    payload = slack_payload(alert, "http://airflow.example")
    mrkdwn = [payload["text"]] + [
        b["text"]["text"] for b in payload["blocks"] if b["text"]["type"] == "mrkdwn"
    ]
    assert not any("<!channel>" in text for text in mrkdwn) and "&lt;!channel&gt;" in payload["text"]
    subject, body = email_message(alert, "http://airflow.example")
    assert "\n" not in subject and "\r" not in subject and "<b>" not in body
