"""Object-storage file import throughput: our import vs a floor measured in the same run, same files.

Starts moto's S3 server (tests/s3_server.py) on loopback, uploads F CSV files of N rows each under one
customer's prefix, and measures, alternating R rounds (ours, floor, ours, floor, ...; files put back and
tables emptied in between, so load drift on a shared host hits both sides):
- ours:  ObjectStorageImportOperator: list twice (stability), stream each object down with its sha256,
         parse, validate every record, upsert into PostgreSQL with its ledger row in one transaction, move
         the object to processed/ (a copy and a delete on S3);
- floor: plain boto3 ``list_objects_v2`` + ``get_object`` of every file, each body streamed into PostgreSQL
         ``COPY`` into a table with ours's primary key (``customer_id`` from a column default), no checks,
         no move: the least work that leaves the same rows.
Both sides' tables are read back (rows, distinct keys, sum of a column) and compared with what was
generated before any figure is printed; a wrong load exits 1. Libraries are imported before the clock.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth).
Run: .venv/bin/python benchmarks/s3_import.py [--files F] [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugins"))

from s3_server import start_s3  # noqa: E402  (test support: moto's S3 server on loopback)

PG = "postgresql://postgres@127.0.0.1:5432"
HEADER = "order_id,order_date,quantity,status"
SCHEMA = {
    "fields": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_date", "type": "date", "required": True},
        {"name": "quantity", "type": "integer", "required": True},
        {"name": "status", "type": "string", "allowed": ["new", "shipped", "cancelled"]},
    ]
}
COLUMNS = {
    "order_id": "VARCHAR(40)",
    "order_date": "DATE",
    "quantity": "INTEGER",
    "status": "VARCHAR(20)",
    "customer_id": "VARCHAR(60)",
}
PREFIX = "customers/bench/inbox"


def files(count: int, rows: int) -> tuple[dict[str, bytes], tuple[int, int, int]]:
    """The files, and (rows, distinct keys, sum of quantity) they hold."""
    out, total = {}, 0
    for f in range(count):
        lines = [HEADER]
        for i in range(rows):
            quantity = (f * rows + i) % 97
            total += quantity
            lines.append(f"O-{f}-{i},2026-0{1 + i % 9}-{1 + i % 28:02d},{quantity},new")
        out[f"orders-{f:03d}.csv"] = ("\n".join(lines) + "\n").encode()
    return out, (count * rows, count * rows, total)


def table_contents(cur: object, table: str) -> tuple[int, int, int]:
    cur.execute(f"SELECT count(*), count(DISTINCT order_id), coalesce(sum(quantity), 0) FROM {table}")  # type: ignore[attr-defined]
    return tuple(int(v) for v in cur.fetchone())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import psycopg2

    from b2b_integrations.operators.object_import import ObjectStorageImportOperator

    db = f"b2b_bench_s3_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    s3 = start_s3()
    try:
        bucket = s3.new_bucket("bench")
        client = s3.client()
        os.environ["AIRFLOW_CONN_BENCH_S3"] = s3.airflow_conn_json(
            b2b_root=f"s3://{bucket}/customers/{{customer}}"
        )
        os.environ["AIRFLOW_CONN_BENCH_DB"] = f"{PG}/{db}"
        content, expected = files(args.files, args.rows)
        size_mb = sum(len(b) for b in content.values()) / 1e6
        conn = psycopg2.connect(f"{PG}/{db}")
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE floor_orders (order_id VARCHAR(40), order_date DATE, quantity INTEGER, "
            "status VARCHAR(20), customer_id VARCHAR(60) DEFAULT 'bench', PRIMARY KEY (customer_id, order_id))"
        )

        def upload() -> None:
            for key in s3.keys(bucket):
                client.delete_object(Bucket=bucket, Key=key)
            for name, body in content.items():
                client.put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=body)

        def ours() -> float:
            op = ObjectStorageImportOperator(
                task_id="import_files", customer_id="bench", integration="orders", flow="files",
                storage_conn_id="bench_s3", folder="inbox", pattern="*.csv", file_format={"format": "csv"},
                row_schema=SCHEMA, db_conn_id="bench_db", constants={"customer_id": "bench"}, settle_seconds=0,
                target={"table": "ours_orders", "key": ["customer_id", "order_id"], "columns": COLUMNS,
                        "create_table": True, "chunk_size": 5000},
            )  # fmt: skip
            start = time.perf_counter()
            result = op.execute({})  # type: ignore[arg-type]
            elapsed = time.perf_counter() - start
            assert result["files_loaded"] == args.files, result
            return elapsed

        def floor() -> float:
            start = time.perf_counter()
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX + "/")
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
            for key in keys:
                body = client.get_object(Bucket=bucket, Key=key)["Body"]
                cur.copy_expert(
                    "COPY floor_orders (order_id, order_date, quantity, status) FROM STDIN WITH (FORMAT csv, HEADER)",
                    body,
                )
            return time.perf_counter() - start

        results: list[tuple[float, float, float]] = []
        for _ in range(args.rounds):
            upload()
            cur.execute("DROP TABLE IF EXISTS ours_orders; DROP TABLE IF EXISTS b2b_file_ledger")
            ours_s = ours()
            moved = s3.keys(bucket, f"{PREFIX}/processed/")
            assert len(moved) == args.files, moved  # ours moved every file
            upload()
            cur.execute("TRUNCATE floor_orders")
            floor_s = floor()
            for label, table in (("ours", "ours_orders"), ("floor", "floor_orders")):
                found = table_contents(cur, table)
                if found != expected:
                    print(f"{label}: table holds {found}, expected {expected}: no figures", file=sys.stderr)
                    sys.exit(1)
            results.append((ours_s, floor_s, os.getloadavg()[0]))

        rows = expected[0]
        print(
            f"S3 import (moto on loopback): {args.files} files x {args.rows:,} rows = {rows:,} rows, {size_mb:.1f} MB"
        )
        for n, (ours_s, floor_s, load) in enumerate(results, 1):
            print(
                f"  round {n}: ours {ours_s:6.2f} s ({rows / ours_s:>9,.0f} rows/s)   floor {floor_s:6.2f} s "
                f"({rows / floor_s:>9,.0f} rows/s)   ours = {floor_s / ours_s:4.0%} of the floor   load {load:.1f}"
            )
        share = statistics.median(f / o for o, f, _ in results)
        print(f"  median share of the floor's throughput: {share:.0%}")
        print(f"  load average (1, 5, 15 min) at the end: {os.getloadavg()}")
        conn.close()
    finally:
        s3.stop()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
