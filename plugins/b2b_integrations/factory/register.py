"""The DAG factory entry point: include folder -> DAGs in a DAG file's namespace.

One broken file must never hide other customers' DAGs. Good DAGs are always registered; the problems are
carried by one placeholder DAG whose ``validate()`` raises, which Airflow's DagBag records as an import
error of the factory file (with every problem, its file, line and key path) while keeping the other DAGs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from b2b_integrations.config.loader import load_project
from b2b_integrations.errors import ConfigError, Problem
from b2b_integrations.factory.app_dags import build_app_dags
from b2b_integrations.factory.build import build_dag
from b2b_integrations.factory.planner import plan_project

log = logging.getLogger(__name__)

PROBLEMS_DAG_ID = "b2b_config_problems"


class ConfigProblemsDag(DAG):
    """Never bagged: its validation raises the collected config problems as the file's import error."""

    def validate(self) -> None:
        raise self.config_error  # type: ignore[attr-defined]


def default_include_dir(dag_file: str | None) -> Path:
    """B2B_INCLUDE_DIR, else the include/ folder next to the DAG file's folder."""
    env = os.environ.get("B2B_INCLUDE_DIR")
    if env:
        return Path(env)
    base = Path(dag_file).resolve().parent.parent if dag_file else Path.cwd()
    return base / "include"


def build_dags(include_dir: str | os.PathLike[str]) -> tuple[dict[str, DAG], list[Problem]]:
    """Build every valid DAG; return them with every problem found (config or build)."""
    project = load_project(include_dir)
    for warning in project.warnings:
        log.info("b2b config warning: %s", warning)
    problems = list(project.problems)
    dags: dict[str, DAG] = {}
    try:
        dags.update(build_app_dags(project.app))
    except Exception as e:
        problems.append(
            Problem("app.yaml", "outbox", f"cannot build the outbox DAG: {type(e).__name__}: {e}")
        )
    for plan in plan_project(project):
        try:
            dags[plan.dag_id] = build_dag(plan)
        except Exception as e:  # one DAG failing to build must not hide the others
            problems.append(
                Problem(
                    plan.source_file,
                    f"integrations.{plan.integration}.flows.{plan.flow}",
                    f"cannot build DAG {plan.dag_id}: {type(e).__name__}: {e}",
                )
            )
    return dags, problems


def register_dags(
    namespace: dict[str, Any], include_dir: str | os.PathLike[str] | None = None
) -> dict[str, DAG]:
    """Put the generated DAGs into a DAG file's globals; call as ``register_dags(globals())``."""
    root = Path(include_dir) if include_dir is not None else default_include_dir(namespace.get("__file__"))
    dags, problems = build_dags(root)
    for dag_id, dag in dags.items():
        namespace[dag_id] = dag
    if problems:
        error = ConfigError(problems)
        if os.environ.get("B2B_STRICT", "").lower() in ("1", "true", "yes"):
            raise error
        log.error("b2b-integrations: %s", error)
        placeholder = ConfigProblemsDag(dag_id=PROBLEMS_DAG_ID, schedule=None)
        placeholder.config_error = error  # type: ignore[attr-defined]
        namespace[PROBLEMS_DAG_ID] = placeholder
    return dags
