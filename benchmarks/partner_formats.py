"""What reading European dates and numbers costs the file import's parsing and validation (no SFTP, no DB).

The same rows are written twice: in ISO form (``2026-12-03;1234.5``) and as partner files write them
(``03.12.2026;1.234,50``, with ``format`` and separators in the schema). Each file is read on the Arrow fast
path (``read_columnar``, CSV for COPY produced) and on the record path (``read_records`` +
``validate_record``). The floor is the ISO file on the same path: the extra cost is converting the forms.

    .venv/bin/python benchmarks/partner_formats.py --rows 500000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from b2b_integrations.formats.columnar import read_columnar
from b2b_integrations.formats.readers import options_from_dict, read_records
from b2b_integrations.formats.validation import schema_from_dict, validate_record

FIELDS: list[dict[str, Any]] = [
    {"name": "order_id", "type": "string", "required": True},
    {"name": "day", "type": "date", "required": True},
    {"name": "qty", "type": "integer"},
    {"name": "amount", "type": "number"},
]
EUROPEAN = {
    "decimal_separator": ",",
    "thousands_separator": ".",
    "fields": [{**f, "format": "%d.%m.%Y"} if f["type"] == "date" else f for f in FIELDS],
}


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(7)
    iso, european = ["order_id;day;qty;amount"], ["order_id;day;qty;amount"]
    for i in range(rows):
        day, month = rng.randint(1, 28), rng.randint(1, 12)
        qty, cents = rng.randint(1, 5000), rng.randint(0, 99_999_999)
        units, frac = divmod(cents, 100)
        iso.append(f"O-{i};2026-{month:02d}-{day:02d};{qty};{units}.{frac:02d}")
        european.append(f"O-{i};{day:02d}.{month:02d}.2026;{_grouped(qty)};{_grouped(units)},{frac:02d}")
    paths = folder / "iso.csv", folder / "european.csv"
    for path, lines in zip(paths, (iso, european), strict=True):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def _grouped(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def fast(path: Path, schema: Any) -> tuple[float, int, int]:
    fmt = options_from_dict({"format": "csv", "delimiter": ";"})
    start, accepted, suspects = time.perf_counter(), 0, 0
    for batch in read_columnar(path, fmt, schema):
        batch.csv(numbered=True)
        accepted += batch.accepted
        suspects += len(batch.suspects)
    return time.perf_counter() - start, accepted, suspects


def record(path: Path, schema: Any) -> tuple[float, int, int]:
    fmt = options_from_dict({"format": "csv", "delimiter": ";"})
    start, good, bad = time.perf_counter(), 0, 0
    for raw in read_records(path, fmt):
        clean, _ = validate_record(raw.fields, schema)
        good, bad = (good + 1, bad) if clean is not None else (good, bad + 1)
    return time.perf_counter() - start, good, bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the lowest time is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        iso, european = write_files(Path(tmp), args.rows)
        schemas = {iso: schema_from_dict({"fields": FIELDS}), european: schema_from_dict(EUROPEAN)}
        print(f"{args.rows:,} rows, lowest of {args.repeat} runs")
        print(f"{'case':<34}{'seconds':>9}{'rows/s':>12}  checked (ok, sent on / bad)")
        for name, reader in (("fast path", fast), ("record path", record)):
            for path in (iso, european):
                runs = [reader(path, schemas[path]) for _ in range(args.repeat)]
                seconds, ok, other = min(runs)
                label = f"{name}, {path.stem}" + (" (floor)" if path is iso else "")
                print(f"{label:<34}{seconds:>9.2f}{args.rows / seconds:>12,.0f}  {ok:,}, {other:,}")


if __name__ == "__main__":
    main()
