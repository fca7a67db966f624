"""JSON Schemas of the two config file kinds, for editor autocompletion (kept in sync by a test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from b2b_integrations.config.models import Customer, IntegrationTemplate

SCHEMA_FILES = {
    "integration.schema.json": IntegrationTemplate,
    "customer.schema.json": Customer,
}


def schema_for(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render(model: type[Any]) -> str:
    return json.dumps(schema_for(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMA_FILES.items():
        path = out_dir / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written
