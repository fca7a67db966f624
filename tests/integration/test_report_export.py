"""report_export against a real PostgreSQL: bound parameters, empty periods, re-runs, staged input, a DAG run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from b2b_integrations.operators.report_export import ReportExportOperator, report_path
from b2b_integrations.staging import stage_path, write_records
from helpers import PG, REPO, pg_rows, write_include

NOVEMBER = (pendulum.datetime(2026, 11, 1, tz="UTC"), pendulum.datetime(2026, 12, 1, tz="UTC"))
JANUARY = (pendulum.datetime(2027, 1, 1, tz="UTC"), pendulum.datetime(2027, 2, 1, tz="UTC"))
SQL = (
    "SELECT invoice_no, customer_name, region, amount, paid_at, paid_on FROM invoices "
    "WHERE customer_id = :customer_id AND region = :region "
    "AND paid_at >= :period_start AND paid_at < :period_end ORDER BY invoice_no"
)
RENDER = {
    "title": "Paid invoices",
    "columns": [
        {"name": "invoice_no", "label": "Invoice"},
        {"name": "customer_name", "label": "Customer"},
        {"name": "region", "label": "Region"},
        {"name": "amount", "label": "Amount", "decimals": 2},
        {"name": "paid_at", "label": "Paid at"},
        {"name": "paid_on", "label": "Paid on"},
    ],
    "summary": [
        {"label": "Invoices", "op": "count"},
        {"label": "Total", "op": "sum", "column": "amount", "decimals": 2},
    ],
}
CONTRACT_KEYS = {
    "file", "name", "format", "content_type", "rows", "bytes", "sha256", "report", "period", "period_start",
    "period_end", "empty", "summary",
}  # fmt: skip


@pytest.fixture
def app_db(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The customer's application database with invoices in October-November 2026, via a connection whose
    URL carries a password (trust auth ignores it; it must never show in a message)."""
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "DROP TABLE IF EXISTS invoices; CREATE TABLE invoices (invoice_no TEXT PRIMARY KEY, "
            "customer_id TEXT, customer_name TEXT, region TEXT, amount NUMERIC(12, 2), paid_at TIMESTAMPTZ, "
            "paid_on DATE)"
        )
        rows = []
        for i in range(120):
            month = 10 + i % 2  # October and November
            day = 1 + i % 28
            rows.append(
                (
                    f"INV-{i:04d}", "acme" if i % 5 else "globex", ("Zoë Łukasz", "Gößling ğ ø")[i // 2 % 2],
                    ("eu", "us", "eu")[i % 3], f"{10 + i * 1.25:.2f}",
                    f"2026-{month:02d}-{day:02d}T{i % 24:02d}:15:00Z", f"2026-{month:02d}-{day:02d}",
                )
            )  # fmt: skip
        # the edge: exactly at the period end belongs to the next period
        rows.append(("INV-EDGE", "acme", "Edge", "eu", "1.00", "2026-12-01T00:00:00Z", "2026-12-01"))
        cur.executemany("INSERT INTO invoices VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    monkeypatch.setenv(
        "AIRFLOW_CONN_REPORT_APP_DB", f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/{pg_db}"
    )
    yield pg_db


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def context(interval: tuple[Any, Any], **extra: Any) -> dict[str, Any]:
    start, end = interval
    return {
        "data_interval_start": start,
        "data_interval_end": end,
        "logical_date": start,
        "ds": start.format("YYYY-MM-DD"),
        "run_id": f"scheduled__{start.isoformat()}",
        "params": {},
        **extra,
    }


def operator(**overrides: Any) -> ReportExportOperator:
    arguments: dict[str, Any] = {
        "task_id": "render",
        "customer_id": "acme",
        "integration": "billing",
        "flow": "monthly",
        "report": "paid_invoices",
        "report_format": "csv",
        "source": {"sql": SQL, "parameters": {"region": "eu"}, "chunk_rows": 7},
        "db_conn_id": "report_app_db",
        "customer_name": "Acme Łódź",
        "render": RENDER,
        **overrides,
    }
    return ReportExportOperator(**arguments)


def expected(pg_db: str, region: str, start: str, end: str) -> list[tuple[Any, ...]]:
    return pg_rows(
        pg_db,
        "SELECT invoice_no, amount FROM invoices WHERE customer_id = 'acme' AND region = "
        f"'{region}' AND paid_at >= '{start}' AND paid_at < '{end}' ORDER BY invoice_no",
    )


def read_csv(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def test_query_binds_the_period_customer_and_parameters(app_db: str, data_dir: Path) -> None:
    result = operator().execute(context(NOVEMBER))
    want = expected(app_db, "eu", "2026-11-01", "2026-12-01")
    everyone = pg_rows(
        app_db, "SELECT count(*) FROM invoices WHERE paid_at >= '2026-11-01' AND region = 'eu'"
    )
    assert 10 < len(want) < everyone[0][0]  # other customers and regions have rows in the period too
    rows = read_csv(result["file"])
    assert [(r["Invoice"], r["Amount"]) for r in rows] == [(no, f"{amount:.2f}") for no, amount in want]
    assert {r["Region"] for r in rows} == {"eu"} and "INV-EDGE" not in {r["Invoice"] for r in rows}
    assert all(r["Paid at"].startswith("2026-11-") and r["Paid at"].endswith("Z") for r in rows)
    assert {r["Customer"] for r in rows} == {"Zoë Łukasz", "Gößling ğ ø"}
    content = Path(result["file"]).read_bytes()
    assert set(result) == CONTRACT_KEYS
    assert result == {
        "file": str(report_path("acme", "billing", "paid_invoices", "acme_paid_invoices_2026-11-01.csv")),
        "name": "acme_paid_invoices_2026-11-01.csv",
        "format": "csv",
        "content_type": "text/csv",
        "rows": len(want),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "report": "paid_invoices",
        "period": "2026-11-01",
        "period_start": "2026-11-01T00:00:00+00:00",
        "period_end": "2026-12-01T00:00:00+00:00",
        "empty": False,
        "summary": {"Invoices": len(want), "Total": round(float(sum(a for _, a in want)), 2)},
    }
    assert Path(result["file"]).is_relative_to(data_dir / "reports" / "acme" / "billing" / "paid_invoices")
    json.dumps(result)  # XCom-safe


def test_parameter_values_are_bound_never_spliced_into_the_sql(app_db: str) -> None:
    sneaky = {"sql": SQL, "parameters": {"region": "eu' OR '1'='1"}}
    result = operator(source=sneaky).execute(context(NOVEMBER))
    assert (result["rows"], result["empty"]) == (0, True)
    assert Path(result["file"]).read_text().splitlines() == ["Invoice,Customer,Region,Amount,Paid at,Paid on"]


def test_empty_period_send_renders_a_pdf_saying_so(app_db: str) -> None:
    from pypdf import PdfReader

    op = operator(report_format="pdf", empty="send", empty_note="No invoices were paid in this period.")
    result = op.execute(context(JANUARY))
    assert (result["rows"], result["empty"], result["content_type"]) == (0, True, "application/pdf")
    text = PdfReader(result["file"]).pages[0].extract_text()
    assert "No data for this period." in text and "No invoices were paid in this period." in text
    assert "Acme Łódź" in text and "Period: 2027-01-01 – 2027-01-31" in text


def test_empty_period_skip_skips_and_removes_the_stale_file(app_db: str) -> None:
    import psycopg2

    op = operator(empty="skip", file_name="{customer}_{report}_{period_start:%Y-%m}.csv")
    first = op.execute(context(NOVEMBER))
    assert first["rows"] > 0 and Path(first["file"]).exists()
    with psycopg2.connect(f"{PG}/{app_db}") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM invoices WHERE paid_at >= '2026-11-01' AND paid_at < '2026-12-01'")
    with pytest.raises(AirflowSkipException, match=r"customer acme, report paid_invoices: no rows for period "
                       r"2026-11-01 – 2026-11-30 \(empty: skip\)"):  # fmt: skip
        op.execute(context(NOVEMBER))
    assert not Path(first["file"]).exists()


def test_rerun_of_a_period_replaces_its_file(app_db: str) -> None:
    import psycopg2

    first = operator(report_format="xlsx").execute(context(NOVEMBER))
    with psycopg2.connect(f"{PG}/{app_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO invoices VALUES ('INV-LATE', 'acme', 'Late', 'eu', 99.5, '2026-11-30T23:59:59Z', "
            "'2026-11-30')"
        )
    second = operator(report_format="xlsx").execute(context(NOVEMBER))
    assert (second["file"], second["name"]) == (first["file"], first["name"])
    assert second["rows"] == first["rows"] + 1 and second["sha256"] != first["sha256"]
    assert [p.name for p in Path(second["file"]).parent.iterdir()] == [second["name"]]  # one file, no temp


def test_calendar_period_for_a_cron_trigger_run_and_a_clear_error_without_one(app_db: str) -> None:
    run = pendulum.datetime(2026, 12, 1, 6, tz="UTC")  # CronTriggerTimetable: a zero-length interval
    result = operator(period="month").execute(context((run, run)))
    assert (result["period_start"], result["period_end"]) == (
        "2026-11-01T00:00:00+00:00",
        "2026-12-01T00:00:00+00:00",
    )
    assert result["rows"] == len(expected(app_db, "eu", "2026-11-01", "2026-12-01"))
    with pytest.raises(AirflowFailException, match="create_cron_data_intervals"):
        operator().execute(context((run, run)))


def test_config_refs_are_resolved_from_the_run_params(app_db: str) -> None:
    refs = {"source": {"sql": SQL, "parameters": {"region": "${config.region}"}, "chunk_rows": 50}}
    op = operator(config_refs=refs)
    ctx = context(NOVEMBER, params={"region": "us"})
    op.render_template_fields(ctx)  # type: ignore[arg-type]
    result = op.execute(ctx)  # type: ignore[arg-type]
    assert {r["Region"] for r in read_csv(result["file"])} == {"us"}
    assert result["rows"] == len(expected(app_db, "us", "2026-11-01", "2026-12-01"))


def test_failing_query_is_fatal_and_names_report_and_connection_not_the_password(app_db: str) -> None:
    broken = {
        "sql": "SELECT no_such_column FROM invoices WHERE region = :region",
        "parameters": {"region": "eu"},
    }
    with pytest.raises(AirflowFailException) as failure:
        operator(source=broken).execute(context(NOVEMBER))
    message = str(failure.value)
    assert "customer acme, integration billing, flow monthly, step render" in message
    assert (
        "report 'paid_invoices': the query on connection 'report_app_db' failed: UndefinedColumn" in message
    )
    assert "s3cret" not in message


class _Upstream:
    """What the task instance does for a step with an upstream step: hand over that step's XCom value."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def xcom_pull(self, task_ids: str) -> dict[str, Any]:
        assert task_ids == "collect"
        return self.value


def test_staged_records_are_the_data_when_there_is_no_source(data_dir: Path) -> None:
    import pandas as pd
    from openpyxl import load_workbook

    frame = pd.DataFrame(
        {
            "sku": [f"SKU-{i:03d}" for i in range(130)],
            "name": [("Bürste ß", "Łopata ğ", "Skøyte é")[i % 3] for i in range(130)],
            "on_hand": [i % 17 for i in range(130)],
            "as_of": ["2026-11-03"] * 130,
        }
    )
    ctx = context(NOVEMBER)
    ref = write_records(frame, stage_path("acme", "billing", "monthly", ctx["run_id"], "collect"))
    op = operator(
        source=None,
        db_conn_id=None,
        input_task_id="collect",
        report_format="xlsx",
        transform="b2b_integrations.transforms.common.select_columns",
        transform_options={"columns": ["sku", "article", "on_hand", "as_of"], "rename": {"name": "article"}},
        render={
            "columns": [
                "sku",
                "article",
                {"name": "on_hand", "type": "integer"},
                {"name": "as_of", "type": "date"},
            ],
            "summary": [{"label": "Units", "op": "sum", "column": "on_hand"}],
        },
    )
    result = op.execute({**ctx, "ti": _Upstream(dict(ref))})
    assert (result["rows"], result["summary"]) == (130, {"Units": int(frame["on_hand"].sum())})
    rows = list(load_workbook(result["file"]).active.iter_rows(values_only=True))
    assert rows[0] == ("sku", "article", "on_hand", "as_of")
    assert rows[2] == ("SKU-001", "Łopata ğ", 1, pendulum.datetime(2026, 11, 3).naive())
    assert len(rows) == 131


def test_transform_outside_the_allowed_packages_is_refused(data_dir: Path) -> None:
    with pytest.raises(AirflowFailException, match=r"transform 'os.system' is outside the allowed packages"):
        operator(source=None, input_task_id="collect", transform="os.system").execute(
            {**context(NOVEMBER), "ti": _Upstream({"path": "/nonexistent", "rows": 0, "columns": []})}
        )


# ----------------------------------------------------------------------------------- a real DAG run

TEMPLATE: dict[str, Any] = {
    "name": "billing",
    "config": {"region": {"type": "string", "default": "eu", "choices": ["eu", "us"]}},
    "connections": {"app_db": {"type": "postgres"}},
    "flows": {
        "monthly": {
            "trigger": {"type": "schedule", "schedule": "0 6 1 * *"},
            "steps": [
                {
                    "id": "render",
                    "kind": "report_export",
                    "report": "paid_invoices",
                    "format": "pdf",
                    "file_name": "{customer}_{report}_{period_start:%Y-%m}.pdf",
                    "period": "month",
                    "source": {
                        "connection": "app_db",
                        "sql": SQL,
                        "parameters": {"region": "${config.region}"},
                    },
                    "render": {
                        **RENDER,
                        "chart": {"type": "bar", "category": "customer_name", "value": "amount"},
                    },
                }
            ],
        },
        "stock": {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "collect",
                    "kind": "transform",
                    "callable": "b2b_integrations.transforms.demo.generate_inventory",
                    "options": {"warehouse": "${customer.id}", "sku_count": 25, "as_of": "{{ ds }}"},
                },
                {"id": "render", "kind": "report_export", "report": "stock", "format": "csv"},
            ],
        },
    },
}


@pytest.mark.e2e
def test_generated_dags_render_reports_in_real_runs(
    airflow_db: str, app_db: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    customer = {
        "id": "acme",
        "name": "Acme Łódź",
        "integrations": {"billing": {"config": {"region": "us"}, "connections": {"app_db": "report_app_db"}}},
    }
    include = write_include(tmp_path / "include", {"billing": TEMPLATE}, {"acme": customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}

    run = bag.dags["acme__billing__monthly"].test(logical_date=pendulum.datetime(2026, 12, 1, 6, tz="UTC"))
    assert run.state == "success"
    (ti,) = run.get_task_instances()
    result = ti.xcom_pull(task_ids="render")
    assert result["name"] == "acme_paid_invoices_2026-11.pdf" and result["period"] == "2026-12-01"
    assert result["rows"] == len(expected(app_db, "us", "2026-11-01", "2026-12-01")) > 0
    assert Path(result["file"]).read_bytes()[:5] == b"%PDF-"

    stock = bag.dags["acme__billing__stock"].test()
    assert stock.state == "success"
    render = next(t for t in stock.get_task_instances() if t.task_id == "render")
    result = render.xcom_pull(task_ids="render")
    rows = read_csv(result["file"])
    assert (
        result["rows"] == len(rows) == 25
        and rows[0]["sku"] == "SKU-0001"
        and rows[0]["customer_id"] == "acme"
    )
    assert re.fullmatch(r"acme_stock_\d{4}-\d{2}-\d{2}\.csv", result["name"])


def test_report_path_is_safe_and_fixed() -> None:
    path = report_path("acme", "billing", "paid_invoices", "acme_paid_invoices_2026-11.pdf")
    assert path.parts[-5:] == (
        "reports",
        "acme",
        "billing",
        "paid_invoices",
        "acme_paid_invoices_2026-11.pdf",
    )
    assert report_path("a", "b", "c", "../x") == path.parents[3] / "a" / "b" / "c" / ".._x"
