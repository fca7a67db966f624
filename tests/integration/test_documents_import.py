"""Documents with line items through the real file import: OpenSSH sshd, PostgreSQL, the sample documents
of tests/data/documents (the purchase order of issue 20, a UBL-like invoice, a JSON order)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.config.sql_target import with_target
from b2b_integrations.operators.sftp_import import SftpFileImportOperator
from helpers import PG
from helpers import pg_rows as rows

pytestmark = pytest.mark.e2e

DOCUMENTS = Path(__file__).parents[1] / "data" / "documents"


@pytest.fixture
def db_conn(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_DOCUMENTS_DB", f"{PG}/{pg_db}")
    return "documents_db"


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _import(sftp_conn: str, db_conn: str, folder: str, **arguments: Any) -> dict[str, Any]:
    """Run the import with ``arguments`` written as a step's options: the target's options grouped into
    ``target``, as the DAG factory does."""
    operator = SftpFileImportOperator(
        task_id="import_documents",
        customer_id="acme",
        integration="documents",
        flow="files",
        sftp_conn_id=sftp_conn,
        folder=folder,
        db_conn_id=db_conn,
        constants={"customer_id": "acme"},
        settle_seconds=0,
        **with_target({"create_table": True, **arguments}),
    )
    return operator.execute({})  # type: ignore[arg-type]


def _purchase_orders(table: str) -> dict[str, Any]:
    return {
        "pattern": "*.xml",
        "file_format": {"format": "xml", "record_path": "order"},
        "row_schema": {"fields": [{"name": "id", "required": True}, {"name": "customer"}]},
        "table": table,
        "key": ["customer_id", "id"],
        "columns": {"customer_id": "VARCHAR(40)", "id": "VARCHAR(40)", "customer": "VARCHAR(80)"},
        "document": {
            "lines": [
                {
                    "name": "lines",
                    "path": "line",
                    "table": f"{table}_lines",
                    "min_items": 1,
                    "fields": [
                        {"name": "sku", "required": True},
                        {"name": "qty", "type": "integer", "required": True, "minimum": 1},
                    ],
                    "columns": {"sku": "VARCHAR(40)", "qty": "INTEGER"},
                }
            ]
        },
    }


def _po(order_id: str, *lines: tuple[str, str]) -> str:
    body = "".join(f"<line><sku>{sku}</sku><qty>{qty}</qty></line>" for sku, qty in lines)
    return f'<order id="{order_id}"><customer>ACME</customer>{body}</order>'


def test_purchase_order_lands_in_header_and_lines_and_a_changed_one_replaces_its_lines(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    table = f"po_{_suffix()}"
    Path(sftp_folder, "po-1.xml").write_bytes((DOCUMENTS / "purchase_order.xml").read_bytes())
    result = _import(sftp_conn, db_conn, sftp_folder, **_purchase_orders(table))
    assert (result["files_loaded"], result["rows_loaded"], result["rows_quarantined"]) == (1, 1, 0)
    assert rows(pg_db, f"SELECT customer_id, id, customer FROM {table}") == [("acme", "PO-1", "ACME")]
    lines = f"SELECT id, line_no, sku, qty FROM {table}_lines ORDER BY id, line_no"
    assert rows(pg_db, lines) == [("PO-1", 1, "A-1", 2), ("PO-1", 2, "B-2", 5)]

    # The partner sends PO-1 again, changed (B-2 gone, A-1 now 3, C-3 new), beside a new order PO-2.
    changed = f"<orders>{_po('PO-1', ('A-1', '3'), ('C-3', '1'))}{_po('PO-2', ('Z-9', '7'))}</orders>"
    Path(sftp_folder, "po-1.xml").write_text(changed)
    assert _import(sftp_conn, db_conn, sftp_folder, **_purchase_orders(table))["rows_loaded"] == 2
    assert rows(pg_db, lines) == [("PO-1", 1, "A-1", 3), ("PO-1", 2, "C-3", 1), ("PO-2", 1, "Z-9", 7)]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]


def test_a_bad_line_quarantines_its_document_whole_and_the_others_load(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    table = f"po_{_suffix()}"
    Path(sftp_folder, "a.xml").write_text(f"<orders>{_po('PO-7', ('A-1', '1'), ('B-2', '2'))}</orders>")
    _import(sftp_conn, db_conn, sftp_folder, **_purchase_orders(table))
    # A new version of PO-7 with a bad second line, and PO-8 with no line at all, beside a good PO-9.
    bad = _po("PO-7", ("A-1", "4"), ("", "0")) + '<order id="PO-8"><customer>X</customer></order>'
    Path(sftp_folder, "b.xml").write_text(f"<orders>{bad}{_po('PO-9', ('K-1', '1'))}</orders>")
    result = _import(sftp_conn, db_conn, sftp_folder, **_purchase_orders(table))
    assert (result["rows_loaded"], result["rows_quarantined"]) == (1, 2)
    report = list(
        csv.reader(io.StringIO(Path(sftp_folder, "quarantine", "b.xml.quarantine.csv").read_text()))
    )
    assert [(r[1], r[2]) for r in report[1:]] == [
        ("1", "lines[2]: field 'sku' is required; lines[2]: field 'qty': 0 is below the minimum 1"),
        ("2", "lines: at least 1 line(s) required at 'line', got 0"),
    ]
    assert report[1][3].startswith('<order id="PO-7">')  # the whole document, as sent
    # The refused version of PO-7 changed nothing: its earlier lines stay, not half of the new ones.
    lines = f"SELECT id, line_no, sku, qty FROM {table}_lines ORDER BY id, line_no"
    assert rows(pg_db, lines) == [("PO-7", 1, "A-1", 1), ("PO-7", 2, "B-2", 2), ("PO-9", 1, "K-1", 1)]
    assert rows(pg_db, f"SELECT id FROM {table} ORDER BY id") == [("PO-7",), ("PO-9",)]


def test_ubl_invoice_every_value_in_header_and_lines(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    table = f"inv_{_suffix()}"
    Path(sftp_folder, "inv.xml").write_bytes((DOCUMENTS / "ubl_invoice.xml").read_bytes())
    header = {
        "invoice_id": ("ID", "VARCHAR(40)", "string"),
        "issue_date": ("IssueDate", "DATE", "date"),
        "note": ("cbc:Note", "TEXT", "string"),
        "internal_note": ("ext:Note", "TEXT", "string"),
        "currency": ("DocumentCurrencyCode.#text", "CHAR(3)", "string"),
        "currency_list": ("DocumentCurrencyCode.@listID", "TEXT", "string"),
        "supplier": ("AccountingSupplierParty.Party.PartyName.Name", "TEXT", "string"),
        "supplier_city": ("AccountingSupplierParty.Party.PostalAddress.CityName", "TEXT", "string"),
        "supplier_zip": ("AccountingSupplierParty.Party.PostalAddress.PostalZone", "TEXT", "string"),
        "total": ("LegalMonetaryTotal.PayableAmount.#text", "NUMERIC(12,2)", "number"),
        "total_currency": ("LegalMonetaryTotal.PayableAmount.@currencyID", "CHAR(3)", "string"),
    }
    line_fields = {
        "line_id": ("ID", "INTEGER", "integer"),
        "quantity": ("InvoicedQuantity.#text", "NUMERIC(12,3)", "number"),
        "unit": ("InvoicedQuantity.@unitCode", "TEXT", "string"),
        "amount": ("LineExtensionAmount.#text", "NUMERIC(12,2)", "number"),
        "amount_currency": ("LineExtensionAmount.@currencyID", "CHAR(3)", "string"),
        "item_name": ("Item.Name", "TEXT", "string"),
        "item_id": ("Item.SellersItemIdentification.ID", "TEXT", "string"),
        "price": ("Price.PriceAmount.#text", "NUMERIC(12,2)", "number"),
        "price_currency": ("Price.PriceAmount.@currencyID", "CHAR(3)", "string"),
    }
    result = _import(
        sftp_conn,
        db_conn,
        sftp_folder,
        pattern="*.xml",
        file_format={"format": "xml", "record_path": "Invoice"},
        row_schema={
            "fields": [
                {"name": n, "type": t, "required": n == "invoice_id"} for n, (_, _, t) in header.items()
            ]
        },
        table=table,
        key=["customer_id", "invoice_id"],
        columns={"customer_id": "VARCHAR(40)", **{n: sql for n, (_, sql, _) in header.items()}},
        document={
            "header_paths": {n: path for n, (path, _, _) in header.items()},
            "lines": [
                {
                    "path": "InvoiceLine",
                    "table": f"{table}_lines",
                    "key": ["line_id"],
                    "fields": [
                        {"name": n, "path": path, "type": t, "required": n == "line_id"}
                        for n, (path, _, t) in line_fields.items()
                    ],
                    "columns": {n: sql for n, (_, sql, _) in line_fields.items()},
                }
            ],
        },
    )
    assert result["rows_loaded"] == 1
    assert rows(pg_db, f"SELECT {', '.join(header)}, customer_id FROM {table}") == [
        (
            "INV-1001",
            date(2025, 3, 1),
            "Thank you for your order",
            "internal: priority customer",
            "EUR",
            "ISO 4217",
            "Globex GmbH",
            "Köln",
            "50667",
            Decimal("142.50"),
            "EUR",
            "acme",
        )
    ]
    assert rows(pg_db, f"SELECT {', '.join(line_fields)} FROM {table}_lines ORDER BY line_id") == [
        (1, Decimal("3.000"), "EA", Decimal("90.00"), "EUR", "Widget", "W-100", Decimal("30.00"), "EUR"),
        (
            2,
            Decimal("1.500"),
            "KGM",
            Decimal("52.50"),
            "EUR",
            "Gadget powder",
            "G-7",
            Decimal("35.00"),
            "EUR",
        ),
    ]


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_order_with_lines_of_lines(
    fmt: str, sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    table = f"so_{_suffix()}"
    document = json.loads((DOCUMENTS / "order.json").read_text())
    content = json.dumps(document) if fmt == "json" else "\n".join(json.dumps(o) for o in document["orders"])
    Path(sftp_folder, f"orders.{fmt}").write_text(content)
    arguments = {
        "pattern": f"*.{fmt}",
        "file_format": {"format": fmt, **({"record_path": "orders"} if fmt == "json" else {})},
        "row_schema": {"fields": [{"name": "order_id", "required": True}, {"name": "customer"}]},
        "table": table,
        "key": ["customer_id", "order_id"],
        "columns": {"customer_id": "TEXT", "order_id": "TEXT", "customer": "TEXT"},
        "document": {
            "lines": [
                {
                    "path": "lines",
                    "table": f"{table}_lines",
                    "fields": [
                        {"name": "sku", "required": True},
                        {"name": "qty", "type": "integer", "minimum": 1},
                    ],
                    "columns": {"sku": "TEXT", "qty": "INTEGER"},
                    "lines": [
                        {
                            "path": "components",
                            "table": f"{table}_parts",
                            "position": "part_no",
                            "fields": [
                                {"name": "part", "required": True},
                                {"name": "count", "type": "integer"},
                            ],
                            "columns": {"part": "TEXT", "count": "INTEGER"},
                        }
                    ],
                }
            ]
        },
    }
    assert _import(sftp_conn, db_conn, sftp_folder, **arguments)["rows_loaded"] == 1
    assert rows(pg_db, f"SELECT customer_id, order_id, customer FROM {table}") == [
        ("acme", "SO-77", "Initech")
    ]
    parts = f"SELECT order_id, line_no, part_no, part, count FROM {table}_parts ORDER BY 2, 3"
    assert rows(pg_db, f"SELECT order_id, line_no, sku, qty FROM {table}_lines ORDER BY 2") == [
        ("SO-77", 1, "P-1", 4),
        ("SO-77", 2, "P-2", 1),
    ]
    assert rows(pg_db, parts) == [
        ("SO-77", 1, 1, "screw", 8),
        ("SO-77", 1, 2, "bolt", 2),
        ("SO-77", 2, 1, "lid", 1),
    ]
    # Re-import with the second line gone: its components go with it.
    document["orders"][0]["lines"].pop()
    content = json.dumps(document) if fmt == "json" else "\n".join(json.dumps(o) for o in document["orders"])
    Path(sftp_folder, f"orders.{fmt}").write_text(content)
    _import(sftp_conn, db_conn, sftp_folder, **arguments)
    assert rows(pg_db, parts) == [("SO-77", 1, 1, "screw", 8), ("SO-77", 1, 2, "bolt", 2)]
    assert rows(pg_db, f"SELECT count(*) FROM {table}_lines") == [(1,)]


def test_an_invalid_document_block_fails_the_step_naming_the_key(
    sftp_conn: str, sftp_folder: str, db_conn: str
) -> None:
    Path(sftp_folder, "x.xml").write_text(_po("PO-1", ("A", "1")))
    arguments = _purchase_orders(f"po_{_suffix()}")
    arguments["document"] = {"lines": [{**arguments["document"]["lines"][0], "fields": []}]}
    # The message the config check gives for the same block, at the same key path.
    with pytest.raises(
        AirflowFailException, match=r"document\.lines\[0\]\.fields: List should have at least 1 item"
    ):
        _import(sftp_conn, db_conn, sftp_folder, **arguments)
    assert Path(sftp_folder, "x.xml").exists()  # nothing was read


# --------------------------------------------------------------------------- API import


class _OrdersApi:
    """A real HTTP server on loopback answering ``GET /orders`` with whatever ``body`` holds now."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self
        self.body: dict[str, Any] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                data = json.dumps(api.body).encode()
                self.send_response(200 if self.path.startswith("/orders") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def orders_api(monkeypatch: pytest.MonkeyPatch) -> Any:
    api = _OrdersApi()
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERS_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": api.port})
    )
    try:
        yield api
    finally:
        api.stop()


def test_api_import_of_orders_with_lines_replaces_lines_and_quarantines_a_bad_document(
    orders_api: _OrdersApi, db_conn: str, pg_db: str
) -> None:
    from b2b_integrations.operators.http_import import HttpApiImportOperator

    table = f"api_{_suffix()}"
    lines = f"SELECT order_id, line_no, sku, qty FROM {table}_lines ORDER BY 1, 2"

    def run() -> dict[str, Any]:
        return HttpApiImportOperator(
            task_id="import_orders",
            customer_id="acme",
            integration="documents",
            flow="api",
            http_conn_id="orders_api",
            endpoint="/orders",
            records_path="data",
            row_schema={
                "fields": [{"name": "order_id", "required": True}, {"name": "total", "type": "number"}]
            },
            db_conn_id=db_conn,
            target={
                "table": table,
                "key": ["order_id"],
                "columns": {"order_id": "TEXT", "total": "NUMERIC(10,2)"},
                "create_table": True,
                "document": {
                    "lines": [
                        {
                            "path": "lines",
                            "table": f"{table}_lines",
                            "min_items": 1,
                            "fields": [
                                {"name": "sku", "required": True},
                                {"name": "qty", "type": "integer", "required": True, "minimum": 1},
                            ],
                            "columns": {"sku": "TEXT", "qty": "INTEGER"},
                        }
                    ]
                },
            },
        ).execute({"run_id": "manual"})  # type: ignore[arg-type]

    order = {"order_id": "SO-1", "total": 9.5, "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}
    orders_api.body = {"data": [order]}
    assert run()["records_loaded"] == 1
    assert rows(pg_db, lines) == [("SO-1", 1, "A", 1), ("SO-1", 2, "B", 2)]

    changed = {**order, "lines": [{"sku": "B", "qty": 3}]}
    broken = {"order_id": "SO-2", "lines": [{"sku": "C", "qty": 1}, {"sku": "D", "qty": -1}]}
    orders_api.body = {"data": [changed, broken]}
    result = run()
    assert (result["records_loaded"], result["records_quarantined"]) == (1, 1)
    assert rows(pg_db, lines) == [("SO-1", 1, "B", 3)]
    assert rows(pg_db, f"SELECT order_id FROM {table}") == [("SO-1",)]
    quarantined = (
        "SELECT record_number, reasons FROM b2b_quarantine WHERE customer_id = 'acme' AND flow = 'api'"
    )
    assert rows(pg_db, quarantined) == [(2, "lines[2]: field 'qty': -1 is below the minimum 1")]


# --------------------------------------------------------------------------- the shipped template


def test_shipped_partner_po_xml_template_runs_as_a_generated_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, sshd: Any, sftp_folder: str, pg_db: str
) -> None:
    """include/integrations/partner_po_xml.yaml (docs/patterns/documents.md shows it), deployed for one customer, loads
    the purchase order of issue 20 and a second file with prices end to end."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import REPO, shipped_template, write_include

    customer = {
        "id": "poco",
        "name": "PO Co",
        "integrations": {
            "partner_po_xml": {
                "config": {"remote_folder": sftp_folder},
                "connections": {"partner_sftp": "poco_sftp", "app_db": "poco_db"},
            }
        },
    }
    include = write_include(
        tmp_path / "include", {"partner_po_xml": shipped_template("partner_po_xml")}, {"poco": customer}
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_POCO_SFTP", sshd.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_POCO_DB", f"{PG}/{pg_db}")
    Path(sftp_folder, "po-1.xml").write_bytes((DOCUMENTS / "purchase_order.xml").read_bytes())
    Path(sftp_folder, "po-2.xml").write_text(
        '<orders><order id="PO-2"><customer>ACME</customer><order_date>2025-03-02</order_date>'
        '<line><sku>C-3</sku><qty>4</qty><price currency="EUR">12.50</price></line></order></orders>'
    )

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["poco__partner_po_xml__purchase_orders"].test()
    assert run.state == "success"
    assert rows(
        pg_db,
        "SELECT customer_id, order_id, customer, order_date::text, source_file FROM partner_po ORDER BY 2",
    ) == [("poco", "PO-1", "ACME", None, "po-1.xml"), ("poco", "PO-2", "ACME", "2025-03-02", "po-2.xml")]
    assert rows(
        pg_db,
        "SELECT order_id, line_no, sku, qty, unit_price::text, currency FROM partner_po_lines ORDER BY 1, 2",
    ) == [
        ("PO-1", 1, "A-1", 2, None, None),
        ("PO-1", 2, "B-2", 5, None, None),
        ("PO-2", 1, "C-3", 4, "12.50", "EUR"),
    ]
