"""``validate``'s checks of what a run would hit beyond the files themselves.

* Transform and report callables must import: they are checked in a subprocess (no template code runs in
  the CLI process, a crashing import cannot take ``validate`` down, and nothing is imported at parse time,
  where a slow or failing import would cost every customer's DAGs).
* With ``--check-connections``, every connection id a customer names must exist where the command runs:
  run it with the deployment's Airflow configuration (the same secrets backend, ``AIRFLOW_CONN_*``
  variables and metadata database the workers use), e.g. after ``source scripts/demo-env.sh``.

Finding what to check is pure (:func:`callable_uses`, :func:`connection_uses`); the I/O is in
:func:`import_problems` and :func:`defined_connections`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from b2b_integrations.config.loader import Project
from b2b_integrations.config.models import CustomerIntegration, IntegrationTemplate
from b2b_integrations.config.steps import ReportExportStep, TransformStep
from b2b_integrations.config.yaml_source import KeyPath, format_key_path, load_yaml
from b2b_integrations.errors import Problem

IMPORT_TIMEOUT_SECONDS = 120
_TRIGGER_SLOTS = ("secret_connection", "connection", "callback_secret_connection")


@dataclass
class CallableUse:
    """One step naming a callable, and the customers whose DAGs run it."""

    dotted: str
    file: Path
    key_path: KeyPath
    customers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ConnectionUse:
    """One connection id a customer names for a slot, and the slot's declared type."""

    conn_id: str
    file: Path
    key_path: KeyPath
    slot_type: str | None


def _active_integrations(
    project: Project,
) -> Iterator[tuple[str, str, CustomerIntegration, IntegrationTemplate, Path]]:
    """(customer id, integration, settings, template, template file) of every integration that has DAGs."""
    for instance in project.customers:
        if not instance.customer.enabled:
            continue
        for name, settings in instance.integrations.items():
            template = project.template_for(name, settings)
            if not settings.enabled or template is None:
                continue
            yield instance.customer.id, name, settings, template, _template_file(project, name, template)


def _template_file(project: Project, name: str, template: IntegrationTemplate) -> Path:
    folder = project.include_dir / "integrations"
    current = project.templates.get(name)
    if current is not None and current.version == template.version:
        return next(folder.glob(f"{name}.y*ml"), folder / f"{name}.yaml")
    versions = folder / "versions" / name
    return next(versions.glob(f"{template.version}.y*ml"), versions / f"{template.version}.yaml")


def _flows(settings: CustomerIntegration, template: IntegrationTemplate) -> Iterator[str]:
    for flow_name in template.flows:
        override = settings.flows.get(flow_name)
        if override is None or override.enabled:
            yield flow_name


def callable_uses(project: Project) -> list[CallableUse]:
    """Every callable a built DAG would import at run time, once per template step."""
    found: dict[tuple[Path, KeyPath], CallableUse] = {}
    for customer_id, _, settings, template, file in _active_integrations(project):
        for flow_name in _flows(settings, template):
            for index, step in enumerate(template.flows[flow_name].steps):
                if isinstance(step, TransformStep):
                    key, dotted = "callable", step.callable
                elif isinstance(step, ReportExportStep) and step.transform:
                    key, dotted = "transform", step.transform
                else:
                    continue
                path: KeyPath = ("flows", flow_name, "steps", index, key)
                use = found.setdefault((file, path), CallableUse(dotted, file, path))
                use.customers.add(customer_id)
    return list(found.values())


def connection_uses(project: Project) -> list[ConnectionUse]:
    """Every connection id a built DAG would look up, where the customer names it."""
    found: dict[tuple[Path, KeyPath], ConnectionUse] = {}
    customer_files = {i.customer.id: project.include_dir.parent / i.file for i in project.customers}
    for customer_id, name, settings, template, _ in _active_integrations(project):
        used: set[str] = set()
        for flow_name in _flows(settings, template):
            flow = template.flows[flow_name]
            used.update(s for f in _TRIGGER_SLOTS if isinstance(s := getattr(flow.trigger, f, None), str))
            for step in flow.steps:
                used.update(slot for _, slot in step.connection_slots())
        for slot in sorted(used):
            conn_id = settings.connections.get(slot)
            if conn_id is None:  # an optional slot left empty
                continue
            path: KeyPath = ("integrations", name, "connections", slot)
            declared = template.connections.get(slot)
            found[(customer_files[customer_id], path)] = ConnectionUse(
                conn_id, customer_files[customer_id], path, declared.type if declared else None
            )
    return list(found.values())


def import_problems(dotted_paths: Iterable[str], include_dir: Path) -> dict[str, str]:
    """Dotted path -> why it does not import, from one subprocess importing them all.

    The subprocess sees what a worker sees: this interpreter, and the plugins folder on ``sys.path``
    (``AIRFLOW__CORE__PLUGINS_FOLDER``, else ``plugins/`` beside the include folder), as Airflow puts it.
    """
    paths = sorted(set(dotted_paths))
    if not paths:
        return {}
    plugins = os.environ.get("AIRFLOW__CORE__PLUGINS_FOLDER") or str(include_dir.resolve().parent / "plugins")
    ours = str(Path(__file__).resolve().parents[2])  # this package's own copy comes first
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ours, plugins, env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "b2b_integrations.config.deployment_checks", *paths],
            env=env,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return dict.fromkeys(paths, f"importing the callables took over {IMPORT_TIMEOUT_SECONDS} s")
    last = done.stdout.strip().splitlines()[-1:] or [""]
    try:
        return dict(json.loads(last[0]))
    except (ValueError, TypeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return dict.fromkeys(paths, f"importing the callables failed: {tail[0]}")


def defined_connections(conn_ids: Iterable[str]) -> set[str]:
    """The ids of ``conn_ids`` this deployment defines.

    Looked up as a task looks them up (secrets backends, environment variables, metadata database), so
    this needs the deployment's Airflow configuration.
    """
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    found: set[str] = set()
    for conn_id in sorted(set(conn_ids)):
        try:
            Connection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            continue
        found.add(conn_id)
    return found


def deployment_problems(
    project: Project, check_imports: bool = True, check_connections: bool = False
) -> list[Problem]:
    """Callables that do not import and connection ids that do not exist, as asked."""
    errors: list[Problem] = []
    lines = _LineCache(project.include_dir)
    uses = callable_uses(project) if check_imports else []
    failures = import_problems((u.dotted for u in uses), project.include_dir)
    for use in uses:
        if use.dotted in failures:
            who = ", ".join(sorted(use.customers))
            errors.append(
                lines.problem(
                    use.file,
                    use.key_path,
                    f"{failures[use.dotted]}; the DAGs of customer(s) {who} would fail at this step at run time",
                )
            )
    if check_connections:
        connections = connection_uses(project)
        defined = defined_connections(c.conn_id for c in connections)
        for use in connections:
            if use.conn_id not in defined:
                example = f"{use.slot_type or 'TYPE'}://USER:PASSWORD@HOST:PORT/SCHEMA"
                errors.append(
                    lines.problem(
                        use.file,
                        use.key_path,
                        f"connection id {use.conn_id!r} is not defined in this deployment (Airflow "
                        f"connections, AIRFLOW_CONN_{use.conn_id.upper()}, secrets backends); create it, "
                        f"e.g. airflow connections add {use.conn_id} --conn-uri '{example}'",
                    )
                )
    return errors


class _LineCache:
    """Problems located like the loader's: file shown relative to the include folder's parent, with line."""

    def __init__(self, include_dir: Path):
        self.root = include_dir.parent
        self.docs: dict[Path, object] = {}

    def problem(self, file: Path, key_path: KeyPath, message: str) -> Problem:
        if file not in self.docs:
            try:
                self.docs[file] = load_yaml(file)
            except Exception:  # noqa: BLE001 - the file loaded a moment ago; without lines is still useful
                self.docs[file] = None
        doc = self.docs[file]
        line = doc.line_of(key_path) if doc is not None else None  # type: ignore[attr-defined]
        try:
            shown = str(file.relative_to(self.root))
        except ValueError:
            shown = str(file)
        return Problem(shown, format_key_path(key_path), message, line)


def _probe(paths: list[str]) -> dict[str, str]:
    """In the subprocess: import each callable, collecting why it fails."""
    from b2b_integrations.callables import import_callable

    failures: dict[str, str] = {}
    for dotted in paths:
        try:
            import_callable(dotted)
        except Exception as e:  # noqa: BLE001 - any import-time error is what a run would hit
            failures[dotted] = str(e) if type(e).__name__ == "FatalStepError" else f"{type(e).__name__}: {e}"
    return failures


if __name__ == "__main__":
    print(json.dumps(_probe(sys.argv[1:])))
