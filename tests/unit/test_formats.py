"""File readers: every format streams records from a real local file written by the test."""

from __future__ import annotations

import json
import types
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.formats.readers import (
    FileParseError,
    FormatOptions,
    RawRecord,
    options_from_dict,
    read_records,
)


def _write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode(encoding)
    path.write_bytes(content)
    return path


def _read(path: Path, **options: Any) -> list[RawRecord]:
    return list(read_records(path, FormatOptions(**options)))


# --------------------------------------------------------------------------- CSV / TSV


def test_csv_happy_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "id,name,qty\r\n1,Widget,5\r\n2,Gadget,10\r\n")
    records = _read(path, format="csv")
    assert [r.fields for r in records] == [
        {"id": "1", "name": "Widget", "qty": "5"},
        {"id": "2", "name": "Gadget", "qty": "10"},
    ]
    assert [r.number for r in records] == [1, 2]
    assert records[0].raw == "1,Widget,5"
    assert all(r.error is None for r in records)


def test_csv_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = _write(tmp_path, "bom.csv", "\ufeffid,name\n1,Anna\n")
    records = _read(path, format="csv")
    assert records[0].fields == {"id": "1", "name": "Anna"}


def test_csv_latin1(tmp_path: Path) -> None:
    path = _write(tmp_path, "l1.csv", "id;city\n1;Köln\n2;Straße\n3;café\n", encoding="latin-1")
    records = _read(path, format="csv", encoding="latin-1", delimiter=";")
    assert [r.fields["city"] for r in records] == ["Köln", "Straße", "café"]


def test_csv_semicolon_delimiter(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", "a;b\n1,5;x\n")
    assert _read(path, format="csv", delimiter=";")[0].fields == {"a": "1,5", "b": "x"}


def test_tsv_default_delimiter(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.tsv", "a\tb\nx, y\tz\n")
    assert _read(path, format="tsv")[0].fields == {"a": "x, y", "b": "z"}


def test_csv_without_header_uses_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "nh.csv", "1,Widget\n2,Gadget\n")
    records = _read(path, format="csv", header=False, columns=["id", "name"])
    assert [r.fields for r in records] == [{"id": "1", "name": "Widget"}, {"id": "2", "name": "Gadget"}]
    assert [r.number for r in records] == [1, 2]


def test_csv_columns_replace_header_and_count_must_match(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.csv", "Artikel,Menge\nA1,3\n")
    assert _read(path, format="csv", columns=["sku", "qty"])[0].fields == {"sku": "A1", "qty": "3"}
    with pytest.raises(FileParseError, match="header has 2 columns but 3"):
        _read(path, format="csv", columns=["sku", "qty", "extra"])


def test_csv_rename(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.csv", "Artikel, Menge \nA1,3\n")
    records = _read(path, format="csv", rename={"Artikel": "sku", "Menge": "qty"})
    assert records[0].fields == {"sku": "A1", "qty": "3"}


def test_csv_wrong_column_count_is_a_record_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "w.csv", "a,b,c,d\n1,2,3,4\n5,6,7\n8,9,10,11\n")
    records = _read(path, format="csv")
    assert [r.error for r in records] == [None, "expected 4 columns, got 3", None]
    assert records[1].raw == "5,6,7"
    assert records[1].number == 2
    assert records[2].fields == {"a": "8", "b": "9", "c": "10", "d": "11"}


def test_csv_quoted_fields_with_delimiters_and_newlines(tmp_path: Path) -> None:
    content = 'id,note,amount\n1,"Hello, world","1,5"\n2,"line one\nline two","say ""hi"""\n'
    records = _read(_write(tmp_path, "q.csv", content), format="csv")
    assert records[0].fields == {"id": "1", "note": "Hello, world", "amount": "1,5"}
    assert records[1].fields == {"id": "2", "note": "line one\nline two", "amount": 'say "hi"'}
    assert records[1].raw == '2,"line one\nline two","say ""hi"""'
    assert [r.number for r in records] == [1, 2]


def test_csv_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "b.csv", "a,b\n\n1,2\n   \n3,4\n")
    assert [r.fields["a"] for r in _read(path, format="csv")] == ["1", "3"]
    kept = _read(path, format="csv", skip_blank_lines=False)
    assert [r.error for r in kept] == ["expected 2 columns, got 0", None, "expected 2 columns, got 1", None]


def test_csv_utf8_decode_failure_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", "id,city\n1,Berlin\n2,München\n", encoding="latin-1")
    records = read_records(path, FormatOptions(format="csv"))
    assert next(records).fields == {"id": "1", "city": "Berlin"}  # good lines before it still come
    with pytest.raises(FileParseError, match="line 3"):
        next(records)


def test_csv_empty_file_has_no_header(tmp_path: Path) -> None:
    with pytest.raises(FileParseError, match="missing header"):
        _read(_write(tmp_path, "e.csv", ""), format="csv")


def test_csv_duplicate_columns_after_rename(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(FileParseError, match="duplicate"):
        _read(path, format="csv", rename={"b": "a"})


def test_large_csv_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("id,value\n")
        fh.writelines(f"{i},v{i}\n" for i in range(200_000))
    records = read_records(path, FormatOptions(format="csv"))
    assert isinstance(records, types.GeneratorType)
    assert next(records).fields == {"id": "0", "value": "v0"}
    count = 1
    last = None
    for record in records:
        count += 1
        last = record
    assert count == 200_000
    assert last is not None and last.number == 200_000 and last.fields["id"] == "199999"


# --------------------------------------------------------------------------- JSON / NDJSON


def test_json_top_level_array(tmp_path: Path) -> None:
    data = [{"id": 1, "price": 9.5, "tags": ["a"]}, {"id": 2, "price": None, "ok": True}]
    records = _read(_write(tmp_path, "a.json", json.dumps(data)), format="json")
    assert [r.fields for r in records] == data
    assert json.loads(records[0].raw) == data[0]
    assert [r.number for r in records] == [1, 2]


def test_json_record_path(tmp_path: Path) -> None:
    doc = {"meta": {"count": 2}, "data": {"items": [{"sku": "A", "qty": 3}, {"sku": "B", "qty": 4}]}}
    path = _write(tmp_path, "p.json", json.dumps(doc))
    records = _read(path, format="json", record_path="data.items", rename={"qty": "quantity"})
    assert [r.fields for r in records] == [{"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 4}]
    with pytest.raises(FileParseError, match="no key 'data.rows'"):
        _read(path, format="json", record_path="data.rows")
    with pytest.raises(FileParseError, match="expected an array at the top level"):
        _read(path, format="json")


def test_json_non_object_element_is_a_record_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "n.json", '[{"id": 1}, 42, "x", {"id": 2}]')
    records = _read(path, format="json")
    assert [r.error for r in records] == [
        None,
        "record is not a JSON object (got number)",
        "record is not a JSON object (got string)",
        None,
    ]
    assert records[1].raw == "42"
    assert records[3].fields == {"id": 2}


def test_json_invalid_document(tmp_path: Path) -> None:
    with pytest.raises(FileParseError, match="invalid JSON at line 2"):
        _read(_write(tmp_path, "bad.json", '[{"id": 1},\n {"id": }]'), format="json")


def test_ndjson_bad_line_continues(tmp_path: Path) -> None:
    content = '{"id": 1, "n": 2.5}\n{not json}\n\n[1, 2]\n{"id": 3}\n'
    records = _read(_write(tmp_path, "a.ndjson", content), format="ndjson")
    assert [r.number for r in records] == [1, 2, 3, 4]
    assert records[0].fields == {"id": 1, "n": 2.5}
    assert records[1].error is not None and records[1].error.startswith("invalid JSON")
    assert records[1].raw == "{not json}"
    assert records[2].error == "record is not a JSON object (got array)"
    assert records[3].fields == {"id": 3} and records[3].error is None


def test_ndjson_crlf_and_bom(tmp_path: Path) -> None:
    path = _write(tmp_path, "b.ndjson", '\ufeff{"a": "ü"}\r\n{"a": "ß"}\r\n')
    assert [r.fields for r in _read(path, format="ndjson")] == [{"a": "ü"}, {"a": "ß"}]


def test_json_key_twice_fails_the_file_and_an_ndjson_record_is_refused(tmp_path: Path) -> None:
    """Plain json keeps the last of two equal keys: that would drop a value without a word."""
    doc = '{"orders": [{"id": 1, "lines": [{"sku": "A", "sku": "B"}]}]}'
    with pytest.raises(FileParseError, match=r"d.json: an object has the key 'sku' twice"):
        _read(_write(tmp_path, "d.json", doc), format="json", record_path="orders")
    records = _read(_write(tmp_path, "d.ndjson", '{"id": 1}\n{"id": 2, "id": 3}\n'), format="ndjson")
    assert [(r.fields, r.error) for r in records] == [
        ({"id": 1}, None),
        ({}, "an object has the key 'id' twice (one value would be lost)"),
    ]


# --------------------------------------------------------------------------- XML

ORDERS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<export>
  <header><created>2024-01-01</created></header>
  <orders>
    <order id="A-1" status="new">
      <sku>X1</sku>
      <qty>3</qty>
      <status>shipped</status>
      <address><city>Köln</city></address>
    </order>
    <order id="A-2"><sku>X2</sku><qty>5</qty><empty/></order>
  </orders>
</export>
"""


def test_xml_record_path_with_attributes_and_children(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.xml", ORDERS_XML)
    records = _read(path, format="xml", record_path="orders/order", rename={"qty": "quantity"})
    assert records[0].fields == {
        "id": "A-1",
        "@status": "new",  # the record's attribute keeps its "@" where a child element has the name
        "status": "shipped",
        "sku": "X1",
        "quantity": "3",
        "address": {"city": "Köln"},
    }
    assert records[1].fields == {"id": "A-2", "sku": "X2", "quantity": "5", "empty": ""}
    assert [r.number for r in records] == [1, 2]
    assert records[1].raw == '<order id="A-2"><sku>X2</sku><qty>5</qty><empty /></order>'
    # The root may also be spelled out in the path.
    assert len(_read(path, format="xml", record_path="export/orders/order")) == 2
    # A rename written for the dotted names nested elements used to get still finds its value.
    (first, _) = _read(path, format="xml", record_path="orders/order", rename={"address.city": "city"})
    assert first.fields["city"] == "Köln" and first.fields["address"] == {"city": "Köln"}


def test_xml_direct_children_and_namespaces(tmp_path: Path) -> None:
    xml = '<r:rows xmlns:r="urn:x"><r:row r:n="1"><r:v>a</r:v></r:row><r:row n="2"><r:v>b</r:v></r:row></r:rows>'
    records = _read(_write(tmp_path, "n.xml", xml), format="xml", record_path="row")
    assert [r.fields for r in records] == [{"n": "1", "v": "a"}, {"n": "2", "v": "b"}]


DOCUMENTS = Path(__file__).parents[1] / "data" / "documents"


def _xml_values(elem: Any) -> list[str]:
    """Every attribute value and non-blank text of an element tree (what a reader must not drop)."""
    values = [*elem.attrib.values()]
    values += [t for t in (elem.text, *(c.tail for c in elem)) if t and t.strip()]
    for child in elem:
        values += _xml_values(child)
    return values


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value] if value.strip() else []


@pytest.mark.parametrize(
    ("name", "record_path"), [("purchase_order.xml", "order"), ("ubl_invoice.xml", "Invoice")]
)
def test_xml_documents_lose_nothing(name: str, record_path: str) -> None:
    """Every attribute and text of a realistic document reaches the record, and at its documented key."""
    import xml.etree.ElementTree as ET
    from collections import Counter

    path = DOCUMENTS / name
    (record,) = _read(path, format="xml", record_path=record_path)
    (element,) = ET.parse(path).getroot()
    assert Counter(_leaves(record.fields)) == Counter(_xml_values(element))
    if name == "purchase_order.xml":
        assert record.fields == {
            "id": "PO-1",
            "customer": "ACME",
            "line": [{"sku": "A-1", "qty": "2"}, {"sku": "B-2", "qty": "5"}],
        }
        return
    fields = record.fields
    assert fields["DocumentCurrencyCode"] == {"@listID": "ISO 4217", "#text": "EUR"}
    # Two notes share a local name in different namespaces: both kept, told apart by the document's prefixes.
    assert fields["cbc:Note"] == "Thank you for your order"
    assert fields["ext:Note"] == "internal: priority customer"
    assert fields["LegalMonetaryTotal"]["PayableAmount"] == {"@currencyID": "EUR", "#text": "142.50"}
    lines = fields["InvoiceLine"]
    assert [line["Item"]["SellersItemIdentification"]["ID"] for line in lines] == ["W-100", "G-7"]
    assert lines[1]["InvoicedQuantity"] == {"@unitCode": "KGM", "#text": "1.5"}


def test_xml_default_namespace_and_a_prefixed_one_sharing_a_name(tmp_path: Path) -> None:
    xml = '<o xmlns="urn:a" xmlns:b="urn:b"><r><id>1</id><b:id>2</b:id><v b:id="3" id="4"/></r></o>'
    (record,) = _read(_write(tmp_path, "ns.xml", xml), format="xml", record_path="r")
    assert record.fields == {"id": "1", "b:id": "2", "v": {"@b:id": "3", "@id": "4"}}


def test_xml_mixed_content_fails_the_file_instead_of_losing_order(tmp_path: Path) -> None:
    xml = "<o><r><n>1</n><note>see <b>this</b> first</note></r></o>"
    with pytest.raises(FileParseError, match=r"record 1: element r/note mixes text with child elements"):
        _read(_write(tmp_path, "mixed.xml", xml), format="xml", record_path="r")
    # Text beside only blank formatting is an element's #text, not mixed content.
    (record,) = _read(
        _write(tmp_path, "t.xml", "<o><r>\n  <n>1</n>\n  text\n</r></o>"), format="xml", record_path="r"
    )
    assert record.fields == {"n": "1", "#text": "\n  text\n"}


def test_xml_nesting_beyond_the_limit_fails_the_file(tmp_path: Path) -> None:
    from b2b_integrations.formats.readers import XML_MAX_DEPTH

    deep = "<a>" * (XML_MAX_DEPTH + 1) + "x" + "</a>" * (XML_MAX_DEPTH + 1)
    with pytest.raises(FileParseError, match=f"nest deeper than {XML_MAX_DEPTH} levels"):
        _read(_write(tmp_path, "deep.xml", f"<o><r>{deep}</r></o>"), format="xml", record_path="r")


def test_xml_latin1_declared_encoding(tmp_path: Path) -> None:
    xml = '<?xml version="1.0" encoding="ISO-8859-1"?><rows><row><city>Düsseldorf</city></row></rows>'
    records = _read(_write(tmp_path, "l.xml", xml, encoding="latin-1"), format="xml", record_path="row")
    assert records[0].fields == {"city": "Düsseldorf"}


def test_xml_doctype_rejected(tmp_path: Path) -> None:
    xml = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\n'
        "<rows><row><v>&lol2;</v></row></rows>"
    )
    with pytest.raises(FileParseError, match="DOCTYPE not allowed"):
        _read(_write(tmp_path, "d.xml", xml), format="xml", record_path="row")


def test_xml_malformed(tmp_path: Path) -> None:
    xml = "<rows>\n<row><v>1</v></row>\n<row><v>2</row>\n</rows>"
    with pytest.raises(FileParseError, match="malformed XML at line 3"):
        _read(_write(tmp_path, "m.xml", xml), format="xml", record_path="row")
    with pytest.raises(FileParseError, match="malformed XML"):
        _read(_write(tmp_path, "t.xml", "this is not xml"), format="xml", record_path="row")


def test_xml_record_path_without_match(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.xml", ORDERS_XML)
    with pytest.raises(FileParseError, match="no element matches record_path 'orders/ordr'"):
        _read(path, format="xml", record_path="orders/ordr")
    with pytest.raises(FileParseError, match="no element matches"):
        _read(path, format="xml", record_path="invoices/invoice")
    # An empty container is a legitimately empty file, not a configuration error.
    assert _read(_write(tmp_path, "e.xml", "<orders/>"), format="xml", record_path="order") == []


# --------------------------------------------------------------------------- Excel


def _workbook(tmp_path: Path) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    first = wb.active
    first.title = "Summary"
    first.append(["note"])
    first.append(["ignore me"])
    orders = wb.create_sheet("Orders")
    orders.append(["sku", "qty", "price", "ordered"])
    orders.append(["A1", 3, 9.5, datetime(2024, 1, 15, 10, 30)])
    orders.append([None, None, None, None])
    orders.append(["A2", 5, None, None])
    orders.append([])
    orders.append(["A3", 7, 1.25, None])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    return path


def test_xlsx_sheet_by_name_and_index(tmp_path: Path) -> None:
    path = _workbook(tmp_path)
    by_name = _read(path, format="xlsx", sheet="Orders")
    by_index = _read(path, format="xlsx", sheet=1)
    assert [r.fields for r in by_name] == [r.fields for r in by_index]
    assert [r.fields for r in by_name] == [
        {"sku": "A1", "qty": 3, "price": 9.5, "ordered": datetime(2024, 1, 15, 10, 30)},
        {"sku": "A2", "qty": 5, "price": None, "ordered": None},
        {"sku": "A3", "qty": 7, "price": 1.25, "ordered": None},
    ]
    assert [r.number for r in by_name] == [1, 2, 3]
    assert json.loads(by_name[1].raw) == {"sku": "A2", "qty": 5, "price": None, "ordered": None}
    assert [r.fields for r in _read(path, format="xlsx")] == [{"note": "ignore me"}]


def test_xlsx_without_header_and_rename(tmp_path: Path) -> None:
    path = _workbook(tmp_path)
    records = _read(
        path, format="xlsx", sheet="Orders", header=False, columns=["a", "b", "c", "d"], rename={"a": "sku"}
    )
    assert records[0].fields == {"sku": "sku", "b": "qty", "c": "price", "d": "ordered"}
    assert len(records) == 4


def test_xlsx_missing_sheet_and_bad_file(tmp_path: Path) -> None:
    path = _workbook(tmp_path)
    with pytest.raises(FileParseError, match="sheet 'Nope' not found"):
        _read(path, format="xlsx", sheet="Nope")
    with pytest.raises(FileParseError, match="no sheet at index 5"):
        _read(path, format="xlsx", sheet=5)
    with pytest.raises(FileParseError, match="not a readable .xlsx"):
        _read(_write(tmp_path, "fake.xlsx", "id,name\n"), format="xlsx")


# --------------------------------------------------------------------------- options


def test_options_from_dict_ok() -> None:
    opts = options_from_dict({"format": "tsv", "encoding": "latin-1", "rename": {"a": "b"}})
    assert opts.effective_delimiter == "\t"
    assert opts.text_encoding == "latin-1"
    assert options_from_dict({"format": "csv"}).text_encoding == "utf-8-sig"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "csv", "delimter": ";"}, "unknown format option"),
        ({"encoding": "utf-8"}, "need 'format'"),
        ({"format": "parquet"}, "format must be one of"),
        ({"format": "csv", "encoding": "klingon"}, "unknown encoding"),
        ({"format": "csv", "delimiter": ";;"}, "delimiter must be a single character"),
        ({"format": "csv", "header": "no"}, "header must be true or false"),
        ({"format": "csv", "header": False}, "columns are required"),
        ({"format": "csv", "columns": "a,b"}, "columns must be a list"),
        ({"format": "xml"}, "record_path is required"),
        ({"format": "xlsx", "sheet": -1}, "sheet index must be >= 0"),
        ({"format": "xlsx", "sheet": 1.5}, "sheet must be"),
        ("csv", "must be a mapping"),
    ],
)
def test_options_from_dict_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options_from_dict(data)
