"""The DAG factory entry points: include folder -> DAGs in one DAG file, problems in another.

One broken file must never stop other customers. Airflow (3.3, ``_update_import_errors`` in
``airflow/dag_processing/collection.py``) marks *every* DAG of a file that has an import error as stale, so
the file holding the customers' DAGs must never have one. It registers every DAG that builds, and a customer
whose file turned invalid keeps running on that file's last valid copy (``config/last_valid.py``). The
problems are raised by a second DAG file that holds no DAGs (``dags/b2b_config_problems.py``): its import
error, with every problem's file, line and key path, is what the UI shows, and it can make nothing stale.

A task process parses the DAG file only to get the one DAG it runs; Airflow says which in its parsing
context. Then only that customer's file and the templates it names are read and only that DAG is built,
so starting a task costs the same with 10 or 10,000 customers.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from b2b_integrations.config.last_valid import LastValidStore, default_store
from b2b_integrations.config.loader import (
    CUSTOMERS_DIR,
    TEMPLATES_DIR,
    VERSIONS_KIND,
    Project,
    load_app_settings,
    load_customer_project,
    load_project,
)
from b2b_integrations.errors import ConfigError, Problem
from b2b_integrations.factory.app_dags import APP_DAG_IDS, build_app_dags
from b2b_integrations.factory.build import build_dag
from b2b_integrations.factory.plan import DagPlan
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.factory.shards import (
    ReportStore,
    ShardReport,
    fingerprints,
    oversized_shards,
    shard_count,
    shard_file,
    shard_of,
)
from b2b_integrations.naming import split_dag_id

log = logging.getLogger(__name__)

CHECK_BUDGET_SECONDS = 10.0
"""How long the problems file may spend checking shards whose report is out of date (a third of Airflow's
default import timeout, like every DAG file's parse)."""


def default_include_dir(dag_file: str | None) -> Path:
    """B2B_INCLUDE_DIR, else the include/ folder next to the DAG file's folder."""
    env = os.environ.get("B2B_INCLUDE_DIR")
    if env:
        return Path(env)
    base = Path(dag_file).resolve().parent.parent if dag_file else Path.cwd()
    return base / "include"


@dataclass
class FactoryResult:
    """What one pass of the factory made: the DAGs, every problem, and what loaded and built cleanly."""

    project: Project
    dags: dict[str, DAG] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    failed_builds: set[tuple[str, str]] = field(default_factory=set)
    """(customer id, integration) of every plan that failed to build."""

    def files_to_keep(self) -> list[tuple[str, str, Path]]:
        """(kind, name, path) of the valid files whose DAGs all built: the next last valid copies.

        A customer file's name is its customer id, a template file's its integration name (the loader
        checks both)."""
        failed = {
            CUSTOMERS_DIR: {customer for customer, _ in self.failed_builds},
            TEMPLATES_DIR: {integration for _, integration in self.failed_builds},
        }
        # A version file is named "<integration>/<version>"; which version a failed build was made from is
        # not recorded, so no version of a failed integration is kept.
        failed[VERSIONS_KIND] = failed[TEMPLATES_DIR]
        return [
            (kind, name, path)
            for kind, name, path in self.project.valid_files
            if name.split("/")[0] not in failed[kind]
        ]


def build_dags(
    include_dir: str | os.PathLike[str],
    last_valid: LastValidStore | None = None,
    auto_register: bool = True,
    shard: int = 0,
    shards: int = 1,
) -> FactoryResult:
    """Build every DAG that can be built (of the customers of ``shard`` out of ``shards``); collect every
    problem found (config or build). Our app's own DAGs are in shard 0.

    ``auto_register=False``: only to find the problems, without the DAGs joining the DAG file being parsed.
    """
    in_shard = (lambda customer: shard_of(customer, shards) == shard) if shards > 1 else None
    project = load_project(include_dir, last_valid=last_valid, customer_filter=in_shard)
    return _build(project, plan_project(project), with_app=shard == 0, auto_register=auto_register)


def build_task_dag(
    include_dir: str | os.PathLike[str],
    dag_id: str,
    last_valid: LastValidStore | None = None,
    shard: int = 0,
    shards: int = 1,
) -> FactoryResult:
    """Build only ``dag_id``, reading only what it depends on: its customer's file (or that file's last
    valid copy) and the templates the customer names, or ``app.yaml`` for our app's own DAGs.

    The DAG is the one :func:`build_dags` makes (same loader, planner and builder on the same files); a DAG
    id that is not ours, or whose customer, integration or flow is gone or disabled, builds nothing; so
    does one of another shard (``airflow tasks test`` parses every file, and two files must never define
    the same DAG).
    """
    nothing = FactoryResult(project=Project(include_dir=Path(include_dir)))
    if dag_id in APP_DAG_IDS:
        if shard != 0:
            return nothing
        project = load_app_settings(include_dir)
        return _build(project, [], with_app=True, auto_register=True)
    parts = split_dag_id(dag_id)
    if parts is None or shard_of(parts[0], shards) != shard:
        return nothing
    customer_id, integration, _ = parts
    project = load_customer_project(include_dir, customer_id, last_valid=last_valid)
    plans = [plan for plan in plan_project(project, integration) if plan.dag_id == dag_id]
    return _build(project, plans, with_app=False, auto_register=True)


def _build(project: Project, plans: list[DagPlan], with_app: bool, auto_register: bool) -> FactoryResult:
    for warning in project.warnings:
        log.info("b2b config warning: %s", warning)
    result = FactoryResult(project=project, problems=list(project.problems))
    if with_app:
        try:
            result.dags.update(build_app_dags(project.app, auto_register))
        except Exception as e:
            result.problems.append(
                Problem("app.yaml", "outbox", f"cannot build the outbox DAG: {type(e).__name__}: {e}")
            )
    for plan in plans:
        try:
            result.dags[plan.dag_id] = build_dag(plan, auto_register)
        except Exception as e:  # one DAG failing to build must not hide the others
            result.failed_builds.add((plan.customer_id, plan.integration))
            result.problems.append(
                Problem(
                    plan.source_file,
                    f"integrations.{plan.integration}.flows.{plan.flow}",
                    f"cannot build DAG {plan.dag_id}: {type(e).__name__}: {e}",
                )
            )
    return result


def parsing_target() -> str | None:
    """The DAG id Airflow parses the DAG files for (a task process starting that DAG's task), else None."""
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def _strict() -> bool:
    return os.environ.get("B2B_STRICT", "").lower() in ("1", "true", "yes")


def register_dags(
    namespace: dict[str, Any], include_dir: str | os.PathLike[str] | None = None, shard: int = 0
) -> dict[str, DAG]:
    """Put the generated DAGs of the customers of ``shard`` into a DAG file's globals; call as
    ``register_dags(globals())`` (shard 0) or ``register_dags(globals(), shard=3)``.

    A shard at or past ``B2B_SHARDS`` registers nothing. Never raises for a config problem (unless
    ``B2B_STRICT=1``, for CI): see the module docstring.
    """
    shards, _ = shard_count()
    if shard >= shards:
        return {}
    root = Path(include_dir) if include_dir is not None else default_include_dir(namespace.get("__file__"))
    store = default_store()
    target = parsing_target()
    if target is not None:
        # A task start: only its DAG. No last valid copy is written here: what a customer runs on is
        # decided by the dag-processor's full parse, which a task must reproduce, not change.
        result = build_task_dag(root, target, store, shard, shards)
        log.debug("b2b-integrations: task parse of %s built %s", target, sorted(result.dags) or "nothing")
    else:
        oversized, _ = oversized_shards(root, shards)
        if shard in oversized:
            # Said before the parse starts: a parse killed at the processor timeout never reaches the end.
            log.warning("b2b-integrations: %s", oversized[shard])
        fingerprint = fingerprints(root, shards, store, [shard])[
            shard
        ]  # before reading: a later edit mismatches
        result = build_dags(root, store, shard=shard, shards=shards)
        if store is not None:
            for kind, name, path in result.files_to_keep():
                store.save(kind, name, path)
        ReportStore().write(root, shard, shards, ShardReport(fingerprint, result.problems))
    namespace.update(result.dags)
    if result.problems:
        error = ConfigError(result.problems)
        if _strict():
            raise error
        log.error("b2b-integrations: %s", error)
    return result.dags


def raise_config_problems(
    namespace: dict[str, Any], include_dir: str | os.PathLike[str] | None = None
) -> None:
    """Raise every config problem of every shard as this DAG file's import error; the file must define no DAG.

    A shard's problems come from the report its last parse left when the files it read have not changed
    since (same fingerprint); otherwise the shard is loaded and built here exactly as :func:`register_dags`
    does (same last valid copies, same builds), so the problems shown are those of the DAGs that run.
    Checking anew stops after :data:`CHECK_BUDGET_SECONDS` (a template change touches every shard): the
    remaining shards show their previous problems and say they were not re-checked yet.
    """
    if parsing_target() is not None:
        # A task process (or `airflow tasks test`) parsing for one DAG: this file holds none, and checking
        # every customer would cost what the task parse just saved.
        return
    root = Path(include_dir) if include_dir is not None else default_include_dir(namespace.get("__file__"))
    dags_dir = Path(namespace["__file__"]).parent if namespace.get("__file__") else None
    problems: list[Problem] = []
    shards, count_problem = shard_count()
    if count_problem:
        problems.append(Problem("B2B_SHARDS", "", count_problem))
    for shard in range(1, shards):
        if dags_dir is not None and not (dags_dir / shard_file(shard)).is_file():
            problems.append(
                Problem(
                    str(dags_dir / shard_file(shard)),
                    "",
                    f"missing: B2B_SHARDS={shards} puts customers in shard {shard}, and they have no DAGs "
                    "without this file (copy another shard file and change its number)",
                )
            )
    oversized, setting_problems = oversized_shards(root, shards)
    problems.extend(setting_problems)
    problems.extend(oversized.values())
    store, reports = default_store(), ReportStore()
    current = fingerprints(root, shards, store)
    deadline = time.monotonic() + CHECK_BUDGET_SECONDS
    for shard in range(shards):
        report = reports.read(root, shard, shards)
        if report is not None and report.fingerprint == current[shard]:
            problems.extend(report.problems)
        elif shard not in oversized and time.monotonic() < deadline:
            result = build_dags(root, store, auto_register=False, shard=shard, shards=shards)
            reports.write(root, shard, shards, ShardReport(current[shard], result.problems))
            problems.extend(result.problems)
        else:
            # An oversized shard is not built here: this file would pass the timeout in its place.
            problems.extend(report.problems if report is not None else [])
            problems.append(
                Problem(
                    shard_file(shard),
                    "",
                    "not re-checked since its files changed ("
                    + (
                        "too many customers to check here"
                        if shard in oversized
                        else "a later parse of this file will"
                    )
                    + "); "
                    + ("the problems shown for it are from before" if report else "no problems known yet"),
                )
            )
    if problems:
        raise ConfigError(dict.fromkeys(problems))  # every shard reads the templates: report theirs once
