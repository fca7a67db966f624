"""SFTP file import throughput: our import vs the floor (sftp download + PostgreSQL COPY), same file.

Generates a CSV of N rows (default 1,000,000, ~100 MB), serves it from a private OpenSSH sshd on
loopback (tests/sshd.py), and measures, each in a fresh process:
- ours:  SftpFileImportOperator: stream download, parse, validate every record, upsert into PostgreSQL with
         the ledger row in the same transaction, move the file to processed/;
- floor: download the same file with the OpenSSH ``sftp`` client, then PostgreSQL COPY into a plain
         table (no key, no checks). Also shown: the same COPY into a table with a primary key (what
         the key's index costs), and the download with the sftp provider's (paramiko) hook instead.
Prints wall time, rows/s and peak RSS of each, and ours as a share of the floor's throughput.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and /usr/sbin/sshd (scripts/test.sh installs it).
Run: .venv/bin/python benchmarks/parse_dags.py  ->  .venv/bin/python benchmarks/sftp_import.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    from b2b_integrations.operators.sftp_import import SftpFileImportOperator
    args = json.loads(sys.argv[1])
    op = SftpFileImportOperator(task_id="bench", customer_id="bench", integration="orders", flow="files", **args)
    start = time.perf_counter()
    result = op.execute({})
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": result["rows_loaded"],
                      "quarantined": result["rows_quarantined"],
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
        cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)", f)
        cur.execute(f"SELECT count(*) FROM {table}")
        rows = cur.fetchone()[0]
    done = time.perf_counter()
    print(json.dumps({"seconds": done - start, "download_s": downloaded - start, "copy_s": done - downloaded,
                      "rows": rows, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def generate_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    statuses = ("new", "shipped", "cancelled")
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for i in range(rows):
            f.write(
                f"O-{i:08d},2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},SKU-{rng.randint(1, 5000):05d},"
                f"{rng.randint(1, 50)},{rng.randint(100, 99999) / 100:.2f},{statuses[i % 3]},"
                f"note for order {i} with some padding text to make rows realistic\n"
            )


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


def run_json(code: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
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
            generate_csv(source, args.rows)
            size_mb = source.stat().st_size / 1e6
            (floor_folder / "orders.csv").write_bytes(source.read_bytes())

            with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                columns = ", ".join(f"{c} {t}" for c, t in COLUMNS.items() if c != "customer_id")
                cur.execute(f"CREATE TABLE floor_orders ({columns})")
                # The same load into a table keyed like ours: what the key's index costs COPY itself.
                cur.execute(f"CREATE TABLE floor_orders_keyed ({columns}, PRIMARY KEY (order_id))")

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
            print("ours ...", flush=True)
            ours = run_json(OURS, [json.dumps(ours_args)], env)
            remote = str(floor_folder / "orders.csv")
            env["FLOOR_SFTP_COMMAND"] = json.dumps(sftp_client_command(server, remote))
            floors = {}
            for label, how, table in (
                ("floor", "sftp", "floor_orders"),
                ("floor (keyed)", "sftp", "floor_orders_keyed"),
                ("floor (hook)", "hook", "floor_orders"),
            ):
                print(f"{label} ...", flush=True)
                with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                    cur.execute(f"TRUNCATE {table}")
                floors[label] = run_json(FLOOR, ["bench_sftp", remote, f"{PG}/{db}", table, how], env)

        ours_rate = ours["rows"] / ours["seconds"]
        print(f"\nfile: {args.rows:,} rows, {size_mb:.0f} MB CSV; machine: {os.cpu_count()} cores")
        print(f"  {'':<13} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}")
        print(
            f"  {'ours':<13} {ours['seconds']:>8.1f} {ours_rate:>10,.0f} {ours['peak_mib']:>9.0f}"
            f"   (rows loaded {ours['rows']:,}, quarantined {ours['quarantined']:,})"
        )
        for label, floor in floors.items():
            print(
                f"  {label:<13} {floor['seconds']:>8.1f} {floor['rows'] / floor['seconds']:>10,.0f} "
                f"{floor['peak_mib']:>9.0f}   (download {floor['download_s']:.1f} s + COPY {floor['copy_s']:.1f} s)"
            )
        share = {label: ours_rate / (f["rows"] / f["seconds"]) for label, f in floors.items()}
        print(
            f"  ours / floor throughput: {share['floor']:.0%} (target >= 50%); against the keyed floor "
            f"{share['floor (keyed)']:.0%}, the hook floor {share['floor (hook)']:.0%}"
        )
        print(f"  ours peak RSS {ours['peak_mib']:.0f} MiB (target < 300 MiB)")
    finally:
        server.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
