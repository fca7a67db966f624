"""What every delivery target shares: the report file it sends, the context of one delivery, the protocol.

A target is configured by its options model (``delivery.config``) plus an Airflow connection id; it
``describe()``s itself without secrets and ``deliver()``s one file, returning a receipt (JSON-able, no
secrets) that the ledger stores. Targets do not retry: the task's Airflow retries do, and the ledger skips
what already went out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from b2b_integrations.delivery.messages import check_file_name, format_value, render
from b2b_integrations.errors import FatalStepError, RetriableStepError

_HASH_BLOCK = 1024 * 1024
REQUIRED_REPORT_KEYS = ("file", "name", "sha256", "bytes", "report", "period")


TargetConfig = TypeVar("TargetConfig")


class DeliveryFailed(RetriableStepError):
    """A delivery did not go through but may on a retry (timeouts, 5xx, dropped connections)."""


class DeliveryRefused(FatalStepError):
    """Retrying cannot help: bad credentials, a 4xx, an unknown channel, a file too large, a bad option."""


@dataclass(frozen=True)
class ReportFile:
    """The report to deliver: the ``report_export`` step's XCom, checked."""

    path: Path
    name: str
    sha256: str
    size: int
    report: str
    period: str
    format: str = ""
    content_type: str = "application/octet-stream"
    rows: int | None = None
    period_start: str | None = None
    period_end: str | None = None
    empty: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_xcom(cls, value: Any) -> ReportFile:
        """Build from the upstream step's return value; ValueError says what is missing or wrong."""
        if not isinstance(value, Mapping):
            raise ValueError(f"expected the report step's result (a dict with {list(REQUIRED_REPORT_KEYS)}), "
                             f"got {type(value).__name__}")  # fmt: skip
        missing = [k for k in REQUIRED_REPORT_KEYS if value.get(k) in (None, "")]
        if missing:
            raise ValueError(f"the report step's result has no {missing}")
        path = Path(str(value["file"]))
        if not path.is_absolute():
            raise ValueError(f"report file {str(path)!r} is not an absolute path")
        summary = value.get("summary") or {}
        if not isinstance(summary, Mapping):
            raise ValueError(
                f"report summary must be a dict of label -> figure, got {type(summary).__name__}"
            )
        return cls(
            path=path,
            name=check_file_name(str(value["name"])),
            sha256=str(value["sha256"]).lower(),
            size=int(value["bytes"]),
            report=str(value["report"]),
            period=str(value["period"]),
            format=str(value.get("format") or ""),
            content_type=str(value.get("content_type") or "application/octet-stream"),
            rows=int(value["rows"]) if value.get("rows") is not None else None,
            period_start=value.get("period_start"),
            period_end=value.get("period_end"),
            empty=bool(value.get("empty", False)),
            summary=dict(summary),
        )

    def verify(self) -> None:
        """Check that the file on this worker is the one the report step described (size and sha256)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise DeliveryFailed(
                f"report file {self.path} is missing on this worker (the report and deliver steps must share "
                "B2B_DATA_DIR storage)"
            ) from None
        if size != self.size or file_sha256(self.path) != self.sha256:
            raise DeliveryRefused(
                f"report file {self.path} changed since the report step wrote it (expected {self.size} bytes, "
                f"sha256 {self.sha256[:12]}..., found {size} bytes): run the report step again"
            )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def delivery_id(
    customer_id: str, integration: str, report: str, period: str, target: str, generation: int
) -> str:
    """Stable id of one delivery: the same for a retry, new for each forced resend (``generation``).

    It becomes the HTTP ``Idempotency-Key`` and the email ``Message-ID``, so a receiver that deduplicates
    on them drops the copy a crash between sending and recording would cause.
    """
    text = "\x1f".join((customer_id, integration, report, period, target, str(generation)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class DeliveryContext:
    """Everything one delivery needs besides the file: who it is for, its id, the placeholder values."""

    customer_id: str
    integration: str
    flow: str
    delivery_id: str
    log: Any
    secrets: set[str] = field(default_factory=set)

    def protect(self, *values: str | None) -> None:
        """Remember secret values (passwords, tokens, webhook URLs) so errors can be cleaned of them."""
        self.secrets.update(v for v in values if v and len(v) >= 4)

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def values(self, report: ReportFile, name: str) -> dict[str, Any]:
        """Placeholder values (see ``delivery.messages``)."""
        return {
            "customer": self.customer_id,
            "integration": self.integration,
            "flow": self.flow,
            "report": report.report,
            "period": report.period,
            "period_start": report.period_start,
            "period_end": report.period_end,
            "rows": report.rows,
            "bytes": report.size,
            "name": name,
            "format": report.format,
        }

    def render(self, template: str, report: ReportFile, name: str, quote: bool = False) -> str:
        """Fill the placeholders of a text; ``quote`` percent-encodes the values (for URL paths)."""
        values, summary = self.values(report, name), report.summary
        if quote:
            from urllib.parse import quote as encode

            values = {k: encode("" if v is None else str(v), safe="") for k, v in values.items()}
            summary = {k: encode(format_value(v), safe="") for k, v in summary.items()}
        try:
            return render(template, values, summary)
        except ValueError as e:
            raise DeliveryRefused(str(e)) from None

    def file_name(self, template: str | None, report: ReportFile) -> str:
        """The name the file is delivered under: the report's, or the target's ``file_name`` rendered."""
        if not template:
            return report.name
        name = self.render(template, report, report.name)
        try:
            return check_file_name(name)
        except ValueError as e:
            raise DeliveryRefused(f"file_name: {e}") from None


class DeliveryTarget(Generic[TargetConfig]):
    """One place a report goes to: subclasses set ``type`` and implement ``describe`` and ``deliver``."""

    type: ClassVar[str]

    def __init__(self, config: TargetConfig, conn_id: str | None) -> None:
        self.config = config
        self.name: str = config.target_name  # type: ignore[attr-defined]
        self.conn_id = conn_id

    def describe(self) -> str:
        """What and where, for logs and errors: never a secret."""
        raise NotImplementedError

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        """Send the file; return a receipt (JSON-able, no secrets). Raise DeliveryFailed/DeliveryRefused."""
        raise NotImplementedError


_SECRET_EXTRA_KEYS = ("password", "secret", "token", "key", "webhook")


def load_connection(conn_id: str | None, context: DeliveryContext) -> Any:
    """The Airflow connection, its secrets registered with ``context`` so no error can show them."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    if not conn_id:
        raise DeliveryRefused("no connection id: the customer config must fill the target's connection slot")
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise DeliveryRefused(f"connection {conn_id!r} is not defined") from None
    context.protect(connection.password)
    for key, value in connection.extra_dejson.items():
        if isinstance(value, str) and any(word in key.lower() for word in _SECRET_EXTRA_KEYS):
            context.protect(value)
    return connection
