"""Parse-time benchmark of the DAG factory: N customers x 3 flows, against a plain-loop floor and dag-factory.

For each N (default 10, 100 and 1000) the script generates, into a temp folder, one integration template with
three scheduled flows (transform -> transform -> load, the shape of include/integrations/inventory_sync.yaml)
and N customer files, then measures three ways of getting the same 3 x N DAGs into Airflow:

- ours: ``dags/b2b_integrations_dags.py`` (YAML -> pydantic -> plan -> DAGs) on the generated include folder;
- floor: a generated DAG file that builds the same DAGs (same operators, arguments, params, tags,
  default_args and docs) in a plain Python loop: no YAML, no pydantic, no planning;
- peer: astronomer dag-factory 1.x on equivalent YAML (one file per customer, same operators by class path),
  installed by this script into ``benchmarks/.venv-dagfactory`` on the same Airflow version (reused when
  present).

Each measurement runs in a fresh interpreter: it imports Airflow, then times ``DagBag(dag_folder=<file>)``
(parse), then ``DagSerialization.to_dict`` of every DAG (serialize), and reports the peak RSS. A run that
finds import errors or the wrong DAG count stops the benchmark. The baseline (a fresh interpreter importing
Airflow and parsing an empty folder) is printed so memory can be read net of it. Before timing, the script
checks the generated include folder with ``python -m b2b_integrations validate`` and checks that floor and
dag-factory build the same DAGs as ours (serialized DAGs compared on 12 customers: every tier).

``--scale 1000,10000`` measures instead, per DAG file and in the same run: today's one-file layout (the
factory file, which a task start parsed whole before the parsing context; the problems file with and
without a fresh report), the task start under Airflow's parsing context, ``B2B_SHARDS`` shard files
(``--shards``, default 16: slowest, mean, sum; the problems file on fresh reports), and plain-loop floors
for the largest shard's customers, for everyone in one file and for one customer. Parse only (no
serialization), with ``b2b_integrations.factory.register`` imported before timing and its import printed
apart; ``B2B_STRICT=1``, so a config problem stops the benchmark.

Run from the repository root::

    .venv/bin/python benchmarks/parse_dags.py                      # N = 10, 100, 1000 with dag-factory
    .venv/bin/python benchmarks/parse_dags.py --sizes 10,100 --no-peer
    .venv/bin/python benchmarks/parse_dags.py --scale 1000,10000   # one file vs 16 shards, task start
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
MODULE = Path(__file__).stem  # the children and the floor DAG file import this module from BENCH_DIR
REPO = BENCH_DIR.parent
FACTORY_FILE = REPO / "dags" / "b2b_integrations_dags.py"
PEER_VENV = BENCH_DIR / ".venv-dagfactory"
PEER_REQUIREMENT = "dag-factory==1.1.*"
CHECK_CUSTOMERS = 12  # every tier, several thresholds and SKU counts: the equivalence covers each branch
TASKS_PER_DAG = 3
MIB = 1024  # ru_maxrss is in KiB on Linux
OPERATOR_ATTRIBUTES = (
    "customer_id",
    "integration",
    "flow",
    "input_task_id",
    "config_refs",
    "callable",
    "options",
    "conn_id",
    "table",
    "mode",
    "key",
    "columns",
    "create_table",
    "chunk_size",
)
REPORT_MARKER = "benchmark report: "  # Airflow logs to stdout too; the child's result line starts with this

# The workload: one integration, three scheduled flows of three steps, each customer with its own values.
INTEGRATION = "stock_sync"
TEMPLATE_DESCRIPTION = "Stock levels from the customer's warehouse system into our app database."
FLOWS: dict[str, tuple[str, str]] = {  # flow -> (schedule, description)
    "hourly": ("@hourly", "Hourly stock snapshot."),
    "nightly": ("0 2 * * *", "Nightly full snapshot."),
    "weekly": ("@weekly", "Weekly reconciliation snapshot."),
}
GENERATE = "b2b_integrations.transforms.demo.generate_inventory"
FLAG = "b2b_integrations.transforms.demo.flag_low_stock"
TRANSFORM_OPERATOR = "b2b_integrations.operators.transform.TransformOperator"
LOAD_OPERATOR = "b2b_integrations.operators.sql_load.SqlLoadOperator"
FETCH_DOC = "Read stock levels (demo generator standing in for the warehouse API)."
LOAD_DOC = "Upsert the levels into the app database."
TABLE = "inventory_levels"
KEY = ["customer_id", "sku"]
COLUMNS = {
    "customer_id": "VARCHAR(60)",
    "sku": "VARCHAR(40)",
    "on_hand": "INTEGER",
    "low_stock": "BOOLEAN",
    "as_of": "VARCHAR(10)",
}
SKU_DOC = "How many SKUs the warehouse reports."
THRESHOLD_DOC = "Stock below this is flagged as low."
PARAM_SCHEMA = "http://json-schema.org/draft-07/schema#"
START_DATE = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "b2b-integrations",
    "retries": 2,
    "retry_delay": timedelta(seconds=60),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(seconds=1800),
    "execution_timeout": timedelta(minutes=60),
}
TIERS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    tier: str
    sku_count: int
    threshold: int
    conn_id: str


def make_customers(n: int) -> list[Customer]:
    return [
        Customer(
            id=f"customer_{i:04d}",
            name=f"Customer {i:04d} Ltd",
            tier=TIERS[i % len(TIERS)],
            sku_count=10 + i % 90,
            threshold=i % 20,
            conn_id=f"warehouse_{i:04d}",
        )
        for i in range(n)
    ]


def dag_id(customer: Customer, flow: str) -> str:
    return f"{customer.id}__{INTEGRATION}__{flow}"


# --- What every variant builds, as plain data (used by the floor at parse time and for dag-factory YAML) ---


def dag_arguments(customer: Customer, flow: str) -> dict[str, Any]:
    """DAG keyword arguments, params as Param keyword dicts: what the factory passes for this flow."""
    from b2b_integrations.alerts import failure_callback

    schedule, description = FLOWS[flow]
    return {
        "dag_id": dag_id(customer, flow),
        "description": f"{customer.name}: {TEMPLATE_DESCRIPTION} / {description}"[:200],
        "doc_md": dag_doc(customer, flow),
        "schedule": schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "tags": [
            f"customer:{customer.id}",
            f"integration:{INTEGRATION}",
            "pattern:custom",
            f"tier:{customer.tier}",
        ],
        # The factory gives every DAG the failure-alert notifier; so does the floor, to do the same work.
        "default_args": {
            **DEFAULT_ARGS,
            "on_failure_callback": failure_callback(
                None, customer_id=customer.id, integration=INTEGRATION, flow=flow
            ),
        },
        "params": {
            "sku_count": param(customer.sku_count, SKU_DOC, minimum=1.0, maximum=100000.0),
            "low_stock_threshold": param(customer.threshold, THRESHOLD_DOC, minimum=0.0),
        },
    }


def param(default: int, description: str, **constraints: float) -> dict[str, Any]:
    return {
        "default": default,
        "type": "integer",
        "$schema": PARAM_SCHEMA,
        "description": description,
        **constraints,
    }


def dag_doc(customer: Customer, flow: str) -> str:
    schedule, description = FLOWS[flow]
    return "\n".join(
        [
            f"# {customer.name} · {INTEGRATION} · {flow}",
            "",
            TEMPLATE_DESCRIPTION,
            "",
            description,
            "",
            f"- **Customer**: `{customer.id}` (config: `include/customers/{customer.id}.yaml`)",
            f"- **Integration**: `{INTEGRATION}` version 1",
            "- **Pattern**: custom",
            f"- **Trigger**: schedule `{schedule}`",
            "",
            "## Steps",
            f"1. `fetch_levels` (transform) - {FETCH_DOC}",
            "2. `flag_low_stock` (transform)",
            f"3. `load_levels` (load) - {LOAD_DOC}",
            "",
            "## Config",
            "",
            "| variable | value |",
            "| --- | --- |",
            f"| `low_stock_threshold` | `{customer.threshold!r}` |",
            f"| `sku_count` | `{customer.sku_count!r}` |",
            "",
            "## Connections",
            "",
            "| slot | Airflow connection id |",
            "| --- | --- |",
            f"| `warehouse_db` | `{customer.conn_id}` |",
        ]
    )


def task_arguments(customer: Customer, flow: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(task_id, operator class path, keyword arguments) of the three tasks, in order."""
    where = {"customer_id": customer.id, "integration": INTEGRATION, "flow": flow}
    fetch_options = {"warehouse": customer.id, "sku_count": customer.sku_count, "as_of": "{{ ds }}"}
    fetch = {
        **where,
        "callable": GENERATE,
        "options": fetch_options,
        "input_task_id": None,
        "config_refs": {"options": {**fetch_options, "sku_count": "${config.sku_count}"}},
        "doc_md": FETCH_DOC,
    }
    flag = {
        **where,
        "callable": FLAG,
        "options": {"threshold": customer.threshold},
        "input_task_id": "fetch_levels",
        "config_refs": {"options": {"threshold": "${config.low_stock_threshold}"}},
    }
    load = {
        **where,
        "table": TABLE,
        "mode": "upsert",
        "key": list(KEY),
        "columns": dict(COLUMNS),
        "create_table": True,
        "chunk_size": 1000,
        "conn_id": customer.conn_id,
        "input_task_id": "flag_low_stock",
        "doc_md": LOAD_DOC,
    }
    return [
        ("fetch_levels", TRANSFORM_OPERATOR, fetch),
        ("flag_low_stock", TRANSFORM_OPERATOR, flag),
        ("load_levels", LOAD_OPERATOR, load),
    ]


def build_floor_dags(customers: Iterable[Customer]) -> dict[str, Any]:
    """The floor, called by the generated floor DAG file: the same DAGs built in a plain loop."""
    from airflow.sdk import DAG, Param

    from b2b_integrations.operators.sql_load import SqlLoadOperator
    from b2b_integrations.operators.transform import TransformOperator

    operators = {TRANSFORM_OPERATOR: TransformOperator, LOAD_OPERATOR: SqlLoadOperator}
    dags = {}
    for customer in customers:
        for flow in FLOWS:
            arguments = dag_arguments(customer, flow)
            params = {name: Param(**spec) for name, spec in arguments.pop("params").items()}
            with DAG(**arguments, params=params) as dag:
                previous = None
                for task_id, operator, kwargs in task_arguments(customer, flow):
                    task = operators[operator](task_id=task_id, **kwargs)
                    if previous is not None:
                        previous >> task
                    previous = task
            dags[dag.dag_id] = dag
    return dags


# --- Generated inputs ---


def template_config() -> dict[str, Any]:
    steps = [
        {
            "id": "fetch_levels",
            "kind": "transform",
            "description": FETCH_DOC,
            "callable": GENERATE,
            "options": {
                "warehouse": "${customer.id}",
                "sku_count": "${config.sku_count}",
                "as_of": "{{ ds }}",
            },
        },
        {
            "id": "flag_low_stock",
            "kind": "transform",
            "callable": FLAG,
            "options": {"threshold": "${config.low_stock_threshold}"},
        },
        {
            "id": "load_levels",
            "kind": "load",
            "description": LOAD_DOC,
            "connection": "warehouse_db",
            "table": TABLE,
            "mode": "upsert",
            "key": KEY,
            "create_table": True,
            "columns": COLUMNS,
        },
    ]
    return {
        "name": INTEGRATION,
        "description": TEMPLATE_DESCRIPTION,
        "version": "1",
        "config": {
            "sku_count": {
                "type": "integer",
                "default": 25,
                "minimum": 1,
                "maximum": 100000,
                "description": SKU_DOC,
            },
            "low_stock_threshold": {
                "type": "integer",
                "default": 10,
                "minimum": 0,
                "description": THRESHOLD_DOC,
            },
        },
        "connections": {"warehouse_db": {"type": "sqlite", "description": "Our app database."}},
        "flows": {
            flow: {
                "description": description,
                "trigger": {"type": "schedule", "schedule": schedule},
                "steps": steps,
            }
            for flow, (schedule, description) in FLOWS.items()
        },
    }


def customer_config(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "tags": [f"tier:{customer.tier}"],
        "integrations": {
            INTEGRATION: {
                "config": {"sku_count": customer.sku_count, "low_stock_threshold": customer.threshold},
                "connections": {"warehouse_db": customer.conn_id},
            }
        },
    }


def write_yaml(path: Path, data: Any) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_ours(root: Path, customers: list[Customer]) -> Path:
    """The include folder (the factory file itself is the repository's dags/b2b_integrations_dags.py)."""
    include = root / "include"
    write_yaml(include / "integrations" / f"{INTEGRATION}.yaml", template_config())
    for customer in customers:
        write_yaml(include / "customers" / f"{customer.id}.yaml", customer_config(customer))
    return include


def write_floor(root: Path, customers: list[Customer]) -> Path:
    rows = ",\n".join(
        f"    Customer{(c.id, c.name, c.tier, c.sku_count, c.threshold, c.conn_id)!r}" for c in customers
    )
    source = (
        '"""Floor for the parse benchmark: Airflow DAGs built in a plain loop, no config layer."""\n\n'
        f"from {MODULE} import Customer, build_floor_dags\n\n"
        f"CUSTOMERS = [\n{rows},\n]\n\n"
        "globals().update(build_floor_dags(CUSTOMERS))\n"
    )
    path = root / "floor_dags.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


def write_peer(root: Path, customers: list[Customer]) -> Path:
    """dag-factory 1.x: one YAML file per customer with its three DAGs, and the documented loader file."""
    configs = root / "configs"
    for customer in customers:
        write_yaml(configs / f"{customer.id}.yaml", peer_config(customer))
    path = root / "dag_factory_dags.py"
    path.write_text(
        '"""Airflow DAG file for dag-factory: one DAG per entry of the YAML files in configs/."""\n\n'
        "from dagfactory import load_yaml_dags\n\n"
        f"load_yaml_dags(globals_dict=globals(), dags_folder={str(configs)!r})\n",
        encoding="utf-8",
    )
    return path


def peer_config(customer: Customer) -> dict[str, Any]:
    """The customer's DAGs in dag-factory's format; objects it cannot express in YAML use ``__type__``."""
    config: dict[str, Any] = {
        "default": {
            "default_args": {key: peer_value(value) for key, value in DEFAULT_ARGS.items()},
            "start_date": START_DATE.isoformat(),
            "catchup": False,
            "max_active_runs": 1,
        }
    }
    shared = config["default"].keys()
    for flow in FLOWS:
        arguments = {k: v for k, v in dag_arguments(customer, flow).items() if k not in shared}
        name = arguments.pop("dag_id")
        arguments["params"] = {
            key: {"__type__": "airflow.sdk.Param", **spec} for key, spec in arguments["params"].items()
        }
        config[name] = {**arguments, "tasks": peer_tasks(customer, flow)}
    return config


def peer_tasks(customer: Customer, flow: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    for task_id, operator, kwargs in task_arguments(customer, flow):
        dependencies = {"dependencies": [tasks[-1]["task_id"]]} if tasks else {}
        tasks.append({"task_id": task_id, "operator": operator, **dependencies, **kwargs})
    return tasks


def peer_value(value: Any) -> Any:
    if isinstance(value, timedelta):
        return {"__type__": "datetime.timedelta", "seconds": value.total_seconds()}
    return value


# --- Measuring (the child side runs in a fresh interpreter of either venv) ---


def measure_child(argv: list[str]) -> None:
    """Child entry: parse a DAG file or folder, serialize every DAG, print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_folder")
    parser.add_argument("--dump", help="write the serialized DAGs to this JSON file")
    parser.add_argument("--no-serialize", action="store_true", help="time the parse only")
    parser.add_argument("--preimport", help="import this module before timing the parse (timed apart)")
    args = parser.parse_args(argv)
    import importlib
    import resource

    start = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    imported = time.perf_counter()
    if args.preimport:
        importlib.import_module(args.preimport)
    preimported = time.perf_counter()
    bag = DagBag(dag_folder=args.dag_folder)
    parsed = time.perf_counter()
    parse_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    serialized = (
        {}
        if args.no_serialize
        else {dag_id: DagSerialization.to_dict(dag) for dag_id, dag in bag.dags.items()}
    )
    done = time.perf_counter()
    if args.dump:
        dump = {"serialized": serialized, "arguments": operator_arguments(bag.dags.values())}
        Path(args.dump).write_text(json.dumps(dump, default=str, sort_keys=True), encoding="utf-8")
    report = {
        "dags": len(bag.dags),
        "tasks": sum(len(dag.tasks) for dag in bag.dags.values()),
        "import_errors": dict(bag.import_errors),
        "import_s": imported - start,
        "preimport_s": preimported - imported,
        "parse_s": parsed - preimported,
        "serialize_s": done - parsed,
        "parse_peak_mib": parse_peak / MIB,
        "serialize_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB,
    }
    print(REPORT_MARKER + json.dumps(report))


def operator_arguments(dags: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The step operators' own arguments, most of which serialization leaves out (only template fields)."""
    return {
        f"{dag.dag_id}.{task.task_id}": {name: getattr(task, name, None) for name in OPERATOR_ATTRIBUTES}
        for dag in dags
        for task in dag.tasks
    }


@dataclass(frozen=True)
class Result:
    """One fresh-process run: seconds and peak RSS (MiB) after parsing and after serializing too."""

    dags: int
    import_s: float
    parse_s: float
    serialize_s: float
    parse_peak_mib: float
    serialize_peak_mib: float

    @property
    def total_s(self) -> float:
        return self.parse_s + self.serialize_s


def child_env(airflow_home: Path) -> dict[str, str]:
    """A clean Airflow environment: temp AIRFLOW_HOME, no examples, no parse timeout, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "B2B_", "PYTHON"))}
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="0",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(BENCH_DIR),  # the floor file imports this module
    )
    return env


def run_child(
    python: Path, dag_file: Path, env: dict[str, str], dump: Path | None = None, serialize: bool = True
) -> dict[str, Any]:
    command = [
        str(python),
        "-c",
        f"import sys, {MODULE}; {MODULE}.measure_child(sys.argv[1:])",
        str(dag_file),
    ]
    if dump is not None:
        command += ["--dump", str(dump)]
    if not serialize:
        command += ["--no-serialize", "--preimport", "b2b_integrations.factory.register"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measuring {dag_file} with {python} failed:\n{proc.stderr[-4000:]}")
    reports = [line for line in proc.stdout.splitlines() if line.startswith(REPORT_MARKER)]
    if not reports:
        raise SystemExit(f"measuring {dag_file} with {python} printed no report:\n{proc.stdout[-4000:]}")
    return json.loads(reports[-1].removeprefix(REPORT_MARKER))


def measure(python: Path, dag_file: Path, env: dict[str, str], expected_dags: int, repeat: int) -> Result:
    """The fastest of ``repeat`` fresh-process runs (lowest parse + serialize), every figure from that one
    run: a minimum per column would pair one run's parse with another's memory. Any import error stops
    the benchmark."""
    results = []
    for _ in range(repeat):
        report = run_child(python, dag_file, env)
        expected = (expected_dags, expected_dags * TASKS_PER_DAG)
        if report["import_errors"] or (report["dags"], report["tasks"]) != expected:
            raise SystemExit(
                f"{dag_file}: expected {expected_dags} DAGs of {TASKS_PER_DAG} tasks and no import errors, got "
                f"{report['dags']} DAGs, {report['tasks']} tasks and import errors:\n"
                + json.dumps(report["import_errors"], indent=2)[-4000:]
            )
        results.append(
            Result(**{k: v for k, v in report.items() if k not in ("tasks", "import_errors", "preimport_s")})
        )
    return min(results, key=lambda r: r.total_s)


# --- The peer's venv ---


def peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def peer_versions(python: Path) -> dict[str, str] | None:
    """Airflow and dag-factory versions in the peer venv, or None when it is missing or incomplete."""
    if not python.exists():
        return None
    # find_spec rather than import: importing Airflow takes seconds and logs to stdout.
    probe = (
        "import json, sys\n"
        "from importlib.metadata import version\n"
        "from importlib.util import find_spec\n"
        "if not (find_spec('dagfactory') and find_spec('b2b_integrations')): sys.exit(1)\n"
        "print(json.dumps({p: version(p) for p in ('apache-airflow', 'dag-factory')}))"
    )
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def ensure_peer_venv() -> dict[str, str]:
    """Create benchmarks/.venv-dagfactory with dag-factory 1.x on our Airflow version unless it is ready."""
    python = peer_python()
    versions = peer_versions(python)
    if versions is None:
        print(f"installing {PEER_REQUIREMENT} into {PEER_VENV} (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            constraints = pinned_constraints(Path(tmp))
            pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints)]
            airflow = f"apache-airflow=={metadata.version('apache-airflow')}"
            subprocess.run([*pip, airflow, PEER_REQUIREMENT], check=True)
            subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True)
        versions = peer_versions(python)
    if versions is None:
        raise SystemExit(f"{PEER_VENV} cannot import dagfactory and b2b_integrations; delete it and re-run")
    ours = metadata.version("apache-airflow")
    if versions["apache-airflow"] != ours or not versions["dag-factory"].startswith("1."):
        raise SystemExit(f"{PEER_VENV} has {versions}; expected Airflow {ours} and dag-factory 1.x")
    return versions


def pinned_constraints(tmp: Path) -> Path:
    """The project's constraints.txt, else a freeze of this venv, so the peer runs on the same Airflow."""
    constraints = REPO / "constraints.txt"
    if constraints.exists():
        return constraints
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp / "constraints.txt"
    path.write_text(frozen.stdout, encoding="utf-8")
    return path


# --- Checks before timing ---


def validate_include(include: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "validate", str(include)],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(include.parent / "airflow_home"),
    )
    if proc.returncode != 0:
        raise SystemExit(f"the generated include folder {include} is invalid:\n{proc.stdout}{proc.stderr}")


# Keys that legitimately differ between variants: file locations everywhere; dag-factory appends its YAML to
# doc_md and adds a "dagfactory" tag.
FLOOR_IGNORED = frozenset({"fileloc", "relative_fileloc"})
# dag-factory YAML cannot name our notifier object: its DAGs go without it (less work for the peer).
PEER_IGNORED = FLOOR_IGNORED | {"doc_md", "tags", "has_on_failure_callback"}


def differences(expected: Any, actual: Any, ignored: frozenset[str], path: str = "") -> list[str]:
    """Key paths where two serialized DAGs differ (ignoring the given keys at any depth)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key in ignored:
                continue
            found += differences(expected.get(key), actual.get(key), ignored, f"{path}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, ignored, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r:.80} != {actual!r:.80}"]


def check_equivalence(tmp: Path, env: dict[str, str], peer: Path | None) -> None:
    """Build CHECK_CUSTOMERS customers' DAGs with each variant; serialized DAGs and operator arguments must match ours."""
    root = tmp / "check"
    customers = make_customers(CHECK_CUSTOMERS)
    include = write_ours(root / "ours", customers)
    validate_include(include)
    dumped = {"ours": root / "ours.json", "floor": root / "floor.json", "dag-factory": root / "peer.json"}
    run_child(Path(sys.executable), FACTORY_FILE, {**env, "B2B_INCLUDE_DIR": str(include)}, dumped["ours"])
    run_child(Path(sys.executable), write_floor(root / "floor", customers), env, dumped["floor"])
    if peer is not None:
        run_child(peer, write_peer(root / "peer", customers), env, dumped["dag-factory"])
    ours = json.loads(dumped["ours"].read_text(encoding="utf-8"))
    for variant, ignored in (("floor", FLOOR_IGNORED), ("dag-factory", PEER_IGNORED)):
        if not dumped[variant].exists():
            continue
        theirs = json.loads(dumped[variant].read_text(encoding="utf-8"))
        found = differences(ours, theirs, ignored)
        if found:
            raise SystemExit(f"{variant} does not build the same DAGs as ours:\n" + "\n".join(found[:20]))


# --- Running and reporting ---


@dataclass(frozen=True)
class SizeResult:
    customers: int
    variants: dict[str, Result]


def run_size(n: int, tmp: Path, env: dict[str, str], peer: Path | None, repeat: int) -> SizeResult:
    customers = make_customers(n)
    expected = n * len(FLOWS)
    root = tmp / f"n{n}"
    include = write_ours(root / "ours", customers)
    validate_include(include)
    python = Path(sys.executable)
    inputs: dict[str, tuple[Path, Path, dict[str, str]]] = {
        "ours": (python, FACTORY_FILE, {**env, "B2B_INCLUDE_DIR": str(include)}),
        "floor": (python, write_floor(root / "floor", customers), env),
    }
    if peer is not None:
        inputs["dag-factory"] = (peer, write_peer(root / "peer", customers), env)
    # Rounds of ours, floor, peer one after the other rather than all of ours first: on a shared host the
    # load drifts, and interleaving gives each side the same share of it. Each side keeps its fastest run.
    runs: dict[str, list[Result]] = {variant: [] for variant in inputs}
    for round_ in range(1, repeat + 1):
        for variant, (interpreter, dag_file, variant_env) in inputs.items():
            progress(f"N={n}: {variant} (run {round_} of {repeat}) ...")
            runs[variant].append(measure(interpreter, dag_file, variant_env, expected, 1))
    return SizeResult(n, {variant: min(found, key=lambda r: r.total_s) for variant, found in runs.items()})


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def print_machine(peer_info: dict[str, str] | None) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peer = (
        f"; peer: dag-factory {peer_info['dag-factory']} on Airflow {peer_info['apache-airflow']}"
        if peer_info
        else ""
    )
    print(
        f"machine: {cores} CPUs (nproc), {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, Airflow {metadata.version('apache-airflow')}{peer}"
    )


def print_baselines(baselines: dict[str, Result]) -> None:
    print("baseline (fresh process: import Airflow, then DagBag of an empty folder); the times below exclude")
    print("the import, the 'net' memory subtracts this peak:")
    for venv, result in baselines.items():
        print(
            f"  {venv + ' venv':<17} import {result.import_s:5.2f} s, peak {result.serialize_peak_mib:4.0f} MiB"
        )


def print_table(results: list[SizeResult], baselines: dict[str, Result]) -> None:
    """Seconds, and peak RSS in MiB after the parse and after the serialization (net of the baseline)."""
    header = (
        f"{'N':>5} {'DAGs':>5}  {'variant':<11} {'parse s':>8} {'serialize s':>11} {'total s':>8}"
        f" {'parse MiB':>9} {'net':>5} {'+ser MiB':>9} {'net':>5}"
    )
    print()
    print(header)
    print("-" * len(header))
    for size in results:
        for index, (variant, r) in enumerate(size.variants.items()):
            lead = f"{size.customers:>5} {r.dags:>5}" if index == 0 else " " * 11
            base = baselines["dag-factory" if variant == "dag-factory" else "ours"].serialize_peak_mib
            print(
                f"{lead}  {variant:<11} {r.parse_s:8.2f} {r.serialize_s:11.2f} {r.total_s:8.2f}"
                f" {r.parse_peak_mib:9.0f} {r.parse_peak_mib - base:5.0f}"
                f" {r.serialize_peak_mib:9.0f} {r.serialize_peak_mib - base:5.0f}"
            )


def print_ratios(results: list[SizeResult]) -> None:
    print()
    print(
        f"{'N':>6}  {'ours/floor parse':>17} {'parse+ser':>10}  {'dag-factory/ours parse':>23} {'parse+ser':>10}"
    )
    for size in results:
        ours, floor = size.variants["ours"], size.variants["floor"]
        peer = size.variants.get("dag-factory")
        peer_parse = ratio(peer.parse_s, ours.parse_s) if peer else "-"
        peer_total = ratio(peer.total_s, ours.total_s) if peer else "-"
        print(
            f"{size.customers:>6}  {ratio(ours.parse_s, floor.parse_s):>17} {ratio(ours.total_s, floor.total_s):>10}  "
            f"{peer_parse:>23} {peer_total:>10}"
        )


def print_targets(results: list[SizeResult]) -> None:
    """The issue's targets at 1,000 customers (reported, not asserted)."""
    size = next((s for s in results if s.customers == 1000), None)
    if size is None:
        return
    ours, floor = size.variants["ours"], size.variants["floor"]
    peer = size.variants.get("dag-factory")
    print()
    print("targets at N=1000 (not asserted):")
    print(
        f"  parse < 10 s:                 {ours.parse_s:.2f} s  {'met' if ours.parse_s < 10 else 'NOT met'}"
    )
    within = ours.parse_s / floor.parse_s
    print(f"  parse <= 1.5x floor:          {within:.2f}x  {'met' if within <= 1.5 else 'NOT met'}")
    if peer is not None:
        faster = peer.parse_s / ours.parse_s
        print(f"  parse >= 2x faster than peer: {faster:.2f}x  {'met' if faster >= 2 else 'NOT met'}")


# --- Scale: one file against shards, and the task start (``--scale``) ---

DAGS_DIR = REPO / "dags"
PROBLEMS_FILE = DAGS_DIR / "b2b_config_problems.py"


@dataclass(frozen=True)
class ScaleResult:
    customers: int
    shards: int
    rows: list[tuple[str, float, int]]
    """(what, seconds, DAGs built) in print order."""


def scale_child(dag_file: Path, env: dict[str, str], expected_dags: int, repeat: int) -> float:
    """Lowest parse seconds over ``repeat`` fresh processes (no serialization); any import error or a wrong
    DAG count stops the benchmark."""
    times = []
    for _ in range(repeat):
        report = run_child(Path(sys.executable), dag_file, env, serialize=False)
        if report["import_errors"] or report["dags"] != expected_dags:
            raise SystemExit(
                f"{dag_file}: expected {expected_dags} DAGs and no import errors, got {report['dags']}:\n"
                + json.dumps(report["import_errors"], indent=2)[-4000:]
            )
        times.append(report["parse_s"])
        IMPORTS.append(report["preimport_s"])
    return min(times)


IMPORTS: list[float] = []
"""Every child's import of ``b2b_integrations.factory.register`` (timed before the parse, not in it)."""


def problems_child(env: dict[str, str], repeat: int) -> float:
    """The problems file holds no DAG and, on a valid include, raises nothing."""
    return scale_child(PROBLEMS_FILE, env, 0, repeat)


def run_scale(n: int, shards: int, tmp: Path, env: dict[str, str], repeat: int) -> ScaleResult:
    sys.path.insert(0, str(REPO / "plugins"))
    from b2b_integrations.factory.shards import shard_file, shard_of

    customers = make_customers(n)
    root = tmp / f"scale{n}"
    include = write_ours(root / "ours", customers)
    data = root / "data"
    # B2B_STRICT: a config problem would be the DAG file's import error, which stops the benchmark.
    base = {**env, "B2B_INCLUDE_DIR": str(include), "B2B_DATA_DIR": str(data), "B2B_STRICT": "1"}
    # The one-file layout as it was: past 1,000 customers the problems file would list the file as too
    # large (and not build it), which is the point of sharding but not what this row measures.
    one = {**base, "B2B_SHARDS": "1", "B2B_MAX_CUSTOMERS_PER_SHARD": str(n)}
    many = {**base, "B2B_SHARDS": str(shards)}
    first = customers[0]
    target = dag_id(first, "hourly")
    rows: list[tuple[str, float, int]] = []

    def add(what: str, seconds: float, dags: int) -> None:
        rows.append((what, seconds, dags))
        progress(f"N={n}: {what}: {seconds:.2f} s")

    # Warm-up (not reported): the first parse writes every file's last valid copy; later ones compare.
    scale_child(FACTORY_FILE, one, 3 * n, 1)
    # Today's design: one file with every customer; a task start parsed it whole.
    add("one file: factory file parse (= a task start before the parsing context)",
        scale_child(FACTORY_FILE, one, 3 * n, repeat), 3 * n)  # fmt: skip
    add("one file: problems file, its report fresh", problems_child(one, repeat), 0)
    stale = []
    for _ in range(repeat):  # each run writes the report the next would use: remove it every time
        shutil.rmtree(data / "parse_reports", ignore_errors=True)
        stale.append(problems_child(one, 1))
    add("one file: problems file, no report (builds every DAG: today's cost)", min(stale), 0)
    # Task start now: the parsing context names the DAG; the same file builds only it.
    cheap = max(repeat, 5)  # sub-second rows: the lowest of 5 fresh processes
    nothing = {**one, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "not__a__dag"}
    add(
        "task start, a DAG id not ours (not__a__dag): builds nothing",
        scale_child(FACTORY_FILE, nothing, 0, cheap),
        0,
    )
    add(f"task start: {target}",
        scale_child(FACTORY_FILE, {**one, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": target}, 1, cheap), 1)  # fmt: skip
    # Sharded.
    members = [[c for c in customers if shard_of(c.id, shards) == k] for k in range(shards)]
    shard_times = []
    for k in range(shards):
        seconds = scale_child(DAGS_DIR / shard_file(k), many, 3 * len(members[k]), repeat)
        shard_times.append(seconds)
        progress(f"N={n}: shard {k} ({len(members[k])} customers): {seconds:.2f} s")
    biggest = max(range(shards), key=lambda k: len(members[k]))
    add(
        f"{shards} shards: slowest shard file parse",
        max(shard_times),
        3 * len(members[shard_times.index(max(shard_times))]),
    )
    add(f"{shards} shards: mean shard file parse", sum(shard_times) / shards, round(3 * n / shards))
    add(f"{shards} shards: all shard files, one after the other", sum(shard_times), 3 * n)
    add(f"{shards} shards: problems file, reports fresh", problems_child(many, repeat), 0)
    owner = DAGS_DIR / shard_file(shard_of(first.id, shards))
    add(f"{shards} shards: task start {target} ({owner.name})",
        scale_child(owner, {**many, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": target}, 1, cheap), 1)  # fmt: skip
    # Floors: the same DAGs built in a plain loop, for the largest shard's customers and for everyone.
    floor_shard = write_floor(root / "floor_shard", members[biggest])
    add(f"floor: plain loop, largest shard's {len(members[biggest])} customers",
        scale_child(floor_shard, env, 3 * len(members[biggest]), repeat), 3 * len(members[biggest]))  # fmt: skip
    add(f"floor: plain loop, all {n} customers in one file",
        scale_child(write_floor(root / "floor_all", customers), env, 3 * n, repeat), 3 * n)  # fmt: skip
    add("floor: plain loop, one customer (3 DAGs)",
        scale_child(write_floor(root / "floor_one", customers[:1]), env, 3, cheap), 3)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    return ScaleResult(n, shards, rows)


def print_scale(results: list[ScaleResult]) -> None:
    print()
    print("parse seconds per DAG file: a fresh process each, Airflow and b2b_integrations.factory.register")
    print("imported before timing (as the dag-processor pre-imports them); no serialization")
    if IMPORTS:
        print(f"import of b2b_integrations.factory.register, not in the figures: lowest {min(IMPORTS):.2f} s")
    for result in results:
        print()
        print(f"N = {result.customers} customers x {len(FLOWS)} flows, B2B_SHARDS = {result.shards}")
        for what, seconds, dags in result.rows:
            print(f"  {what:<78} {seconds:8.2f} s  {dags:>6} DAGs")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10,100,1000", help="customer counts, comma separated (default %(default)s)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip dag-factory (no venv is created)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="fresh-process runs per variant; the fastest run's figures are kept",
    )
    parser.add_argument(
        "--scale",
        help="instead: customer counts (e.g. 1000,10000) for one file against shards and the task start",
    )
    parser.add_argument("--shards", type=int, default=16, help="B2B_SHARDS for --scale (default %(default)s)")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    args.scale = [int(size) for size in args.scale.split(",") if size.strip()] if args.scale else []
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scale:
        print_machine(None)
        with tempfile.TemporaryDirectory(prefix="b2b-parse-scale-") as tmp_name:
            tmp = Path(tmp_name)
            env = child_env(tmp / "airflow_home")
            results = [run_scale(n, args.shards, tmp, env, args.repeat) for n in args.scale]
        print_scale(results)
        return
    peer_info = None if args.no_peer else ensure_peer_venv()
    peer = None if args.no_peer else peer_python()
    print_machine(peer_info)
    with tempfile.TemporaryDirectory(prefix="b2b-parse-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = child_env(tmp / "airflow_home")
        progress("checking that floor and dag-factory build the same DAGs as ours ...")
        check_equivalence(tmp, env, peer)
        empty = tmp / "empty"
        empty.mkdir()
        baselines = {"ours": measure(Path(sys.executable), empty, env, 0, args.repeat)}
        if peer is not None:
            baselines["dag-factory"] = measure(peer, empty, env, 0, args.repeat)
        results = [run_size(n, tmp, env, peer, args.repeat) for n in args.sizes]
    print_baselines(baselines)
    print_table(results, baselines)
    print_ratios(results)
    print_targets(results)


if __name__ == "__main__":
    main()
