"""Transform callables used by the integration tests (allow-listed there via B2B_TRANSFORM_PREFIXES)."""

from __future__ import annotations

from typing import Any


def rows(frame: Any, *, count: int, tag: str) -> list[dict[str, Any]]:
    return [{"id": i, "tag": tag, "score": i * 1.5 if i % 2 else None} for i in range(1, count + 1)]


def wrong_type(frame: Any, **_: Any) -> str:
    return "not records"
