"""The dag-processor at steady state: one DAG file against 16 shards, side by side in one run.

For each N (generated customers x 3 flows of 3 steps, parse_dags.py's project) and each layout
(B2B_SHARDS=1: every customer in the factory file; B2B_SHARDS=16), a real ``airflow dag-processor`` runs
alone against a throwaway PostgreSQL metadata DB (tests/airflow_stack.py) with Airflow's defaults for what
is measured (parsing_processes 2, min_file_process_interval 30 s, dagbag_import_timeout 30 s,
dag_file_processor_timeout 50 s; ``--one-file-timeout`` raises the last two for the one-file layout, whose
parse passes them at some N, so that its costs can be measured at all). Measured:

- **first cycle**: start until every DAG is in ``serialized_dag`` (or the layout's file is an import error);
- **full cycle at steady state**: from a moment t0 until every file holding DAGs was parsed again (each
  parse stamps ``dag.last_parsed_time`` of the file's DAGs);
- **CPU per minute at steady state**: user + system seconds of the dag-processor and every process under it
  (live children, plus the children it has reaped, as psutil reports them) over a window, per minute;
- **peak memory**: the largest sum of RSS over the process tree, sampled every 0.5 s, from start to end;
- **change to the scheduler**: one customer's YAML edited (a config value its DAGs' params show) until
  that DAG's ``serialized_dag.dag_hash`` changes: once left to the dag-processor's own re-parse (an edit
  committed to the folder), once followed by the instances API's priority re-parse request.

The 1-minute load average is printed beside every figure (the machine is shared). The script fails when a
layout that should hold every DAG does not (a wrong count is not a figure).

    .venv/bin/python benchmarks/dag_processor.py --sizes 1000,10000 [--window 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO / "tests"), str(REPO / "plugins")]

from airflow_stack import start_airflow_stack  # noqa: E402
from parse_dags import FLOWS, customer_config, dag_id, make_customers, write_ours, write_yaml  # noqa: E402

CHANGED_FLOW = "hourly"


def load() -> float:
    return os.getloadavg()[0]


@dataclass
class TreeSampler:
    """Peak RSS and CPU seconds of a process and everything under it, sampled in a thread."""

    root: psutil.Process
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def cpu_seconds(self) -> float:
        total = 0.0
        try:
            times = self.root.cpu_times()
            # children_*: processes it has waited for (the parse processes that finished).
            total += times.user + times.system + times.children_user + times.children_system
            for child in self.root.children(recursive=True):
                try:
                    t = child.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def rss(self) -> int:
        total = 0
        try:
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_rss = max(self.peak_rss, self.rss())

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class LayoutResult:
    customers: int
    shards: int
    rows: list[tuple[str, str, float]] = field(default_factory=list)
    """(what, value, load average when measured)."""

    def add(self, what: str, value: str) -> None:
        self.rows.append((what, value, load()))
        print(f"  N={self.customers} shards={self.shards}: {what}: {value} (load {load():.1f})", flush=True)


def _count(stack: Any, prefix: str = "customer_") -> int:
    return stack.sql(f"SELECT count(*) FROM serialized_dag WHERE dag_id LIKE '{prefix}%'")[0][0]


def _import_errors(stack: Any) -> list[tuple[str, str]]:
    return stack.sql("SELECT filename, left(stacktrace, 300) FROM import_error")


def _kills(stack: Any) -> int:
    """How often the dag-processor killed the factory file's parse for running past its timeout."""
    return sum(
        1
        for line in stack.log("dag-processor").splitlines()
        if "b2b_integrations_dags.py" in line and "exceeding the timeout" in line
    )


def _wait(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return None


def _files_parsed_since(stack: Any, since: str) -> tuple[int, int]:
    """(files holding our DAGs, those whose every DAG was parsed after ``since``)."""
    rows = stack.sql(
        f"SELECT relative_fileloc, min(last_parsed_time) > '{since}'::timestamptz FROM dag "
        "WHERE dag_id LIKE 'customer_%' AND NOT is_stale GROUP BY relative_fileloc"
    )
    return len(rows), sum(1 for _, done in rows if done)


def run_layout(
    n: int,
    shards: int,
    include: Path,
    tmp: Path,
    window: float,
    first_timeout: float,
    one_file_timeout: int,
    api_changes: int = 1,
) -> LayoutResult:
    result = LayoutResult(n, shards)
    expected = len(FLOWS) * n
    data = tmp / f"data-{n}-{shards}"
    env = {
        "B2B_SHARDS": str(shards),
        # The one-file layout as it was before shards: no size problem, so its problems file builds every
        # DAG whenever its report is stale.
        **({"B2B_MAX_CUSTOMERS_PER_SHARD": str(n)} if shards == 1 else {}),
        "B2B_DATA_DIR": str(data),
        "B2B_LAST_VALID_DIR": str(data / "last_valid"),
        # Airflow's defaults, stated: what is measured is the dag-processor as shipped.
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "30" if shards > 1 else str(one_file_timeout),
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "50" if shards > 1 else str(one_file_timeout),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    started = time.monotonic()
    stack = start_airflow_stack(include, env, components=("dag-processor",))
    sampler = TreeSampler(psutil.Process(stack.procs["dag-processor"].pid))
    sampler.start()
    try:

        def settled() -> bool | str:
            if _count(stack) >= expected:
                return True
            if shards > 1 or _count(stack):
                return False
            errors = [f for f, _ in _import_errors(stack) if "b2b_integrations" in f]
            if errors:
                return f"import error: {errors[0]}"
            # Past dag_file_processor_timeout the parse is SIGKILLed: no import error is written, and the
            # file is tried again forever. Twice is enough to know it will never hold a DAG.
            if _kills(stack) >= 2:
                return "killed at dag_file_processor_timeout"
            return False

        first = _wait("every DAG serialized", settled, first_timeout)
        held = _count(stack)
        if first is True:
            result.add("first cycle (start -> every DAG serialized)", f"{time.monotonic() - started:.0f} s")
        else:
            errors = _import_errors(stack)
            result.add(
                "first cycle",
                f"did not finish: {held}/{expected} DAGs after {time.monotonic() - started:.0f} s; "
                f"parses killed at the timeout: {_kills(stack)}; "
                f"import errors: {[(f.rsplit('/', 1)[-1], s.splitlines()[-1] if s else '') for f, s in errors][:3]}",
            )
            if shards > 1:
                raise SystemExit(f"{shards} shards should hold every DAG: {held}/{expected}")
        # Steady state: a cycle has passed; the window below is CPU over whole cycles of re-parsing.
        cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
        since = stack.sql("SELECT now()")[0][0].isoformat()
        cycle = None
        if held:
            done = _wait(
                "a full cycle",
                lambda: (lambda files, fresh: files and files == fresh)(*_files_parsed_since(stack, since)),
                max(window * 4, 600),
            )
            cycle = time.monotonic() - t0 if done else None
            result.add(
                "full cycle at steady state (every file holding DAGs parsed again)",
                f"{cycle:.0f} s" if cycle is not None else "not within the wait",
            )
        rest = window - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
        minutes = (time.monotonic() - t0) / 60
        result.add(
            f"CPU per minute at steady state (over {minutes:.1f} min)",
            f"{(sampler.cpu_seconds() - cpu0) / minutes:.1f} CPU-s/min",
        )
        if held >= expected:
            result.add(
                "change to one customer file -> serialized_dag updated (the file's own re-parse)",
                change_latency(stack, include, n, n // 2, via_api=False),
            )
            # Several customers, one after another: where in the dag-processor's loop a request lands
            # decides its wait, so one sample says little about the bound.
            # One for the one-file layout: each change there waits for a whole parse of every customer.
            api_changes = api_changes if shards > 1 else 1
            for k in range(api_changes):
                result.add(
                    "the same, through the instances API's priority re-parse request"
                    + (f" ({k + 1} of {api_changes})" if api_changes > 1 else ""),
                    change_latency(stack, include, n, (n // 3 + k * 97) % n, via_api=True),
                )
        result.add("peak memory of the process tree (RSS sum)", f"{sampler.peak_rss / 2**20:.0f} MiB")
    finally:
        sampler.stop()
        stack.stop()
        shutil.rmtree(data, ignore_errors=True)
    return result


def change_latency(stack: Any, include: Path, n: int, position: int, via_api: bool) -> str:
    """Edit customer ``position``'s file; time until its DAG's ``serialized_dag.dag_hash`` changes.

    ``via_api``: after the edit, queue the customer's shard for parsing as the instances API does after it
    writes a file (``deployment.request_reparse``, run in a fresh process with the stack's settings, whose
    ~3 s of start-up is inside the figure); otherwise wait for the dag-processor's own re-parse, as after an
    edit committed to the folder directly (git-sync, a deploy)."""
    customers = make_customers(n)
    target = customers[position]
    dag = dag_id(target, CHANGED_FLOW)

    def current_hash() -> str | None:
        rows = stack.sql(
            f"SELECT dag_hash FROM serialized_dag WHERE dag_id = '{dag}' ORDER BY created_at DESC LIMIT 1"
        )
        return rows[0][0] if rows else None

    before = current_hash()
    config = customer_config(target)
    config["integrations"]["stock_sync"]["config"]["sku_count"] = target.sku_count + 1000
    changed = time.monotonic()
    write_yaml(include / "customers" / f"{target.id}.yaml", config)
    if via_api:
        code = (
            "from airflow.utils.session import create_session\n"
            "from b2b_integrations.instances.deployment import request_reparse\n"
            f"with create_session() as session:\n    request_reparse({target.id!r}, session)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], env=stack.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"request_reparse failed: {done.stderr[-2000:]}")
    after = _wait("the changed DAG", lambda: (h := current_hash()) != before and h, 900, every=0.5)
    if not after:
        return "not within 900 s"
    return f"{time.monotonic() - changed:.1f} s ({dag})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--layouts", default="16,1", help="B2B_SHARDS values measured in turn for each N")
    parser.add_argument("--window", type=float, default=120, help="steady-state CPU window, seconds")
    parser.add_argument("--first-timeout", type=float, default=1200, help="longest wait for the first cycle")
    parser.add_argument(
        "--one-file-timeout",
        type=int,
        default=30,
        help="dagbag_import_timeout and dag_file_processor_timeout of the one-file layout (Airflow's 30/50 s "
        "are kept for the shards); raise it to measure a one-file parse that would time out",
    )
    parser.add_argument(
        "--api-changes",
        type=int,
        default=1,
        help="customers changed one after another through the instances API's re-parse request "
        "(sharded layouts; the one-file layout takes one)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()}; commit {_commit()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-dagproc-") as tmp_name:
        tmp = Path(tmp_name)
        for n in sizes:
            include = write_ours(tmp / f"n{n}", make_customers(n))
            for shards in [int(k) for k in args.layouts.split(",")]:
                print(f"N={n}, B2B_SHARDS={shards}: starting", flush=True)
                # Each layout from the same files as generated (the change of the previous layout undone).
                write_ours(tmp / f"n{n}", make_customers(n))
                results.append(
                    run_layout(
                        n,
                        shards,
                        include,
                        tmp,
                        args.window,
                        args.first_timeout,
                        args.one_file_timeout,
                        args.api_changes,
                    )
                )
    print()
    for r in results:
        print(f"N = {r.customers} x {len(FLOWS)} flows, B2B_SHARDS = {r.shards}")
        for what, value, avg in r.rows:
            print(f"  {what:<72} {value}  (load {avg:.1f})")


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


if __name__ == "__main__":
    main()
