"""Documents with line items: our XML order import vs the floor (sftp download + ElementTree + COPY), same file.

Generates an XML file of N purchase orders (default 20,000) with L lines each (default 5), serves it from a
private OpenSSH sshd on loopback (tests/sshd.py), and measures, each in a fresh process:
- ours:  SftpFileImportOperator with a ``document`` block: stream download, lossless XML reading, every
         header and line validated (required, integer, minimum), header upserted and the order's lines
         replaced in one transaction with the ledger row, file moved to processed/;
- ours again: the same orders re-sent with one line fewer each (every order's lines deleted and
         re-inserted: the replace path);
- floor: download with the OpenSSH ``sftp`` client, ``ElementTree.iterparse`` the orders into header and
         line rows by hand, PostgreSQL COPY into two tables keyed as ours: no checks, no ledger, no
         re-import semantics; the least work that puts the same document into the same two tables.
Every result is read back from the database (orders, lines, distinct line keys, sum of quantities) and
checked against what was generated; a wrong run prints no figure and exits 1.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and /usr/sbin/sshd (scripts/test.sh installs it).
Run: .venv/bin/python benchmarks/documents_import.py [--orders N] [--lines L]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from sftp_import import run_json, sftp_client_command  # noqa: E402  (same measuring as the CSV benchmark)
from sshd import start_sshd  # noqa: E402  (test support: a real sshd on loopback)

PG = "postgresql://postgres@127.0.0.1:5432"

OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    from b2b_integrations.config.sql_target import with_target
    from b2b_integrations.operators.sftp_import import SftpFileImportOperator
    args = json.loads(sys.argv[1])
    op = SftpFileImportOperator(task_id="bench", customer_id="bench", integration="po", flow="files", **with_target(args))
    start = time.perf_counter()
    result = op.execute({})
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": result["rows_loaded"],
                      "quarantined": result["rows_quarantined"],
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

FLOOR = textwrap.dedent(
    """
    import io, json, os, resource, subprocess, sys, tempfile, time
    import xml.etree.ElementTree as ET
    import psycopg2
    dsn = sys.argv[1]
    start = time.perf_counter()
    local = os.path.join(tempfile.mkdtemp(), "floor.xml")
    subprocess.run(json.loads(os.environ["FLOOR_SFTP_COMMAND"]) + [local], check=True, capture_output=True)
    downloaded = time.perf_counter()
    headers, lines = io.StringIO(), io.StringIO()
    ns = "{urn:example:po}"
    for _, elem in ET.iterparse(local):
        if elem.tag != ns + "order":
            continue
        order_id = elem.get("id")
        headers.write(f"bench\\t{order_id}\\t{elem.findtext(ns + 'customer')}\\n")
        for n, line in enumerate(elem.iterfind(ns + "line"), 1):
            sku, qty = line.findtext(ns + "sku"), line.findtext(ns + "qty")
            lines.write(f"bench\\t{order_id}\\t{n}\\t{sku}\\t{qty}\\n")
        elem.clear()
    parsed = time.perf_counter()
    headers.seek(0)
    lines.seek(0)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.copy_expert("COPY floor_po (customer_id, order_id, customer) FROM STDIN", headers)
        cur.copy_expert("COPY floor_po_lines (customer_id, order_id, line_no, sku, qty) FROM STDIN", lines)
    done = time.perf_counter()
    print(json.dumps({"seconds": done - start, "download_s": downloaded - start, "parse_s": parsed - downloaded,
                      "copy_s": done - parsed, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def generate(path: Path, orders: int, lines: int) -> tuple[int, int, int]:
    """Write the file; return what a correct load holds: (orders, lines, sum of quantities)."""
    rng = random.Random(42)
    quantity_sum = 0
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<orders xmlns="urn:example:po">\n')
        for i in range(orders):
            f.write(f'  <order id="PO-{i:08d}">\n    <customer>Customer {i % 997}</customer>\n')
            for _ in range(lines):
                qty = rng.randint(1, 50)
                quantity_sum += qty
                f.write(
                    f"    <line><sku>SKU-{rng.randint(1, 5000):05d}</sku><qty>{qty}</qty>"
                    f'<price currency="EUR">{rng.randint(100, 99999) / 100:.2f}</price></line>\n'
                )
            f.write("  </order>\n")
        f.write("</orders>\n")
    return orders, orders * lines, quantity_sum


def contents(dsn: str, header: str, lines: str) -> tuple[int, int, int, int]:
    """(orders, lines, distinct line keys, sum of quantities) as the database holds them."""
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {header}")
        (count,) = cur.fetchone()
        cur.execute(
            f"SELECT count(*), count(DISTINCT (customer_id, order_id, line_no)), coalesce(sum(qty), 0) FROM {lines}"
        )
        return (int(count), *(int(v) for v in cur.fetchone()))  # type: ignore[return-value]


def check(label: str, found: tuple[int, ...], expected: tuple[int, int, int]) -> list[str]:
    orders, lines, quantity_sum = expected
    want = (orders, lines, lines, quantity_sum)
    return [] if found == want else [f"{label}: (orders, lines, keys, sum qty) {found}, generated {want}"]


def ours_arguments(folder: Path) -> dict[str, object]:
    return {
        "sftp_conn_id": "bench_sftp",
        "folder": str(folder),
        "pattern": "*.xml",
        "file_format": {"format": "xml", "record_path": "order", "rename": {"id": "order_id"}},
        "row_schema": {
            "fields": [{"name": "order_id", "required": True}, {"name": "customer", "required": True}]
        },
        "db_conn_id": "bench_db",
        "table": "po",
        "key": ["customer_id", "order_id"],
        "constants": {"customer_id": "bench"},
        "columns": {"customer_id": "VARCHAR(60)", "order_id": "VARCHAR(40)", "customer": "VARCHAR(200)"},
        "create_table": True,
        "settle_seconds": 0,
        "chunk_size": 2000,
        "document": {
            "lines": [
                {
                    "path": "line",
                    "table": "po_lines",
                    "min_items": 1,
                    "fields": [
                        {"name": "sku", "required": True},
                        {"name": "qty", "type": "integer", "required": True, "minimum": 1},
                        {"name": "unit_price", "path": "price.#text", "type": "number"},
                        {"name": "currency", "path": "price.@currency"},
                    ],
                    "columns": {
                        "sku": "VARCHAR(40)",
                        "qty": "INTEGER",
                        "unit_price": "NUMERIC(12, 2)",
                        "currency": "CHAR(3)",
                    },
                }
            ]
        },
    }


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=5)
    args = parser.parse_args()

    db = f"b2b_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    server = start_sshd()
    try:
        with tempfile.TemporaryDirectory(prefix="b2b-doc-bench-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
            env.update(
                AIRFLOW_HOME=str(Path(tmp) / "airflow_home"),
                AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
                B2B_DATA_DIR=str(Path(tmp) / "data"),
                AIRFLOW_CONN_BENCH_SFTP=server.airflow_conn_json(),
                AIRFLOW_CONN_BENCH_DB=f"{PG}/{db}",
            )
            ours_folder, floor_folder = server.root / "ours", server.root / "floor"
            ours_folder.mkdir(parents=True)
            floor_folder.mkdir(parents=True)
            print(f"generating {args.orders:,} orders x {args.lines} lines ...", flush=True)
            expected = generate(ours_folder / "po.xml", args.orders, args.lines)
            size_mb = (ours_folder / "po.xml").stat().st_size / 1e6
            (floor_folder / "po.xml").write_bytes((ours_folder / "po.xml").read_bytes())
            with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE floor_po (customer_id VARCHAR(60), order_id VARCHAR(40), customer VARCHAR(200),"
                    " PRIMARY KEY (customer_id, order_id))"
                )
                cur.execute(
                    "CREATE TABLE floor_po_lines (customer_id VARCHAR(60), order_id VARCHAR(40), line_no INTEGER,"
                    " sku VARCHAR(40), qty INTEGER, PRIMARY KEY (customer_id, order_id, line_no))"
                )

            print("ours ...", flush=True)
            ours = run_json(OURS, [json.dumps(ours_arguments(ours_folder))], env)
            problems = check("ours", contents(f"{PG}/{db}", "po", "po_lines"), expected)
            print("ours, every order again with one line fewer ...", flush=True)
            fewer = generate(ours_folder / "po-again.xml", args.orders, args.lines - 1)
            again = run_json(OURS, [json.dumps(ours_arguments(ours_folder))], env)
            problems += check("ours again", contents(f"{PG}/{db}", "po", "po_lines"), fewer)
            print("floor ...", flush=True)
            env["FLOOR_SFTP_COMMAND"] = json.dumps(sftp_client_command(server, str(floor_folder / "po.xml")))
            floor = run_json(FLOOR, [f"{PG}/{db}"], env)
            problems += check("floor", contents(f"{PG}/{db}", "floor_po", "floor_po_lines"), expected)
            if problems:
                raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(problems))

        lines = args.orders * args.lines
        print(
            f"\nfile: {args.orders:,} orders, {lines:,} lines, {size_mb:.0f} MB XML; {os.cpu_count()} cores"
        )
        print(f"  {'':<28} {'seconds':>8} {'lines/s':>10} {'peak MiB':>9}")
        for label, run, count in (
            ("ours (first load)", ours, lines),
            ("ours (re-import, replace)", again, args.orders * (args.lines - 1)),
        ):
            print(
                f"  {label:<28} {run['seconds']:>8.1f} {count / run['seconds']:>10,.0f} {run['peak_mib']:>9.0f}"
            )
        print(
            f"  {'floor (sftp + ET + COPY)':<28} {floor['seconds']:>8.1f} {lines / floor['seconds']:>10,.0f} "
            f"{floor['peak_mib']:>9.0f}   (download {floor['download_s']:.1f} s, parse {floor['parse_s']:.1f} s,"
            f" COPY {floor['copy_s']:.1f} s)"
        )
        print(f"  ours / floor throughput (first load): {floor['seconds'] / ours['seconds']:.0%}")
        print(f"  load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    finally:
        server.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
