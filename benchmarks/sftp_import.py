"""SFTP file import throughput: our import vs the floor (sftp download + PostgreSQL COPY), same file.

Generates a CSV of N rows (default 1,000,000, ~100 MB), serves it from a private OpenSSH sshd on
loopback (tests/sshd.py), and measures, each in a fresh process:
- ours:  SftpFileImportOperator: stream download, parse, validate every record, upsert into PostgreSQL with
         the ledger row in the same transaction, move the file to processed/ (its libraries, pyarrow,
         psycopg, asyncssh and the providers' hooks, imported before the clock as the floor's are; the
         import time is printed apart: a task process pays it once);
- same-key floor: download the same file with the OpenSSH ``sftp`` client, then PostgreSQL COPY into a
         table with ours's primary key (``customer_id, order_id``; ``customer_id`` filled by its column
         default) and no checks: the least work that leaves a table our import could re-run into;
- keyless floor: the same into a table without a key (cheaper, but a re-run would duplicate rows);
- hook floor: the keyless floor downloading with the sftp provider's (paramiko) hook instead.
Every result is checked against what was generated (row count, distinct keys, sums of two columns, read
back from the database, not taken from the operator's return value); a wrong run prints no figure and
exits 1. Prints wall time, rows/s and peak RSS of each, and ours as a share of both floors' throughput
(the target, >= 60%, is against the same-key floor).

``--rounds R`` measures ours and the floors R times in alternation (ours, floors, ours, floors ...), the
table emptied and the file put back between rounds, and prints each round's shares and their median: on a
shared host whose load drifts, a single "ours, then the floors" run gives the drift to one side.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and /usr/sbin/sshd (scripts/test.sh installs it).
Run: .venv/bin/python benchmarks/sftp_import.py [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sshd import start_sshd  # noqa: E402  (test support: a real sshd on loopback)

PG = "postgresql://postgres@127.0.0.1:5432"
HEADER = "order_id,order_date,sku,quantity,unit_price,status,note"
SCHEMA = {
    "fields": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_date", "type": "date", "required": True},
        {"name": "sku", "type": "string", "required": True},
        {"name": "quantity", "type": "integer", "required": True},
        {"name": "unit_price", "type": "number"},
        {"name": "status", "type": "string", "allowed": ["new", "shipped", "cancelled"]},
        {"name": "note", "type": "string", "max_length": 200},
    ]
}
COLUMNS = {
    "order_id": "VARCHAR(40)",
    "order_date": "DATE",
    "sku": "VARCHAR(40)",
    "quantity": "INTEGER",
    "unit_price": "NUMERIC(12, 2)",
    "status": "VARCHAR(20)",
    "note": "VARCHAR(200)",
    "customer_id": "VARCHAR(60)",
}

# Each side's libraries are imported before its clock starts (the floor imports psycopg2 and the sftp
# provider's hook, which imports Airflow, before its clock too); ours's import time is printed apart.
OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    from b2b_integrations.config.sql_target import with_target
    from b2b_integrations.operators.sftp_import import SftpFileImportOperator
    imports = time.perf_counter()
    import asyncssh, psycopg, pyarrow, pyarrow.compute, pyarrow.csv
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.providers.sftp.hooks.sftp import SFTPHook, SFTPHookAsync
    imports = time.perf_counter() - imports
    args = json.loads(sys.argv[1])
    op = SftpFileImportOperator(task_id="bench", customer_id="bench", integration="orders", flow="files", **with_target(args))
    start = time.perf_counter()
    result = op.execute({})
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": result["rows_loaded"],
                      "quarantined": result["rows_quarantined"], "imports_s": imports,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

FLOOR = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time, os
    import psycopg2
    from airflow.providers.sftp.hooks.sftp import SFTPHook
    import subprocess
    conn_id, remote, dsn, table, how = sys.argv[1:6]
    start = time.perf_counter()
    local = os.path.join(tempfile.mkdtemp(), "floor.csv")
    if how == "hook":
        SFTPHook(ssh_conn_id=conn_id).retrieve_file(remote, local)
    else:  # the OpenSSH sftp client, the fastest way to fetch the file
        subprocess.run(json.loads(os.environ["FLOOR_SFTP_COMMAND"]) + [local], check=True, capture_output=True)
    downloaded = time.perf_counter()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur, open(local, encoding="utf-8") as f:
        columns = f.readline().strip()  # the file's header names the columns; customer_id is defaulted
        cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", f)
        rows = cur.rowcount
    done = time.perf_counter()
    print(json.dumps({"seconds": done - start, "download_s": downloaded - start, "copy_s": done - downloaded,
                      "rows": rows, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def generate_csv(path: Path, rows: int) -> tuple[int, int, int]:
    """Write the file; return what a correct load holds: (rows, sum of quantity, sum of unit_price cents)."""
    rng = random.Random(42)
    statuses = ("new", "shipped", "cancelled")
    quantity_sum = cents_sum = 0
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for i in range(rows):
            quantity, cents = rng.randint(1, 50), rng.randint(100, 99999)
            quantity_sum += quantity
            cents_sum += cents
            f.write(
                f"O-{i:08d},2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},SKU-{rng.randint(1, 5000):05d},"
                f"{quantity},{cents / 100:.2f},{statuses[i % 3]},"
                f"note for order {i} with some padding text to make rows realistic\n"
            )
    return rows, quantity_sum, cents_sum


def table_contents(dsn: str, table: str) -> tuple[int, int, int, int]:
    """(rows, distinct keys, sum of quantity, sum of unit_price cents) as the database holds them."""
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*), count(DISTINCT (customer_id, order_id)), coalesce(sum(quantity), 0),"
            f" coalesce(sum(unit_price * 100), 0)::bigint FROM {table}"
        )
        return tuple(int(v) for v in cur.fetchone())  # type: ignore[return-value]


def sftp_client_command(server: object, remote: str) -> list[str]:
    """The OpenSSH sftp client fetching ``remote`` (the local target is appended)."""
    return [
        "sftp",
        "-q",
        "-i",
        str(server.key_file),
        "-P",
        str(server.port),  # type: ignore[attr-defined]
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        f"{server.user}@{server.host}:{remote}",  # type: ignore[attr-defined]
    ]


def check_load(label: str, found: tuple[int, int, int, int], expected: tuple[int, int, int]) -> list[str]:
    """What is wrong with a load (empty when every generated row is in the table once, values intact)."""
    rows, quantity_sum, cents_sum = expected
    want = (rows, rows, quantity_sum, cents_sum)
    if found == want:
        return []
    return [f"{label}: table holds (rows, keys, sum quantity, sum cents) {found}, generated {want}"]


def run_json(code: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_round(
    number: int,
    rounds: int,
    rows: int,
    ours: dict[str, float],
    floors: dict[str, dict[str, float]],
    load: float,
) -> dict[str, float]:
    """Print one checked round; return ours's share of each floor's throughput."""
    print(f"round {number} of {rounds} (load average, 1 min, at its end: {load:.1f})")
    print(f"  {'':<16} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}")
    print(
        f"  {'ours':<16} {ours['seconds']:>8.1f} {rows / ours['seconds']:>10,.0f} "
        f"{ours['peak_mib']:>9.0f}   (rows loaded {ours['rows']:,}, quarantined {ours['quarantined']:,}; "
        f"+ {ours['imports_s']:.1f} s importing its libraries before the clock, as the floors do)"
    )
    for label, floor in floors.items():
        print(
            f"  {label:<16} {floor['seconds']:>8.1f} {rows / floor['seconds']:>10,.0f} "
            f"{floor['peak_mib']:>9.0f}   (download {floor['download_s']:.1f} s + COPY {floor['copy_s']:.1f} s)"
        )
    share = {label: f["seconds"] / ours["seconds"] for label, f in floors.items()}
    with_imports = floors["floor (same key)"]["seconds"] / (ours["seconds"] + ours["imports_s"])
    print(
        f"  ours / same-key floor throughput: {share['floor (same key)']:.0%} (target >= 60%); "
        f"ours / keyless floor {share['floor (keyless)']:.0%}; "
        f"ours / hook floor {share['floor (hook)']:.0%}; "
        f"ours with its imports / same-key floor {with_imports:.0%}",
        flush=True,
    )
    return share


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    db = f"b2b_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    server = start_sshd()
    try:
        with tempfile.TemporaryDirectory(prefix="b2b-sftp-bench-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
            env.update(
                AIRFLOW_HOME=str(Path(tmp) / "airflow_home"),
                AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
                B2B_DATA_DIR=str(Path(tmp) / "data"),
                AIRFLOW_CONN_BENCH_SFTP=server.airflow_conn_json(),
                AIRFLOW_CONN_BENCH_DB=f"{PG}/{db}",
            )
            ours_folder = server.root / "ours"
            floor_folder = server.root / "floor"
            ours_folder.mkdir(parents=True)
            floor_folder.mkdir(parents=True)
            source = ours_folder / "orders.csv"
            print(f"generating {args.rows:,} rows ...", flush=True)
            expected = generate_csv(source, args.rows)
            size_mb = source.stat().st_size / 1e6
            (floor_folder / "orders.csv").write_bytes(source.read_bytes())

            with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                columns = ", ".join(f"{c} {t}" for c, t in COLUMNS.items() if c != "customer_id")
                columns += ", customer_id VARCHAR(60) NOT NULL DEFAULT 'bench'"
                cur.execute(f"CREATE TABLE floor_orders ({columns})")
                # Keyed exactly like ours (customer_id, order_id): the key's index is work ours must do.
                cur.execute(
                    f"CREATE TABLE floor_orders_keyed ({columns}, PRIMARY KEY (customer_id, order_id))"
                )

            ours_args = {
                "sftp_conn_id": "bench_sftp",
                "folder": str(ours_folder),
                "pattern": "*.csv",
                "file_format": {"format": "csv"},
                "row_schema": SCHEMA,
                "db_conn_id": "bench_db",
                "table": "orders",
                "key": ["customer_id", "order_id"],
                "constants": {"customer_id": "bench"},
                "columns": COLUMNS,
                "create_table": True,
                "settle_seconds": 0,
                "chunk_size": 5000,
            }
            remote = str(floor_folder / "orders.csv")
            env["FLOOR_SFTP_COMMAND"] = json.dumps(sftp_client_command(server, remote))
            print(f"file: {args.rows:,} rows, {size_mb:.0f} MB CSV; machine: {os.cpu_count()} cores")
            rounds: list[tuple[dict[str, float], dict[str, dict[str, float]], float]] = []
            shares: list[dict[str, float]] = []
            for number in range(1, args.rounds + 1):
                if number > 1:  # as before the first round: the file back in the folder, nothing loaded
                    (ours_folder / "processed" / "orders.csv").rename(source)
                    with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                        cur.execute("TRUNCATE orders")
                        cur.execute("DELETE FROM b2b_file_ledger")
                print(f"round {number}: ours ...", flush=True)
                ours = run_json(OURS, [json.dumps(ours_args)], env)
                problems = check_load("ours", table_contents(f"{PG}/{db}", "orders"), expected)
                if ours["quarantined"]:
                    problems.append(f"ours: {ours['quarantined']:,} rows quarantined, expected none")
                if not (ours_folder / "processed" / "orders.csv").exists():
                    problems.append("ours: the file was not moved to processed/")
                floors = {}
                for label, how, table in (
                    ("floor (same key)", "sftp", "floor_orders_keyed"),
                    ("floor (keyless)", "sftp", "floor_orders"),
                    ("floor (hook)", "hook", "floor_orders"),
                ):
                    print(f"round {number}: {label} ...", flush=True)
                    with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                        cur.execute(f"TRUNCATE {table}")
                    floors[label] = run_json(FLOOR, ["bench_sftp", remote, f"{PG}/{db}", table, how], env)
                    problems += check_load(label, table_contents(f"{PG}/{db}", table), expected)
                if problems:
                    raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(problems))
                rounds.append((ours, floors, os.getloadavg()[0]))
                # Printed as soon as it is checked: an interrupted long run keeps its finished rounds.
                shares.append(print_round(number, args.rounds, args.rows, *rounds[-1]))

        if len(rounds) > 1:
            median = {label: statistics.median(s[label] for s in shares) for label in shares[0]}
            print(
                f"median of {len(rounds)} rounds: ours / same-key floor {median['floor (same key)']:.0%} "
                f"(target >= 60%); ours / keyless floor {median['floor (keyless)']:.0%}; "
                f"ours / hook floor {median['floor (hook)']:.0%}"
            )
        print(f"  load average (1, 5, 15 min) at the end: {os.getloadavg()}")
        peak = max(ours["peak_mib"] for ours, _, _ in rounds)
        print(f"  ours peak RSS {peak:.0f} MiB (target < 300 MiB)")
    finally:
        server.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
