"""Parse-time benchmark of the DAG factory: N customers x 3 flows, against a floor and a peer.

For each N (default 10, 100, 1000) it generates, into a temp folder:
- ours:  an include folder (one 3-flow template, N customer files) and the factory entry file;
- floor: a plain Python DAG file building the same DAGs (same operators, arguments, params, tags,
         default_args) in a loop, with no YAML, no pydantic and no planning: what the config layer costs;
- peer:  astronomer dag-factory 1.x on equivalent YAML (one file per customer), installed by this script
         into benchmarks/.venv-dagfactory (same Airflow pins from constraints.txt).
Each variant is measured in a fresh process: DagBag parse wall time, serialization wall time of every DAG,
and peak RSS; the cost of importing Airflow and parsing an empty folder is printed as the baseline.

Run: .venv/bin/python benchmarks/parse_dags.py [--sizes 10,100,1000] [--no-peer] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PEER_VENV = REPO / "benchmarks" / ".venv-dagfactory"
FLOWS = {"snapshot": "@hourly", "nightly": "@daily", "weekly": "0 6 * * 1"}
INTEGRATION = "inventory_sync"
DEFAULT_IMPORT_TIMEOUT_S = 30

# Runs in a fresh interpreter: time DagBag parsing and serialization, report JSON on the last line.
MEASURE = textwrap.dedent(
    """
    import json, os, resource, sys, time
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    start = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    parsed = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    done = time.perf_counter()
    print(json.dumps({
        "dags": len(bag.dags),
        "errors": {k: v[-300:] for k, v in bag.import_errors.items()},
        "parse_s": parsed - start,
        "serialize_s": done - parsed,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    """
)


@dataclass
class Result:
    dags: int
    parse_s: float
    serialize_s: float
    peak_mib: float


def template() -> dict[str, Any]:
    steps = [
        {
            "id": "fetch_levels",
            "kind": "transform",
            "callable": "b2b_integrations.transforms.demo.generate_inventory",
            "options": {
                "warehouse": "${customer.id}",
                "sku_count": "${config.sku_count}",
                "as_of": "{{ ds }}",
            },
        },
        {
            "id": "flag_low_stock",
            "kind": "transform",
            "callable": "b2b_integrations.transforms.demo.flag_low_stock",
            "options": {"threshold": "${config.low_stock_threshold}"},
        },
        {
            "id": "load_levels",
            "kind": "load",
            "connection": "db",
            "table": "inventory_levels",
            "key": ["customer_id", "sku"],
        },
    ]
    return {
        "name": INTEGRATION,
        "config": {
            "sku_count": {"type": "integer", "default": 25, "minimum": 1},
            "low_stock_threshold": {"type": "integer", "default": 10, "minimum": 0},
        },
        "connections": {"db": {"type": "postgres"}},
        "flows": {
            name: {"trigger": {"type": "schedule", "schedule": cron}, "steps": steps}
            for name, cron in FLOWS.items()
        },
    }


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"cust{i:05d}", "name": f"Customer {i}", "sku_count": 10 + i % 50, "conn": f"cust{i:05d}_db"}
        for i in range(n)
    ]


def write_ours(root: Path, people: list[dict[str, Any]]) -> Path:
    include = root / "include"
    (include / "integrations").mkdir(parents=True)
    (include / "customers").mkdir()
    (include / "integrations" / f"{INTEGRATION}.yaml").write_text(yaml.safe_dump(template(), sort_keys=False))
    for c in people:
        doc = {
            "id": c["id"],
            "name": c["name"],
            "integrations": {
                INTEGRATION: {"config": {"sku_count": c["sku_count"]}, "connections": {"db": c["conn"]}}
            },
        }
        (include / "customers" / f"{c['id']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    dags = root / "dags"
    dags.mkdir()
    (dags / "b2b_integrations_dags.py").write_text((REPO / "dags" / "b2b_integrations_dags.py").read_text())
    return dags


FLOOR = '''\
"""Floor: the same DAGs as the factory builds, written as a plain loop (airflow dag)."""
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from b2b_integrations.operators.sql_load import SqlLoadOperator
from b2b_integrations.operators.transform import TransformOperator

CUSTOMERS = {customers!r}
FLOWS = {flows!r}
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DEFAULT_ARGS = {{
    "owner": "b2b-integrations", "retries": 2, "retry_delay": timedelta(seconds=60),
    "retry_exponential_backoff": True, "max_retry_delay": timedelta(seconds=1800),
    "execution_timeout": timedelta(minutes=60),
}}
START = datetime.fromisoformat("2025-01-01T00:00:00+00:00")

for c in CUSTOMERS:
    for flow, schedule in FLOWS.items():
        where = {{"customer_id": c["id"], "integration": "{integration}", "flow": flow}}
        with DAG(
            dag_id=f"{{c['id']}}__{integration}__{{flow}}",
            description=f"{{c['name']}}: {integration} / {{flow}}",
            doc_md=f"# {{c['name']}} · {integration} · {{flow}}\\n\\nsku_count={{c['sku_count']}}",
            schedule=schedule, start_date=START, catchup=False, max_active_runs=1,
            tags=[f"customer:{{c['id']}}", "integration:{integration}", "pattern:custom"],
            default_args=dict(DEFAULT_ARGS),
            params={{
                "sku_count": Param(default=c["sku_count"], type="integer", minimum=1, **{{"$schema": DRAFT7}}),
                "low_stock_threshold": Param(default=10, type="integer", minimum=0, **{{"$schema": DRAFT7}}),
            }},
        ) as dag:
            fetch = TransformOperator(
                task_id="fetch_levels", **where, input_task_id=None,
                callable="b2b_integrations.transforms.demo.generate_inventory",
                options={{"warehouse": c["id"], "sku_count": c["sku_count"], "as_of": "{{{{ ds }}}}"}},
                config_refs={{"options": {{"warehouse": c["id"], "sku_count": "${{config.sku_count}}", "as_of": "{{{{ ds }}}}"}}}},
            )
            flag = TransformOperator(
                task_id="flag_low_stock", **where, input_task_id="fetch_levels",
                callable="b2b_integrations.transforms.demo.flag_low_stock",
                options={{"threshold": 10}}, config_refs={{"options": {{"threshold": "${{config.low_stock_threshold}}"}}}},
            )
            load = SqlLoadOperator(
                task_id="load_levels", **where, input_task_id="flag_low_stock", conn_id=c["conn"],
                table="inventory_levels", mode="upsert", key=["customer_id", "sku"], columns=None,
                create_table=False, chunk_size=1000,
            )
            fetch >> flag >> load
        globals()[dag.dag_id] = dag
'''


def write_floor(root: Path, people: list[dict[str, Any]]) -> Path:
    dags = root / "dags"
    dags.mkdir(parents=True)
    (dags / "floor_dags.py").write_text(FLOOR.format(customers=people, flows=FLOWS, integration=INTEGRATION))
    return dags


def write_peer(root: Path, people: list[dict[str, Any]]) -> Path:
    """dag-factory YAML: one file per customer holding its three DAGs, same operators and arguments."""
    configs = root / "configs"
    configs.mkdir(parents=True)
    for c in people:
        where = {"customer_id": c["id"], "integration": INTEGRATION}
        doc: dict[str, Any] = {}
        for flow, schedule in FLOWS.items():
            doc[f"{c['id']}__{INTEGRATION}__{flow}"] = {
                "default_args": {
                    "owner": "b2b-integrations",
                    "retries": 2,
                    "retry_delay_sec": 60,
                    "retry_exponential_backoff": True,
                    "start_date": "2025-01-01",
                },
                "description": f"{c['name']}: {INTEGRATION} / {flow}",
                "doc_md": f"# {c['name']} · {INTEGRATION} · {flow}\n\nsku_count={c['sku_count']}",
                "schedule": schedule,
                "catchup": False,
                "max_active_runs": 1,
                "tags": [f"customer:{c['id']}", f"integration:{INTEGRATION}", "pattern:custom"],
                "params": {"sku_count": c["sku_count"], "low_stock_threshold": 10},
                "tasks": [
                    {
                        "task_id": "fetch_levels",
                        "operator": "b2b_integrations.operators.transform.TransformOperator",
                        **where,
                        "flow": flow,
                        "callable": "b2b_integrations.transforms.demo.generate_inventory",
                        "options": {"warehouse": c["id"], "sku_count": c["sku_count"], "as_of": "{{ ds }}"},
                    },
                    {
                        "task_id": "flag_low_stock",
                        "operator": "b2b_integrations.operators.transform.TransformOperator",
                        **where,
                        "flow": flow,
                        "input_task_id": "fetch_levels",
                        "callable": "b2b_integrations.transforms.demo.flag_low_stock",
                        "options": {"threshold": 10},
                        "dependencies": ["fetch_levels"],
                    },
                    {
                        "task_id": "load_levels",
                        "operator": "b2b_integrations.operators.sql_load.SqlLoadOperator",
                        **where,
                        "flow": flow,
                        "input_task_id": "flag_low_stock",
                        "conn_id": c["conn"],
                        "table": "inventory_levels",
                        "key": ["customer_id", "sku"],
                        "dependencies": ["flag_low_stock"],
                    },
                ],
            }
        (configs / f"{c['id']}.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    dags = root / "dags"
    dags.mkdir()
    (dags / "dag_factory_dags.py").write_text(
        "# airflow DAG file for dag-factory\n"
        "from dagfactory import load_yaml_dags\n\n"
        f"load_yaml_dags(globals_dict=globals(), dags_folder={str(configs)!r})\n"
    )
    return dags


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import dagfactory"], capture_output=True).returncode == 0
    ):
        return python
    print(f"installing dag-factory 1.x into {PEER_VENV} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run(
        [*pip, "-c", str(REPO / "constraints.txt"), "-e", str(REPO), "dag-factory==1.1.*"], check=True
    )
    return python


def measure(python: Path, dag_folder: Path, env: dict[str, str], repeat: int, expected: int | None) -> Result:
    best: Result | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [str(python), "-c", MEASURE, str(dag_folder)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"measurement of {dag_folder} failed:\n{proc.stderr[-3000:]}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        if data["errors"] or (expected is not None and data["dags"] != expected):
            raise SystemExit(
                f"{dag_folder}: expected {expected} DAGs and no errors, got {data['dags']}: {data['errors']}"
            )
        result = Result(data["dags"], data["parse_s"], data["serialize_s"], data["peak_mib"])
        if best is None or result.parse_s + result.serialize_s < best.parse_s + best.serialize_s:
            best = result
    assert best is not None
    return best


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "B2B_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="ERROR",
        # Measure past Airflow's default 30 s import timeout (rows that exceed it are marked).
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=str(DEFAULT_IMPORT_TIMEOUT_S * 30),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    )
    return env


def validate_include(include: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "validate", str(include)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"generated include folder is invalid:\n{proc.stdout}{proc.stderr}")


def row(label: str, r: Result) -> str:
    over = (
        f"  over Airflow's default {DEFAULT_IMPORT_TIMEOUT_S} s import timeout"
        if r.parse_s > DEFAULT_IMPORT_TIMEOUT_S
        else ""
    )
    return (
        f"  {label:<12} {r.dags:>6} {r.parse_s:>9.2f} {r.serialize_s:>12.2f} {r.parse_s + r.serialize_s:>9.2f}"
        f" {r.peak_mib:>9.0f}{over}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000", help="customer counts, comma separated")
    parser.add_argument("--no-peer", action="store_true", help="skip dag-factory")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from airflow import __version__ as airflow_version

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, Airflow {airflow_version}")
    peer_python = None if args.no_peer else ensure_peer_venv()
    with tempfile.TemporaryDirectory(prefix="b2b-parse-bench-") as tmp:
        tmp_path = Path(tmp)
        env = base_env(tmp_path / "airflow_home")
        empty = tmp_path / "empty"
        empty.mkdir()
        baseline = measure(Path(sys.executable), empty, env, args.repeat, 0)
        print(
            f"baseline (import Airflow, parse an empty folder, fresh process): peak {baseline.peak_mib:.0f} MiB"
        )
        header = (
            f"  {'variant':<12} {'DAGs':>6} {'parse s':>9} {'serialize s':>12} {'total s':>9} {'peak MiB':>9}"
        )
        for n in sizes:
            people = customers(n)
            ours_dir = write_ours(tmp_path / f"ours{n}", people)
            validate_include(tmp_path / f"ours{n}" / "include")
            ours = measure(
                Path(sys.executable),
                ours_dir,
                {**env, "B2B_INCLUDE_DIR": str(tmp_path / f"ours{n}" / "include")},
                args.repeat,
                3 * n,
            )
            floor = measure(
                Path(sys.executable), write_floor(tmp_path / f"floor{n}", people), env, args.repeat, 3 * n
            )
            print(f"\nN = {n} customers x {len(FLOWS)} flows = {3 * n} DAGs (3 tasks each)")
            print(header)
            print(row("ours", ours))
            print(row("floor", floor))
            ratios = [
                f"ours/floor parse {ours.parse_s / floor.parse_s:.2f}x",
                f"parse+serialize {(ours.parse_s + ours.serialize_s) / (floor.parse_s + floor.serialize_s):.2f}x",
            ]
            if peer_python is not None:
                peer = measure(
                    peer_python, write_peer(tmp_path / f"peer{n}", people), env, args.repeat, 3 * n
                )
                print(row("dag-factory", peer))
                ratios += [
                    f"dag-factory/ours parse {peer.parse_s / ours.parse_s:.2f}x",
                    f"parse+serialize {(peer.parse_s + peer.serialize_s) / (ours.parse_s + ours.serialize_s):.2f}x",
                ]
            print("  " + "; ".join(ratios))


if __name__ == "__main__":
    main()
