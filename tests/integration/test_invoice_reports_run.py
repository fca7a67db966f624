"""The shipped scheduled-file-export template runs as a generated DAG: invoices in PostgreSQL -> a PDF for
last month -> copied to the customer's folder once, even when the run is repeated."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helpers import PG, pg_rows, shipped_template, write_include

pytestmark = pytest.mark.e2e


def test_monthly_pdf_renders_last_month_and_is_delivered_once(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2
    from airflow.dag_processing.dagbag import DagBag
    from pypdf import PdfReader

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE crm_invoices (customer_id VARCHAR(60), id BIGINT, company_id BIGINT, number VARCHAR(40), "
            "amount NUMERIC(12, 2), currency VARCHAR(3), status VARCHAR(10), issued_on DATE, updated_at TIMESTAMP, "
            "PRIMARY KEY (customer_id, id))"
        )
        rows = [
            ("repco", 1, 7, "INV-0001", 1200.50, "EUR", "paid", "2026-10-01"),
            ("repco", 2, 8, "INV-0002", 99.99, "EUR", "open", "2026-10-31"),
            ("repco", 5, 8, "INV-0005", 20.00, "USD", "paid", "2026-10-20"),  # never added to the euros
            ("repco", 3, 9, "INV-0003", 5000.00, "EUR", "paid", "2026-11-01"),  # this month: not in October's
            ("other", 4, 9, "INV-0004", 7.00, "EUR", "paid", "2026-10-15"),  # another customer
        ]
        cur.executemany("INSERT INTO crm_invoices VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())", rows)
    outbox = tmp_path / "outbox"
    customer = {
        "id": "repco",
        "name": "Repco Société Générale Ærø",
        "integrations": {
            "invoice_reports": {
                "config": {"report_folder": str(outbox)},
                "connections": {"app_db": "repco_db"},
            }
        },
    }
    include = write_include(
        tmp_path / "include", {"invoice_reports": shipped_template("invoice_reports")}, {"repco": customer}
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_REPCO_DB", f"{PG}/{pg_db}")
    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["repco__invoice_reports__monthly_pdf"]

    run = dag.test(logical_date=datetime(2026, 11, 1, 6, tzinfo=UTC))
    assert run.state == "success"
    delivered = outbox / "repco_monthly_invoices_2026-10.pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(delivered).pages)
    assert "Repco Société Générale Ærø" in text and "INV-0001" in text and "INV-0002" in text
    assert "INV-0003" not in text and "INV-0004" not in text
    figures = text.replace(",", "")
    assert re.search(r"Total amount \(EUR\)\s*1300\.49", figures)  # October's, per currency
    assert re.search(r"Total amount \(USD\)\s*20\.00", figures)
    assert "1320.49" not in figures and "Amount by currency" in text
    assert pg_rows(pg_db, "SELECT report, target FROM b2b_deliveries") == [("monthly_invoices", "local")]

    delivered.unlink()
    again = dag.test(logical_date=datetime(2026, 11, 1, 6, tzinfo=UTC))  # same period: rendered, not re-sent
    assert again.state == "success"
    assert not delivered.exists()
    assert pg_rows(pg_db, "SELECT count(*) FROM b2b_deliveries") == [(1,)]
