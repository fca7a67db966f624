"""What the marketplace shows of a template (pure): its config variables as JSON Schema, enough to render
a setup form, and the connection slots it needs."""

from __future__ import annotations

from typing import Any

from b2b_integrations.config.models import IntegrationTemplate
from b2b_integrations.config.variables import JSON_TYPES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

CREDENTIAL_TYPES: dict[str, list[str]] = {
    "http": ["api_key", "basic", "oauth2_client_credentials"],
    "sftp": ["sftp_password", "sftp_key"],
    "ssh": ["sftp_password", "sftp_key"],
}
"""Which kinds of credential a customer may supply for a slot of each connection type (the credentials
endpoint); other slots are bound to a connection an engineer made."""


def config_schema(template: IntegrationTemplate) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, var in template.config.items():
        spec: dict[str, Any] = {"type": JSON_TYPES[var.type], "title": name.replace("_", " ").capitalize()}
        if var.description:
            spec["description"] = var.description
        if var.default is not None:
            spec["default"] = var.default
        if var.choices is not None:
            spec["enum"] = var.choices
        if var.minimum is not None:
            spec["minimum"] = var.minimum
        if var.maximum is not None:
            spec["maximum"] = var.maximum
        if var.pattern is not None:
            spec["pattern"] = var.pattern
        if var.items is not None:
            spec["items"] = {"type": JSON_TYPES[var.items]}
        properties[name] = spec
        if var.is_required:
            required.append(name)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def connection_slots(template: IntegrationTemplate) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": slot.type,
            "description": slot.description,
            "required": slot.required,
            "shared": slot.shared is not None,
            "credential_types": [] if slot.shared else CREDENTIAL_TYPES.get(slot.type or "", []),
        }
        for name, slot in template.connections.items()
    ]


def describe(template: IntegrationTemplate, versions: list[str]) -> dict[str, Any]:
    from b2b_integrations.factory.planner import infer_pattern

    return {
        "name": template.name,
        "description": template.description,
        "version": template.version,
        "versions": versions,
        "flows": [
            {
                "name": name,
                "description": flow.description,
                "pattern": infer_pattern(flow).value,
                "trigger": flow.trigger.type,
                "schedule": getattr(flow.trigger, "schedule", None),
            }
            for name, flow in template.flows.items()
        ],
        "config_schema": config_schema(template),
        "connections": connection_slots(template),
    }
