"""Small builders shared by the test suites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432"


def pg_rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    """Run a query on one of the throwaway PostgreSQL databases and return every row."""
    import psycopg2

    with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def write_include(
    root: Path,
    templates: dict[str, dict[str, Any] | str] | None = None,
    customers: dict[str, dict[str, Any] | str] | None = None,
) -> Path:
    """Write an include folder; values are dicts (dumped as YAML) or raw YAML text."""
    for folder, files in (("integrations", templates or {}), ("customers", customers or {})):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
            (root / folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


def shipped_template(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "include" / "integrations" / f"{name}.yaml").read_text(encoding="utf-8"))


def minimal_template(name: str = "sync", **overrides: Any) -> dict[str, Any]:
    """A valid one-flow template: a transform feeding a load into a table."""
    template: dict[str, Any] = {
        "name": name,
        "config": {
            "threshold": {"type": "integer", "default": 10, "minimum": 0},
            "region": {"type": "string", "choices": ["eu", "us"]},
            "label": {"type": "string", "default": "main"},
        },
        "connections": {"db": {"type": "postgres"}},
        "flows": {
            "snapshot": {
                "trigger": {"type": "schedule", "schedule": "@hourly"},
                "steps": [
                    {
                        "id": "generate",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.demo.generate_inventory",
                        "options": {"warehouse": "${customer.id}", "sku_count": 5, "as_of": "{{ ds }}"},
                    },
                    {"id": "load", "kind": "load", "connection": "db", "table": "levels", "key": ["sku"]},
                ],
            }
        },
    }
    template.update(overrides)
    return template


def minimal_customer(customer_id: str = "acme", integration: str = "sync", **settings: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"config": {"region": "eu"}, "connections": {"db": "acme_db"}}
    entry.update(settings)
    return {"id": customer_id, "name": customer_id.title(), "integrations": {integration: entry}}


def docs_file_blocks(page: str, tag: str) -> list[tuple[str, str | None]]:
    """The code blocks of ``docs/<page>`` marked ``<!-- <tag>: file <path> -->``: (path, the file the block
    includes with a ``--8<--`` snippet line, or None when it holds text of its own), so a test can require
    that the page shows each file exactly as the tests run it (mkdocs inlines the file when it builds)."""
    import re

    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    pattern = re.compile(rf"<!-- {re.escape(tag)}: file (\S+) -->\n```\w*\n(.*?)```", re.S)
    blocks = []
    for match in pattern.finditer(text):
        included = re.fullmatch(r'--8<-- "([^"]+)"\n', match.group(2))
        blocks.append((match.group(1), included.group(1) if included else None))
    return blocks


def send_standard_webhook(url: str, secret: str, payload: dict[str, Any]) -> str:
    """POST ``payload`` to ``url`` signed the Standard Webhooks way with ``secret``; 202 expected; its id."""
    import json
    import uuid
    from datetime import UTC, datetime

    import httpx
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(payload)
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    answer = httpx.post(url, content=body, headers=headers, timeout=30, trust_env=False)
    assert answer.status_code == 202, answer.text
    return msg_id
