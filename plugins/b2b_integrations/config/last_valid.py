"""The last valid copy of each template and customer file: what keeps a customer running while its file is broken.

When an edit makes a file invalid, the customer's integrations keep running on the copy kept here while the
problem is reported (see ``dags/b2b_config_problems.py``). Only the DAG factory writes copies, and only of a
file that loaded without a problem and whose DAGs all built; everything that loads the project reads them,
so the DAGs, the webhook and sync routes and ``validate`` agree on what runs.

The folder must be shared by every process that parses the DAG files (dag-processor, workers, API server),
like ``B2B_DATA_DIR``, whose ``last_valid`` sub-folder is the default. ``B2B_LAST_VALID_DIR=off`` turns the
fallback off: a broken file then stops the integrations it defines.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from b2b_integrations.staging import data_dir

log = logging.getLogger(__name__)

_OFF = ("off", "none", "false", "0")


@dataclass(frozen=True)
class LastValidCopy:
    """A kept copy: where it is and when it was saved (what a problem message tells the user)."""

    path: Path
    saved_at: datetime

    def describe(self) -> str:
        return f"the last valid version, saved {self.saved_at:%Y-%m-%d %H:%M:%S} UTC"


class LastValidStore:
    """A folder of ``<kind>/<name>.yaml`` copies (kind: ``integrations`` or ``customers``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.yaml"

    def get(self, kind: str, name: str) -> LastValidCopy | None:
        path = self._path(kind, name)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        return LastValidCopy(path, datetime.fromtimestamp(mtime, UTC))

    def save(self, kind: str, name: str, source: Path) -> None:
        """Keep ``source`` as the last valid version of ``kind/name``; never raises (a read-only or full
        disk must not stop the DAGs from loading: the fallback is then just older)."""
        target = self._path(kind, name)
        try:
            content = source.read_bytes()
            if target.is_file() and target.read_bytes() == content:
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            # Parsers run concurrently (dag-processor, workers): write a private temp file, then rename.
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        except OSError as e:
            log.warning("b2b-integrations: cannot keep the last valid copy of %s/%s: %s", kind, name, e)


def default_store() -> LastValidStore | None:
    """``B2B_LAST_VALID_DIR`` (``off`` disables), else ``<B2B_DATA_DIR>/last_valid``."""
    env = os.environ.get("B2B_LAST_VALID_DIR", "").strip()
    if env.lower() in _OFF:
        return None
    return LastValidStore(Path(env) if env else data_dir() / "last_valid")
