"""Documents with line items: a record read from a real file becomes a header row and line rows, or is
refused whole with every reason naming the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.formats.documents import document_spec
from b2b_integrations.formats.readers import options_from_dict, read_records
from b2b_integrations.formats.validation import schema_from_dict

DOCUMENTS = Path(__file__).parents[1] / "data" / "documents"

PO_LINES = {
    "lines": [
        {
            "name": "lines",
            "path": "line",
            "table": "po_lines",
            "min_items": 1,
            "fields": [
                {"name": "sku", "required": True},
                {"name": "qty", "type": "integer", "required": True, "minimum": 1},
            ],
        }
    ]
}
PO_SCHEMA = schema_from_dict({"fields": [{"name": "id", "required": True}, {"name": "customer"}]})


def _record(name: str, **fmt: Any) -> dict[str, Any]:
    (record,) = read_records(DOCUMENTS / name, options_from_dict(fmt))
    return record.fields


def _split(spec: Any, schema: Any, fields: dict[str, Any], constants: dict[str, Any] | None = None) -> Any:
    """(header row by column or None, document rows or None, reasons) of one document."""
    rows, reasons = spec.read(fields, schema, constants or {})
    if rows is None:
        return None, None, reasons
    columns = [*(rule.name for rule in schema.fields), *(constants or {})]
    return dict(zip(columns, rows.header, strict=True)), rows, reasons


def test_purchase_order_header_and_lines_by_position() -> None:
    spec = document_spec(PO_LINES, ["customer_id", "id"])
    header, rows, reasons = _split(
        spec,
        PO_SCHEMA,
        _record("purchase_order.xml", format="xml", record_path="order"),
        {"customer_id": "acme"},
    )
    assert reasons == []
    assert header == {"id": "PO-1", "customer": "ACME", "customer_id": "acme"}
    assert rows.key == ("acme", "PO-1")
    assert rows.lines == {"po_lines": [("acme", "PO-1", 1, "A-1", 2), ("acme", "PO-1", 2, "B-2", 5)]}
    assert spec.groups[0].key == ("customer_id", "id", "line_no")


def test_a_bad_line_refuses_the_document_naming_line_and_field() -> None:
    spec = document_spec(PO_LINES, ["id"])
    fields = {
        "id": "PO-2",
        "line": [
            {"sku": "A-1", "qty": "2"},
            {"qty": "0"},
            {"sku": "C", "qty": "two"},
            {"sku": "D", "qty": {"@unit": "EA", "#text": "1"}},
        ],
    }
    _, rows, reasons = _split(spec, PO_SCHEMA, fields)
    assert rows is None
    assert reasons == [
        "lines[2]: field 'sku' is required",
        "lines[2]: field 'qty': 0 is below the minimum 1",
        "lines[3]: field 'qty': expected integer, got 'two'",
        "lines[4]: field 'qty': expected one value, got an object (its parts: qty.@unit, qty.#text)",
    ]
    # No line at all (an empty element, or no element) is below min_items.
    for empty in ({"id": "PO-3", "line": ""}, {"id": "PO-3"}):
        assert _split(spec, PO_SCHEMA, empty)[2] == ["lines: at least 1 line(s) required at 'line', got 0"]
    # One <line> reads as an object, not a list: it is one line.
    one = _split(spec, PO_SCHEMA, {"id": "PO-4", "line": {"sku": "A", "qty": "1"}})[1]
    assert one.lines == {"po_lines": [("PO-4", 1, "A", 1)]}


def test_ubl_invoice_nested_paths_own_line_ids_and_attributes() -> None:
    config = {
        "header_paths": {
            "invoice_id": "ID",
            "supplier": "AccountingSupplierParty.Party.PartyName.Name",
            "supplier_city": "AccountingSupplierParty.Party.PostalAddress.CityName",
            "total": "LegalMonetaryTotal.PayableAmount.#text",
            "currency": "LegalMonetaryTotal.PayableAmount.@currencyID",
            "note": "cbc:Note",
            "internal_note": "ext:Note",
        },
        "lines": [
            {
                "path": "InvoiceLine",
                "table": "invoice_lines",
                "key": ["line_id"],
                "fields": [
                    {"name": "line_id", "path": "ID", "type": "integer", "required": True},
                    {"name": "item_id", "path": "Item.SellersItemIdentification.ID", "required": True},
                    {"name": "item_name", "path": "Item.Name"},
                    {"name": "quantity", "path": "InvoicedQuantity.#text", "type": "number", "minimum": 0},
                    {"name": "unit", "path": "InvoicedQuantity.@unitCode"},
                    {"name": "amount", "path": "LineExtensionAmount.#text", "type": "number"},
                    {"name": "price", "path": "Price.PriceAmount.#text", "type": "number"},
                ],
            }
        ],
    }
    schema = schema_from_dict(
        {
            "fields": [
                {"name": "invoice_id", "required": True},
                {"name": "IssueDate", "type": "date"},
                {"name": "supplier"},
                {"name": "supplier_city"},
                {"name": "total", "type": "number"},
                {"name": "currency"},
                {"name": "note"},
                {"name": "internal_note"},
            ]
        }
    )
    spec = document_spec(config, ["invoice_id"])
    header, rows, reasons = _split(
        spec, schema, _record("ubl_invoice.xml", format="xml", record_path="Invoice")
    )
    assert reasons == []
    assert header["supplier"] == "Globex GmbH" and header["supplier_city"] == "Köln"
    assert (header["total"], header["currency"]) == (142.5, "EUR")
    assert (header["note"], header["internal_note"]) == (
        "Thank you for your order",
        "internal: priority customer",
    )
    assert rows.lines["invoice_lines"] == [
        ("INV-1001", 1, "W-100", "Widget", 3.0, "EA", 90.0, 30.0),
        ("INV-1001", 2, "G-7", "Gadget powder", 1.5, "KGM", 52.5, 35.0),
    ]
    # A line id repeated within the document would make two rows with one key: the document is refused.
    fields = _record("ubl_invoice.xml", format="xml", record_path="Invoice")
    fields["InvoiceLine"][1]["ID"] = "1"
    assert _split(spec, schema, fields)[2] == ["InvoiceLine[2]: key {'line_id': 1} repeats InvoiceLine[1]"]


def test_json_order_with_lines_of_lines() -> None:
    config = {
        "lines": [
            {
                "path": "lines",
                "table": "so_lines",
                "fields": [
                    {"name": "sku", "required": True},
                    {"name": "qty", "type": "integer", "minimum": 1},
                ],
                "lines": [
                    {
                        "path": "components",
                        "table": "so_components",
                        "position": "component_no",
                        "fields": [
                            {"name": "part", "required": True},
                            {"name": "count", "type": "integer", "minimum": 1},
                        ],
                    }
                ],
            }
        ]
    }
    schema = schema_from_dict({"fields": [{"name": "order_id", "required": True}, {"name": "customer"}]})
    spec = document_spec(config, ["order_id"])
    assert [g.table for g in spec.all_groups()] == ["so_lines", "so_components"]
    assert spec.all_groups()[1].key == ("order_id", "line_no", "component_no")
    fields = _record("order.json", format="json", record_path="orders")
    _, rows, reasons = _split(spec, schema, fields)
    assert reasons == []
    assert rows.lines == {
        "so_lines": [("SO-77", 1, "P-1", 4), ("SO-77", 2, "P-2", 1)],
        "so_components": [("SO-77", 1, 1, "screw", 8), ("SO-77", 1, 2, "bolt", 2), ("SO-77", 2, 1, "lid", 1)],
    }
    fields["lines"][1]["components"][0]["count"] = 0
    assert _split(spec, schema, fields)[2] == [
        "lines[2].components[1]: field 'count': 0 is below the minimum 1"
    ]


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"lines": [{"path": "l", "table": "t", "fields": [{"name": "a"}]}]}, [], "needs the step's 'key'"),
        ({"lines": []}, ["id"], "at least one line group"),
        ({"lines": [{"path": "l", "table": "t", "fields": []}]}, ["id"], r"lines\[0\].fields: declare"),
        ({"lines": [{"path": "l..x", "table": "t", "fields": [{"name": "a"}]}]}, ["id"], r"lines\[0\].path"),
        (
            {"lines": [{"path": "l", "table": "t", "key": ["b"], "fields": [{"name": "a"}]}]},
            ["id"],
            r"\['b'\] are not among",
        ),
        (
            {"lines": [{"path": "l", "table": "t", "key": ["a"], "fields": [{"name": "a"}]}]},
            ["id"],
            "must be required",
        ),
        (
            {"lines": [{"path": "l", "table": "t", "fields": [{"name": "id"}]}]},
            ["id"],
            "already the parent's key",
        ),
        (
            {"lines": [{"path": "l", "table": "t", "fields": [{"name": "a", "minimum": 1}]}]},
            ["id"],
            "need type integer",
        ),
        (
            {
                "lines": [
                    {
                        "path": "l",
                        "table": "t",
                        "fields": [{"name": "a"}],
                        "lines": [{"path": "m", "table": "u", "fields": [{"name": "b"}]}],
                    }
                ]
            },
            ["id"],
            r"lines\[0\].lines\[0\].position: column 'line_no' is already in the parent's key",
        ),
        (
            {"lines": [{"path": "l", "table": "t", "fields": [{"name": "a", "typo": 1}]}]},
            ["id"],
            r"unknown key\(s\) \['typo'\]",
        ),
        (
            {
                "lines": [
                    {"path": "l", "table": "t", "fields": [{"name": "a"}]},
                    {"path": "m", "table": "t", "fields": [{"name": "b"}]},
                ]
            },
            ["id"],
            "used by more than one",
        ),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        document_spec(config, key)


def test_created_line_tables_take_their_key_types_from_the_parent() -> None:
    config = {
        "lines": [
            {
                "path": "lines",
                "table": "so_lines",
                "fields": [{"name": "sku"}],
                "columns": {"sku": "VARCHAR(20)"},
                "lines": [
                    {
                        "path": "c",
                        "table": "so_c",
                        "position": "part_no",
                        "fields": [{"name": "part"}],
                        "columns": {"part": "TEXT"},
                    }
                ],
            }
        ]
    }
    spec = document_spec(config, ["order_id"], {"order_id": "VARCHAR(40)"}, create_tables=True)
    lines, components = spec.all_groups()
    assert lines.columns == {"order_id": "VARCHAR(40)", "line_no": "INTEGER", "sku": "VARCHAR(20)"}
    assert components.columns == {
        "order_id": "VARCHAR(40)",
        "line_no": "INTEGER",
        "part_no": "INTEGER",
        "part": "TEXT",
    }
    with pytest.raises(ValueError, match=r"no SQL type for column 'sku'"):
        document_spec(
            {"lines": [{"path": "l", "table": "t", "fields": [{"name": "sku"}]}]},
            ["order_id"],
            {"order_id": "TEXT"},
            True,
        )


def test_docs_example_is_the_shipped_template() -> None:
    """docs/patterns/documents.md shows the step of include/integrations/partner_po_xml.yaml (a snippet the
    site build inlines), which tests/integration/test_documents_import.py runs as a generated DAG."""
    repo = Path(__file__).parents[2]
    page = (repo / "docs" / "patterns" / "documents.md").read_text(encoding="utf-8")
    assert '--8<-- "include/integrations/partner_po_xml.yaml:import_orders"' in page
    template = (repo / "include" / "integrations" / "partner_po_xml.yaml").read_text(encoding="utf-8")
    section = template.split("# --8<-- [start:import_orders]")[1].split("# --8<-- [end:import_orders]")[0]
    assert "kind: sftp_import" in section and "document:" in section


def test_document_sink_replaces_lines_on_sqlite(tmp_path: Path) -> None:
    """The portable path (executemany, row-value DELETE) on a real SQLite file: a newer version of a
    document leaves exactly its lines, lines of lines included, another document's lines untouched."""
    import sqlite3

    from b2b_integrations.sinks.documents import DELETE_KEYS_PER_STATEMENT, document_sink
    from b2b_integrations.sinks.sql import prepare_target, write_rows

    config = {
        "lines": [
            {
                "path": "lines",
                "table": "so_lines",
                "fields": [{"name": "sku", "required": True}, {"name": "qty", "type": "integer"}],
                "columns": {"sku": "TEXT", "qty": "INTEGER"},
                "lines": [
                    {
                        "path": "parts",
                        "table": "so_parts",
                        "position": "part_no",
                        "fields": [{"name": "part"}],
                        "columns": {"part": "TEXT"},
                    }
                ],
            }
        ]
    }
    columns = {"customer_id": "TEXT", "order_id": "TEXT", "note": "TEXT"}
    spec = document_spec(config, ["customer_id", "order_id"], columns, create_tables=True)
    schema = schema_from_dict({"fields": [{"name": "order_id", "required": True}, {"name": "note"}]})
    conn = sqlite3.connect(tmp_path / "app.db")

    def load(*documents: dict[str, Any]) -> None:
        header = prepare_target(
            conn,
            "sqlite",
            "?",
            "so",
            ["order_id", "note", "customer_id"],
            ["customer_id", "order_id"],
            True,
            columns,
        )
        sink = document_sink(conn, "sqlite", "?", header, spec, create_tables=True)
        rows = []
        for document in documents:
            read, reasons = spec.read(document, schema, {"customer_id": "acme"})
            assert reasons == []
            rows.append(read)
        write_rows(conn, sink, rows, chunk_size=1000)

    def order(order_id: str, *skus: str) -> dict[str, Any]:
        return {
            "order_id": order_id,
            "lines": [{"sku": s, "qty": 1, "parts": [{"part": s.lower()}]} for s in skus],
        }

    many = [
        order(f"O-{i}", "A") for i in range(DELETE_KEYS_PER_STATEMENT + 5)
    ]  # more keys than one DELETE takes
    load(order("X", "A", "B", "C"), *many)
    load(order("X", "C"), *many)
    assert conn.execute("SELECT order_id, line_no, sku FROM so_lines WHERE order_id = 'X'").fetchall() == [
        ("X", 1, "C")
    ]
    assert conn.execute(
        "SELECT order_id, line_no, part_no, part FROM so_parts WHERE order_id = 'X'"
    ).fetchall() == [("X", 1, 1, "c")]
    assert conn.execute("SELECT count(*) FROM so_lines").fetchone() == (len(many) + 1,)
    assert conn.execute("SELECT count(*) FROM so").fetchone() == (len(many) + 1,)
