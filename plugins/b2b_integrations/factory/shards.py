"""Customers spread over several DAG files (shards), and each shard's problems kept for the problems file.

One DAG file holding every customer's DAGs passes Airflow's import timeout somewhere past a few thousand
customers, and the dag-processor can give it only one core. ``B2B_SHARDS`` (default 1, at most
:data:`MAX_SHARDS`) spreads the customers over that many files: ``dags/b2b_integrations_dags.py`` is shard 0
(and holds our app's own DAGs), ``dags/b2b_integrations_shard_NN.py`` the others. A customer's shard is a
stable hash of its id (crc32, the same in every process and Python version), so adding or removing a
customer never moves another, and every DAG keeps its id whatever file holds it.

The problems file (``dags/b2b_config_problems.py``) must not parse every customer again: each shard's parse
leaves a report of its problems, stamped with a fingerprint of the files it read (name, size, mtime, inode
of the templates (and their other versions), ``app.yaml``, its customers' files and their last valid copies), and the problems file
uses a report whose fingerprint still matches the files, checking anew only the shards that changed since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from b2b_integrations import __version__
from b2b_integrations.config.last_valid import LastValidStore
from b2b_integrations.config.loader import (
    APP_FILE,
    CUSTOMERS_DIR,
    TEMPLATES_DIR,
    VERSIONS_KIND,
    version_files,
    yaml_files,
)
from b2b_integrations.errors import Problem
from b2b_integrations.staging import data_dir

log = logging.getLogger(__name__)

MAX_SHARDS = 16
"""How many shard files ``dags/`` ships (shard 0 plus ``b2b_integrations_shard_01.py`` .. ``_15.py``)."""
SHARD_FILE = "b2b_integrations_shard_{:02d}.py"
FIRST_FILE = "b2b_integrations_dags.py"


def shard_file(shard: int) -> str:
    return FIRST_FILE if shard == 0 else SHARD_FILE.format(shard)


def shard_count() -> tuple[int, str | None]:
    """``B2B_SHARDS`` and, when it is not a whole number in 1..MAX_SHARDS, the problem (with the count used)."""
    raw = os.environ.get("B2B_SHARDS", "").strip()
    if not raw:
        return 1, None
    try:
        count = int(raw)
    except ValueError:
        return 1, f"B2B_SHARDS={raw!r} is not a whole number; every customer is in one DAG file"
    if not 1 <= count <= MAX_SHARDS:
        used = min(max(count, 1), MAX_SHARDS)
        return (
            used,
            f"B2B_SHARDS={count} is outside 1..{MAX_SHARDS} (the shard files dags/ ships); using {used}",
        )
    return count, None


def shard_of(customer_id: str, count: int) -> int:
    return zlib.crc32(customer_id.encode()) % count if count > 1 else 0


# --- Shard size ---

CUSTOMERS_PER_SHARD = 1000
"""Default of ``B2B_MAX_CUSTOMERS_PER_SHARD``. A full parse of a shard costs about 25 ms per customer of
three flows (parse and serialization, measured on 2 cores, docs/ARCHITECTURE.md "Sharding"), so 1,000
customers keep a file near the 10 s parse the scale goals allow, a third of Airflow's import timeout."""


def max_customers_per_shard() -> tuple[int, str | None]:
    """``B2B_MAX_CUSTOMERS_PER_SHARD`` and, when it is not a whole number >= 1, the problem."""
    raw = os.environ.get("B2B_MAX_CUSTOMERS_PER_SHARD", "").strip()
    if not raw:
        return CUSTOMERS_PER_SHARD, None
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        return (
            CUSTOMERS_PER_SHARD,
            f"B2B_MAX_CUSTOMERS_PER_SHARD={raw!r} is not a whole number >= 1; using {CUSTOMERS_PER_SHARD}",
        )
    return limit, None


def customers_per_shard(include_dir: Path, count: int) -> dict[int, int]:
    """How many customer files each shard holds (file names only: nothing is opened)."""
    sizes = dict.fromkeys(range(count), 0)
    for path in yaml_files(include_dir / CUSTOMERS_DIR):
        sizes[shard_of(path.stem, count)] += 1
    return sizes


def oversized_shards(include_dir: Path, count: int) -> tuple[dict[int, Problem], list[Problem]]:
    """Shards holding more customers than ``B2B_MAX_CUSTOMERS_PER_SHARD``, each with the problem to show,
    and the problem of the setting itself, if any.

    A shard file whose parse passes Airflow's ``dagbag_import_timeout`` gets an import error, which makes
    every DAG in it stale; past ``dag_file_processor_timeout`` the dag-processor kills the parse and records
    nothing at all (seen at N = 10,000 in one file: no DAG, no import error). This count (file names only)
    warns before either happens, from the problems file, which stays cheap whatever N.
    """
    limit, setting_problem = max_customers_per_shard()
    sizes = customers_per_shard(include_dir, count)
    total = sum(sizes.values())
    # crc32 spreads customers unevenly by a few percent; a fifth of headroom keeps the largest under.
    needed = max(-(-total * 6 // (5 * limit)), count + 1)
    if needed <= MAX_SHARDS:
        advice = f"set B2B_SHARDS to {needed} (now {count})"
    else:
        advice = (
            f"{total} customers need {needed} or more shard files, more than the {MAX_SHARDS} dags/ ships: add "
            "shard files and raise MAX_SHARDS, or raise B2B_MAX_CUSTOMERS_PER_SHARD together with Airflow's "
            "dagbag_import_timeout and dag_file_processor_timeout"
        )
    oversized = {
        shard: Problem(
            shard_file(shard),
            "",
            f"holds {size} customers, more than B2B_MAX_CUSTOMERS_PER_SHARD={limit}: a parse of this file "
            "that passes Airflow's dagbag_import_timeout makes every DAG in it stale, and one killed at "
            f"dag_file_processor_timeout updates none of them without any import error; {advice}",
        )
        for shard, size in sizes.items()
        if size > limit
    }
    setting = [Problem("B2B_MAX_CUSTOMERS_PER_SHARD", "", setting_problem)] if setting_problem else []
    return oversized, setting


# --- Fingerprints and reports ---


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path.name}:-"
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def fingerprints(
    include_dir: Path, count: int, last_valid: LastValidStore | None, shards: Iterable[int] | None = None
) -> dict[int, str]:
    """Each shard's fingerprint: what its parse read, by stat only (no file is opened)."""
    wanted = set(range(count) if shards is None else shards)
    common = hashlib.sha256()
    env = (os.environ.get("B2B_TRANSFORM_PREFIXES", ""), str(last_valid.root) if last_valid else "off")
    common.update(repr((__version__, str(include_dir.resolve()), count, env)).encode())
    for path in [*yaml_files(include_dir / TEMPLATES_DIR), include_dir / APP_FILE]:
        common.update(_stamp(path).encode())
        if last_valid is not None:
            common.update(_stamp(last_valid.root / TEMPLATES_DIR / f"{path.stem}.yaml").encode())
    for path in version_files(include_dir):  # a template's other versions count as templates
        common.update(f"{path.parent.name}/{_stamp(path)}".encode())
        if last_valid is not None:
            copy = last_valid.root / VERSIONS_KIND / path.parent.name / f"{path.stem}.yaml"
            common.update(_stamp(copy).encode())
    per_shard = {shard: common.copy() for shard in wanted}
    for path in yaml_files(include_dir / CUSTOMERS_DIR):
        digest = per_shard.get(shard_of(path.stem, count))
        if digest is None:
            continue
        digest.update(_stamp(path).encode())
        if last_valid is not None:
            digest.update(_stamp(last_valid.root / CUSTOMERS_DIR / f"{path.stem}.yaml").encode())
    return {shard: digest.hexdigest() for shard, digest in per_shard.items()}


@dataclass(frozen=True)
class ShardReport:
    fingerprint: str
    problems: list[Problem]


class ReportStore:
    """``<B2B_DATA_DIR>/parse_reports/<include folder hash>/shard-<k>-of-<n>.json``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_dir() / "parse_reports"

    def _path(self, include_dir: Path, shard: int, count: int) -> Path:
        folder = hashlib.sha256(str(include_dir.resolve()).encode()).hexdigest()[:16]
        return self.root / folder / f"shard-{shard}-of-{count}.json"

    def read(self, include_dir: Path, shard: int, count: int) -> ShardReport | None:
        try:
            data = json.loads(self._path(include_dir, shard, count).read_text(encoding="utf-8"))
            problems = [Problem(p["file"], p["key_path"], p["message"], p["line"]) for p in data["problems"]]
            return ShardReport(str(data["fingerprint"]), problems)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, include_dir: Path, shard: int, count: int, report: ShardReport) -> None:
        """Never raises: without a report the problems file checks the shard itself."""
        path = self._path(include_dir, shard, count)
        data = {
            "fingerprint": report.fingerprint,
            "problems": [
                {"file": p.file, "key_path": p.key_path, "message": p.message, "line": p.line}
                for p in report.problems
            ],
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            log.warning("b2b-integrations: cannot write the parse report %s: %s", path, e)
