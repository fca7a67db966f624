"""Demo CRM seeding speed: how long ``seed_records`` takes to make the demo's data sets.

The demo CRM (include/demo/crm_app.py) seeds its records at start-up, so this is part of the demo's start
time. Its tests check what seeding produces; how fast it is is measured here, never asserted in a test
(a busy machine would fail a timed test for no fault of the code).
Run: .venv/bin/python benchmarks/demo_seed.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "include" / "demo" / "crm_app.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("demo_crm_app", APP)
    assert spec is not None and spec.loader is not None
    crm_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crm_app)
    anchor = 1_767_225_600  # 2026-01-01T00:00:00Z, as the tests use
    for kind in ("contacts", "invoices"):
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            records = crm_app.seed_records(kind, args.rows, anchor=anchor)
            times.append(time.perf_counter() - started)
        # The figure is only worth printing when the work was done: every record, ids 1..N in order.
        if len(records) != args.rows or records[-1]["id"] != args.rows:
            raise SystemExit(f"{kind}: seeding produced {len(records)} records, last id {records[-1]['id']}")
        print(
            f"{kind}: {args.rows:,} records  median {statistics.median(times):.2f} s  "
            f"min {min(times):.2f} s  max {max(times):.2f} s  ({args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
