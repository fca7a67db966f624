"""The YAML the docs pages show (included from docs/examples/<topic>/ by `--8<--`) loads: each topic's
templates, customers and app.yaml are laid over a copy of the shipped include folder and must load without
a problem, their transforms import, and every example customer gets its DAGs, so an example cannot rot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from b2b_integrations.config.deployment_checks import deployment_problems
from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project
from helpers import REPO

EXAMPLES = REPO / "docs" / "examples"
TOPICS = sorted(
    p.name
    for p in EXAMPLES.iterdir()
    if (p / "integrations").is_dir() or (p / "customers").is_dir() or (p / "app.yaml").is_file()
)


@pytest.mark.parametrize("topic", TOPICS)
def test_example_loads_with_the_shipped_templates(topic: str, tmp_path: Path) -> None:
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include, ignore=shutil.ignore_patterns("demo", "__pycache__"))
    example = EXAMPLES / topic
    shutil.copytree(example, include, dirs_exist_ok=True)
    project = load_project(include)
    project.problems.extend(deployment_problems(project, True, False))
    assert [str(p) for p in project.problems] == []
    planned = {plan.customer_id for plan in plan_project(project)}
    for customer in (example / "customers").glob("*.yaml"):
        assert customer.stem in planned, f"{customer.name} gets no DAG"
    for template in (example / "integrations").glob("*.yaml"):
        assert template.stem in project.templates
    if (example / "app.yaml").is_file():
        assert project.app is not None
