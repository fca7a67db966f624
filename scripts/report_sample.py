"""Render the sample report page shown in docs/patterns/scheduled_file_export.md (docs/images/report_page.png).

The invoice_reports template's render options, 120 made-up invoices of a customer with a non-ASCII name;
the PDF's first page is rasterised with pdftoppm (Debian package poppler-utils).
Run: .venv/bin/python scripts/report_sample.py
"""

from __future__ import annotations

import random
import subprocess
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml

from b2b_integrations.reports.config import report_spec_from_config
from b2b_integrations.reports.render import render_report
from b2b_integrations.reports.spec import ReportMeta

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    template = yaml.safe_load((REPO / "include/integrations/invoice_reports.yaml").read_text())
    render = template["flows"]["monthly_pdf"]["steps"][0]["render"]
    rng = random.Random(7)
    rows = [
        {
            "number": f"INV-2026-{i:04d}",
            "company_id": rng.randint(1, 12),
            "status": rng.choice(["paid", "paid", "open", "draft"]),
            "currency": "EUR",
            "amount": round(rng.uniform(40, 4000), 2),
            "issued_on": date(2026, 10, 1) + timedelta(days=i % 31),
        }
        for i in range(1, 121)
    ]
    spec = report_spec_from_config("pdf", render)
    meta = ReportMeta(
        "Ærøskøbing Süßwaren GmbH", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    )
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "sample.pdf"
        render_report(spec, [pd.DataFrame(rows)], pdf, meta)
        out = REPO / "docs/images/report_page"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out)],
            check=True,
        )
    print(f"wrote {out}.png")


if __name__ == "__main__":
    main()
