"""The pure parts of the status and actions (instances/observe.py): whose problems, run-now overrides,
log excerpts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from b2b_integrations.errors import Problem
from b2b_integrations.instances.observe import (
    LOG_EXCERPT_CHARS,
    _log_lines,
    check_overrides,
    instance_problems,
    plan_instance,
    redact_excerpt,
)
from helpers import minimal_customer, minimal_template, write_include


def test_an_instance_gets_its_block_its_files_own_keys_and_its_template() -> None:
    problems = [
        Problem("customers/acme.yaml", "integrations.sync.config.region", "bad region"),
        Problem("customers/acme.yaml", "integrations.sync_v2.config.x", "another instance's"),
        Problem("customers/acme.yaml", "integrations.other", "another instance's"),
        Problem("customers/acme.yaml", "alerts.email", "the file's own key"),
        Problem("customers/acme.yaml", "", "the file does not parse"),
        Problem("customers/acmex.yaml", "integrations.sync", "another customer's"),
        Problem("integrations/sync.yaml", "flows.snapshot", "its template"),
        Problem("integrations/other.yaml", "flows.x", "another template"),
    ]
    found = instance_problems(problems, "acme", "sync")
    assert [p.message for p in found] == [
        "bad region",
        "the file's own key",
        "the file does not parse",
        "its template",
    ]


@pytest.fixture
def include(tmp_path: Path) -> Path:
    return write_include(tmp_path / "include", {"sync": minimal_template()}, {"acme": minimal_customer()})


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        ({"threshold": 5, "region": "us"}, None),
        ({"threshold": -1}, "config.threshold: must be >= 0, got -1"),
        ({"threshold": "5"}, "config.threshold: expected integer, got str '5'"),
        ({"region": "mars"}, "config.region: expected one of ['eu', 'us'], got 'mars'"),
        ({"nope": 1}, "config.nope: not a config value of this flow (allowed: label, region, threshold)"),
    ],
)
def test_run_now_overrides_are_checked_against_the_templates_declarations(
    include: Path, overrides: dict[str, object], refusal: str | None
) -> None:
    instance = plan_instance(include, "acme", "sync")
    assert instance.problems == [] and instance.running_on is None
    plan = instance.flow("snapshot")
    assert plan is not None and instance.flow("nope") is None
    assert check_overrides(plan, instance.template, overrides) == refusal


def test_a_broken_block_is_this_instances_config_problem(include: Path) -> None:
    customer = include / "customers" / "acme.yaml"
    customer.write_text(customer.read_text().replace("region: eu", "region: mars"))
    instance = plan_instance(include, "acme", "sync")
    assert [p.key_path for p in instance.problems] == ["integrations.sync.config.region"]
    assert instance.plans == []  # no last valid copy here: the instance has no DAGs


def test_log_excerpt_masks_secrets_cuts_lines_and_keeps_the_end() -> None:
    lines = [f"line {i} password=hunter22 sent token s3cr3t-value" for i in range(200)] + ["x" * 2000]
    text = redact_excerpt(lines, ["s3cr3t-value"])
    assert "hunter22" not in text and "s3cr3t-value" not in text and "***" in text
    assert len(text) <= LOG_EXCERPT_CHARS
    assert text.endswith("x" * 499 + "…")  # the last line, cut to 500 characters


def test_log_lines_give_the_exception_without_its_frames() -> None:
    from airflow.utils.log.file_task_handler import StructuredLogMessage

    message = StructuredLogMessage(
        timestamp=datetime(2026, 12, 3, 16, 0, tzinfo=UTC),
        event="Task failed with exception",
        level="error",
        error_detail=[
            {"exc_type": "ValueError", "exc_value": "refused", "frames": [{"filename": "/srv/x.py"}]}
        ],
    )
    assert _log_lines(message) == [
        "2026-12-03T16:00:00 ERROR Task failed with exception",
        "ValueError: refused",
    ]
    assert _log_lines(StructuredLogMessage(event="::group::Log message source details")) == []
