"""Deliver to a folder or an object-storage location through ``airflow.sdk.ObjectStoragePath``.

On a filesystem (a plain path or ``file://``) the copy goes to a hidden temporary name that is then renamed
over the final name (atomic on POSIX within one filesystem), so readers never see a partial file. Object
stores (``s3://``, ``gs://``, ...) have no rename, but make an object visible only once its upload is
complete, so the final key is written directly.
"""

from __future__ import annotations

import secrets
import shutil
from typing import TYPE_CHECKING, Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import LocalTargetConfig

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


FILESYSTEM_PROTOCOLS = frozenset({"", "file", "local"})
_COPY_BLOCK = 1024 * 1024


class LocalDeliveryTarget(DeliveryTarget[LocalTargetConfig]):
    """Copy the report into ``path`` (a folder, or an object-storage prefix)."""

    type = "local"

    def describe(self) -> str:
        via = f" via connection {self.conn_id!r}" if self.conn_id else ""
        return f"local {self.name} ({self.config.path}{via})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath

        if self.conn_id:
            load_connection(self.conn_id, context)
        name = context.file_name(self.config.file_name, report)
        location = context.render(self.config.path, report, name)
        try:
            folder = ObjectStoragePath(location, conn_id=self.conn_id)
            self._ensure_folder(folder)
            final = folder / name
            if folder.protocol in FILESYSTEM_PROTOCOLS:
                temporary = folder / f".{name}.part-{secrets.token_hex(4)}"
                try:
                    _copy(report, temporary)
                    temporary.rename(final)
                except BaseException:
                    temporary.unlink(missing_ok=True)
                    raise
            else:
                _copy(report, final)
            size = final.stat().st_size
        except (DeliveryFailed, DeliveryRefused):
            raise
        except Exception as e:  # OSError, fsspec and cloud SDK errors alike
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None
        if size != report.size:
            raise DeliveryFailed(f"{final} has {size} bytes after the copy, expected {report.size}")
        return {"path": str(final), "bytes": size}

    def _ensure_folder(self, folder: ObjectStoragePath) -> None:
        if folder.protocol not in FILESYSTEM_PROTOCOLS:
            return  # object stores have prefixes, not folders
        if folder.is_dir():
            return
        if folder.exists():
            raise DeliveryRefused(f"{folder} is not a folder")
        if not self.config.create_folder:
            raise DeliveryRefused(f"folder {folder} does not exist (set create_folder: true to create it)")
        folder.mkdir(parents=True, exist_ok=True)


def _copy(report: ReportFile, target: ObjectStoragePath) -> None:
    with report.path.open("rb") as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, _COPY_BLOCK)
