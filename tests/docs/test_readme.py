"""README is a front page that stays true: its figures are the demo's, its YAML loads, its links resolve,
and it stays short (the rest is the docs site)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project
from helpers import REPO, write_include

README = (REPO / "README.md").read_text(encoding="utf-8")
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def test_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 300
    assert README.splitlines()[3].startswith("./scripts/demo.sh   # ")
    assert README.splitlines()[4].startswith("./scripts/test.sh   # ")


def test_readme_figures_are_the_demos() -> None:
    project = load_project(REPO / "include")
    assert project.problems == []
    customers = re.search(r"The demo runs (\w+) customers \(([^)]*)\) with (\d+) DAGs", README)
    assert customers, "README says how many customers and DAGs the demo runs"
    names = sorted(instance.customer.id for instance in project.customers)
    assert NUMBERS[customers.group(1)] == len(names)
    assert sorted(customers.group(2).split(", ")) == names
    assert int(customers.group(3)) == len(plan_project(project))


def test_readme_yaml_loads(tmp_path: Path) -> None:
    template, customer = (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.S))
    include = write_include(tmp_path, {template["name"]: template}, {customer["id"]: customer})
    project = load_project(include)
    assert [str(p) for p in project.problems] == []
    assert [plan.dag_id for plan in plan_project(project)] == ["hooli__stock_levels__snapshot"]


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        assert (REPO / target).exists(), target
