"""Report rendering speed and memory: our writers vs the floor (the same file written by hand), same data.

Generates its data itself (seeded, nothing committed) and measures each case in a fresh child process
(wall time of the rendering only; peak RSS of the whole child, imports and input data included):

(a) PDF, --pdf-rows (default 100,000) invoice rows, 6 columns:
    - ours:  ``render_report`` (summary + bar chart on page 1, table on every page, "Page i of n"),
             the rows given in 50,000-row chunks of a DataFrame;
    - floor: a hand-written ReportLab script drawing the same page content the fastest way ReportLab
             allows: heading, summary figures and bar chart (vectorised aggregates), the table as one
             text object per page (shaded header and zebra rows, numbers right-aligned), "Page i of n";
             same DejaVu Sans TTF. Both PDFs are checked: page count equal to the footer's n, and the
             invoices on the first, a middle and the last page adding up to every row, first to last.
(b) CSV, --csv-rows (default 1,000,000) rows:
    - ours (frame):    ``render_report`` over 50,000-row chunks of an in-memory DataFrame;
    - floor (frame):   ``DataFrame.to_csv`` of the same frame (same date and float formats: the script
                       checks both files are byte-identical);
    - ours (postgres): the same rows streamed from PostgreSQL (server-side cursor, 50,000-row chunks)
                       into our writer: the memory case, no frame of the whole data anywhere;
    - floor (postgres): ``pandas.read_sql`` of the whole table, then ``to_csv``.

Targets: PDF within 1.5x of its floor; CSV (frame) within 1.3x; ours (postgres) peak RSS under 300 MB.
Every output is checked before any figure is printed (CSV: ours byte-identical to the floor's file, from
the frame and from PostgreSQL, and one line per row); a wrong run prints no figure and exits 1.
Needs PostgreSQL on 127.0.0.1:5432 (trust auth) for the postgres cases (skip them with --no-postgres).
Run: .venv/bin/python benchmarks/report_export.py [--pdf-rows N] [--csv-rows N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

PG = "postgresql://postgres@127.0.0.1:5432"

# Shared by every child: the same rows for ours and the floor.
DATA = textwrap.dedent(
    """
    import datetime as dt, json, resource, sys, time
    import numpy as np, pandas as pd

    NAMES = np.array(["Zoë Müller", "Łukasz Gößling", "Øystein Ağaoğlu", "Amélie Durand", "Bob Smith",
                      "Søren Kierkegaard", "Çağla Yılmaz", "José Núñez"], dtype=object)

    def frame(rows):
        rng = np.random.default_rng(42)
        index = np.arange(rows)
        return pd.DataFrame({
            "invoice": pd.Series(index).map("INV-{:08d}".format),
            "customer": NAMES[rng.integers(0, len(NAMES), rows)],
            "paid_on": pd.Timestamp("2026-11-01") + pd.to_timedelta(rng.integers(0, 30, rows), unit="D"),
            "amount": np.round(rng.uniform(5, 5000, rows), 2),
            "items": rng.integers(1, 40, rows),
            "region": np.array(["north", "south", "east", "west"], dtype=object)[index % 4],
        })

    def report(seconds, path, rows, **extra):
        print(json.dumps({"seconds": seconds, "bytes": __import__("os").path.getsize(path), "rows": rows,
                          "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
    """
)

PDF_OURS = DATA + textwrap.dedent(
    """
    from b2b_integrations.reports.config import report_spec_from_config
    from b2b_integrations.reports.render import render_report
    from b2b_integrations.reports.spec import ReportMeta
    rows, path = int(sys.argv[1]), sys.argv[2]
    data = frame(rows)
    spec = report_spec_from_config("pdf", {
        "title": "Monthly invoices",
        "columns": ["invoice", "customer", {"name": "paid_on", "type": "date"}, {"name": "amount", "decimals": 2},
                    "items", "region"],
        "summary": [{"label": "Invoices", "op": "count"},
                    {"label": "Total", "op": "sum", "column": "amount", "decimals": 2}],
        "chart": {"type": "bar", "category": "region", "value": "amount"},
    })
    meta = ReportMeta("Gößling & Søn", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    start = time.perf_counter()
    chunks = (data.iloc[i:i + 50_000] for i in range(0, rows, 50_000))
    result = render_report(spec, chunks, path, meta)
    report(time.perf_counter() - start, path, result.rows)
    """
)

PDF_FLOOR = DATA + textwrap.dedent(
    """
    # The same page content as ours, drawn the fastest way ReportLab allows: heading, the two summary
    # figures and the bar chart of amount by region (one vectorised pass each), then the table with one
    # text object per page (header row, shaded header and zebra rows, numbers right-aligned), and
    # "Page i of n" on every page (fixed row heights give n before drawing). Same TTF, same page size.
    import math
    from reportlab.graphics import renderPDF
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen.canvas import Canvas
    from b2b_integrations.reports.fonts import FONT_DIR
    rows, path = int(sys.argv[1]), sys.argv[2]
    data = frame(rows)
    start = time.perf_counter()
    pdfmetrics.registerFont(TTFont("F", str(FONT_DIR / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont("FB", str(FONT_DIR / "DejaVuSans-Bold.ttf")))
    width = pdfmetrics.getFont("F").stringWidth
    cells = list(zip(data["invoice"], data["customer"], data["paid_on"].dt.strftime("%Y-%m-%d"),
                     data["amount"].map("{:.2f}".format), data["items"].astype(str), data["region"]))
    by_region = data.groupby("region")["amount"].sum()
    page_w, page_h = A4
    margin, row_h, size = 36.0, 12.0, 8.0
    top, bottom = page_h - margin, margin + 24
    xs = [36, 110, 230, 300, 380, 430]
    right = [False, False, False, True, True, False]
    col_w = [74, 120, 70, 80, 50, 93]
    canvas = Canvas(path, pagesize=A4, invariant=1)
    canvas.setFont("FB", 17)
    canvas.drawString(margin, top - 30, "Monthly invoices")
    canvas.setFont("F", 10)
    canvas.drawString(margin, top - 50, "Period: November 2026")
    canvas.setFont("FB", 10)
    canvas.drawString(margin, top - 76, "Summary")
    canvas.setFont("F", 9)
    canvas.drawString(margin, top - 92, "Invoices")
    canvas.drawRightString(page_w - 60, top - 92, f"{len(data):,}")
    canvas.drawString(margin, top - 105, "Total")
    canvas.drawRightString(page_w - 60, top - 105, f"{data['amount'].sum():,.2f}")
    drawing = Drawing(480, 170)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 20, 420, 120
    chart.data = [list(by_region.values)]
    chart.categoryAxis.categoryNames = list(by_region.index)
    drawing.add(chart)
    y = top - 115
    renderPDF.draw(drawing, canvas, margin, y - 170)
    y -= 184
    first = int((y - bottom) // row_h) - 1
    per_page = int((top - bottom) // row_h) - 1
    pages = 1 + math.ceil(max(0, rows - first) / per_page)
    page, capacity, y_top, done = 1, first, y, 0
    while done < rows:
        batch = cells[done:done + capacity]
        canvas.setFillColor(colors.HexColor("#dfe6ee"))
        canvas.rect(36, y_top - row_h, 523, row_h, stroke=0, fill=1)
        canvas.setFillColor(colors.HexColor("#f3f5f8"))
        for index in range(1, len(batch), 2):
            canvas.rect(36, y_top - (index + 2) * row_h, 523, row_h, stroke=0, fill=1)
        canvas.setFillColor(colors.black)
        text = canvas.beginText()
        text.setFont("FB", size)
        for x, label in zip(xs, ["invoice", "customer", "paid_on", "amount", "items", "region"]):
            text.setTextOrigin(x + 3, y_top - row_h + 4)
            text.textOut(label)
        text.setFont("F", size)
        line_y = y_top - row_h + 4
        for row in batch:
            line_y -= row_h
            for x, w, r, cell in zip(xs, col_w, right, row):
                text.setTextOrigin(x + w - 3 - width(cell, size) if r else x + 3, line_y)
                text.textOut(cell)
        canvas.drawText(text)
        canvas.setFont("F", 7)
        canvas.drawRightString(page_w - margin, margin - 8, f"Page {page} of {pages}")
        canvas.showPage()
        done += len(batch)
        page, capacity, y_top = page + 1, per_page, top
    canvas.save()
    report(time.perf_counter() - start, path, rows)
    """
)

CSV_OURS_FRAME = DATA + textwrap.dedent(
    """
    from b2b_integrations.reports.config import report_spec_from_config
    from b2b_integrations.reports.render import render_report
    from b2b_integrations.reports.spec import ReportMeta
    rows, path = int(sys.argv[1]), sys.argv[2]
    data = frame(rows)
    spec = report_spec_from_config("csv", {"csv": {"decimals": 2, "datetime_format": "%Y-%m-%d"},
                                           "summary": [{"label": "Total", "op": "sum", "column": "amount"}]})
    meta = ReportMeta("bench", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    start = time.perf_counter()
    result = render_report(spec, (data.iloc[i:i + 50_000] for i in range(0, rows, 50_000)), path, meta)
    report(time.perf_counter() - start, path, result.rows, sha256=result.sha256)
    """
)

CSV_FLOOR_FRAME = DATA + textwrap.dedent(
    """
    import hashlib
    rows, path = int(sys.argv[1]), sys.argv[2]
    data = frame(rows)
    start = time.perf_counter()
    data.to_csv(path, index=False, float_format="%.2f", date_format="%Y-%m-%d")
    seconds = time.perf_counter() - start
    report(seconds, path, rows, sha256=hashlib.sha256(open(path, "rb").read()).hexdigest())
    """
)

CSV_OURS_PG = DATA + textwrap.dedent(
    """
    from sqlalchemy import create_engine
    from b2b_integrations.reports.config import report_spec_from_config
    from b2b_integrations.reports.query import sql_chunks
    from b2b_integrations.reports.render import render_report
    from b2b_integrations.reports.spec import ReportMeta
    url, path = sys.argv[1], sys.argv[2]
    spec = report_spec_from_config("csv", {"csv": {"decimals": 2},
                                           "summary": [{"label": "Total", "op": "sum", "column": "amount"}]})
    meta = ReportMeta("bench", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    engine = create_engine(url)
    start = time.perf_counter()
    chunks = sql_chunks(engine, "SELECT * FROM bench_invoices ORDER BY invoice", {}, 50_000)
    result = render_report(spec, chunks, path, meta)
    report(time.perf_counter() - start, path, result.rows)
    """
)

CSV_FLOOR_PG = DATA + textwrap.dedent(
    """
    from sqlalchemy import create_engine
    url, path = sys.argv[1], sys.argv[2]
    engine = create_engine(url)
    start = time.perf_counter()
    data = pd.read_sql("SELECT * FROM bench_invoices ORDER BY invoice", engine)
    data.to_csv(path, index=False, float_format="%.2f")
    report(time.perf_counter() - start, path, len(data))
    """
)


def run_json(code: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run one case in a fresh Python process; its last stdout line is its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_postgres(db: str, rows: int) -> None:
    """The same kind of rows as the frame, generated inside PostgreSQL."""
    import psycopg2

    with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_invoices (invoice TEXT PRIMARY KEY, customer TEXT, paid_on DATE, "
            "amount NUMERIC(12, 2), items INTEGER, region TEXT)"
        )
        cur.execute(
            "INSERT INTO bench_invoices SELECT 'INV-' || lpad(i::text, 8, '0'), "
            "(ARRAY['Zoë Müller', 'Łukasz Gößling', 'Øystein Ağaoğlu', 'Amélie Durand'])[1 + i %% 4], "
            "DATE '2026-11-01' + (i %% 30), round((5 + random() * 4995)::numeric, 2), 1 + i %% 39, "
            "(ARRAY['north', 'south', 'east', 'west'])[1 + i %% 4] FROM generate_series(0, %s) AS i",
            (rows - 1,),
        )
        cur.execute("ANALYZE bench_invoices")


def line(label: str, result: dict[str, float], floor: dict[str, float] | None = None) -> str:
    ratio = f"{result['seconds'] / floor['seconds']:>6.2f}x" if floor else ""
    return (
        f"  {label:<18} {result['seconds']:>8.2f} {result['rows'] / result['seconds']:>10,.0f} "
        f"{result['bytes'] / 1e6:>8.1f} {result['peak_mib']:>9.0f} {ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pdf-rows", type=int, default=100_000)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL cases")
    args = parser.parse_args()

    header = f"  {'':<18} {'seconds':>8} {'rows/s':>10} {'MB':>8} {'peak MiB':>9} {'/floor':>7}"
    with tempfile.TemporaryDirectory(prefix="b2b-report-bench-") as tmp:
        env = dict(os.environ)
        out = Path(tmp)
        print(f"machine: {os.cpu_count()} cores; each case in a fresh process", flush=True)

        print(f"(a) PDF, {args.pdf_rows:,} rows ...", flush=True)
        pdf_ours = run_json(PDF_OURS, [str(args.pdf_rows), str(out / "ours.pdf")], env)
        pdf_floor = run_json(PDF_FLOOR, [str(args.pdf_rows), str(out / "floor.pdf")], env)
        problems = pdf_problems("ours", out / "ours.pdf", args.pdf_rows)
        problems += pdf_problems("floor", out / "floor.pdf", args.pdf_rows)

        print(f"(b) CSV, {args.csv_rows:,} rows ...", flush=True)
        csv_ours = run_json(CSV_OURS_FRAME, [str(args.csv_rows), str(out / "ours.csv")], env)
        csv_floor = run_json(CSV_FLOOR_FRAME, [str(args.csv_rows), str(out / "floor.csv")], env)
        problems += csv_problems("frame", out / "ours.csv", out / "floor.csv", args.csv_rows)
        pg_results = None if args.no_postgres else postgres_cases(args.csv_rows, out, env)
        if pg_results:
            problems += csv_problems("postgres", out / "ours_pg.csv", out / "floor_pg.csv", args.csv_rows)
        if problems:
            raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(problems))

    print("\n(a) PDF table report")
    print(header)
    print(line("ours", pdf_ours, pdf_floor))
    print(line("floor (reportlab)", pdf_floor))
    print("\n(b) CSV export")
    print(header)
    print(line("ours (frame)", csv_ours, csv_floor))
    print(line("floor (to_csv)", csv_floor))
    print("  ours and floor files byte-identical (checked, from the frame and from PostgreSQL)")
    if pg_results:
        ours_pg, floor_pg = pg_results
        print(line("ours (postgres)", ours_pg, floor_pg))
        print(line("floor (read_sql)", floor_pg))
    pdf_ratio = pdf_ours["seconds"] / pdf_floor["seconds"]
    csv_ratio = csv_ours["seconds"] / csv_floor["seconds"]
    print(f"\nPDF {pdf_ratio:.2f}x its floor (target <= 1.5x); CSV {csv_ratio:.2f}x (target <= 1.3x)")
    if pg_results:
        print(f"CSV from PostgreSQL: ours peak RSS {pg_results[0]['peak_mib']:.0f} MiB (target < 300 MB)")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


def pdf_problems(label: str, path: Path, rows: int) -> list[str]:
    """What is wrong with a table PDF of ``rows`` invoices (empty when nothing): the footers' page count
    against the file's, and the invoices of the first, a middle and the last page adding up to ``rows``
    (every middle page holds as many as the one read: fixed row heights), the first and last invoice."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    pages = len(reader.pages)
    if pages < 3:
        return [f"PDF {label}: {pages} pages, expected at least 3 for {rows:,} rows"]
    first, middle, last = (reader.pages[i].extract_text() for i in (0, pages // 2, pages - 1))
    counted = first.count("INV-") + (pages - 2) * middle.count("INV-") + last.count("INV-")
    problems = []
    if f"Page 1 of {pages}" not in first or f"Page {pages} of {pages}" not in last:
        problems.append(f"PDF {label}: footers do not say 'Page i of {pages}'")
    if counted != rows:
        problems.append(f"PDF {label}: pages hold {counted:,} invoice rows, expected {rows:,}")
    if "INV-00000000" not in first + reader.pages[1].extract_text() or f"INV-{rows - 1:08d}" not in last:
        problems.append(f"PDF {label}: the first or the last invoice is missing")
    return problems


def csv_problems(case: str, ours: Path, floor: Path, rows: int) -> list[str]:
    """Ours must be byte-identical to the floor's file, and both hold a header and one line per row."""
    import hashlib

    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in (ours, floor)]
    problems = [] if digests[0] == digests[1] else [f"CSV ({case}): ours and the floor's file differ"]
    with ours.open("rb") as f:
        lines = sum(1 for _ in f)
    if lines != rows + 1:
        problems.append(f"CSV ({case}): {lines - 1:,} data lines, expected {rows:,}")
    return problems


def postgres_cases(rows: int, out: Path, env: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    import psycopg2

    db = f"b2b_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    try:
        print(f"    loading {rows:,} rows into PostgreSQL ...", flush=True)
        load_postgres(db, rows)
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
        ours = run_json(CSV_OURS_PG, [url, str(out / "ours_pg.csv")], env)
        floor = run_json(CSV_FLOOR_PG, [url, str(out / "floor_pg.csv")], env)
        return ours, floor
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
