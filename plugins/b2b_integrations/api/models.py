"""Request and response bodies of the instances API, for its OpenAPI document (examples included).

Request bodies are read and checked by the instance store with the config loader (so a refusal carries the
same messages and key paths as ``validate``); these models describe them, they do not validate them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    file: str = Field(examples=["include/customers/acme.yaml"])
    line: int | None = Field(None, examples=[7])
    key_path: str = Field(examples=["integrations.crm_contacts.config.page_size"])
    message: str = Field(examples=["must be at most 1000 (got 5000)"])


class ErrorBody(BaseModel):
    error: str = Field(examples=["invalid"])
    detail: str = Field(examples=["the change was refused; nothing was changed"])
    problems: list[Problem] | None = None


class FlowSettings(BaseModel):
    model_config = ConfigDict(extra="allow")
    enabled: bool = Field(True, description="false: no DAG for this flow.")
    schedule: str | None = Field(None, description="Replaces the template's schedule.", examples=["@daily"])


class InstanceSettings(BaseModel):
    """A customer's settings for one integration: the block under ``integrations.<name>`` of its file."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "version": "2",
                    "config": {"page_size": 50},
                    "connections": {"crm_api": "acme_crm", "app_db": "demo_app_db"},
                    "flows": {"invoices": {"enabled": False}, "contacts": {"schedule": "*/15 * * * *"}},
                }
            ]
        },
    )
    version: str | None = Field(
        None, description="Template version the instance is pinned to; unset: the current one."
    )
    enabled: bool = Field(True, description="false: no DAGs for this instance.")
    active: bool | None = Field(None, description="Set by activate/deactivate.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Values of the template's config variables."
    )
    connections: dict[str, str] = Field(
        default_factory=dict, description="Connection slot -> Airflow connection id."
    )
    flows: dict[str, FlowSettings] = Field(default_factory=dict, description="Per-flow overrides.")


class Instance(BaseModel):
    customer: str = Field(examples=["acme"])
    integration: str = Field(examples=["crm_contacts"])
    etag: str = Field(
        description="Send it back as If-Match to change this version.", examples=['"3f2a9c1d4e5b6a7c8d9e"']
    )
    version: int = Field(description="Number of this version in the instance's history.", examples=[4])
    template_version: str = Field(description="Template version it runs.", examples=["2"])
    active: bool | None = Field(None, examples=[True])
    settings: InstanceSettings


class InstanceList(BaseModel):
    customer: str
    instances: list[Instance]


class VersionSummary(BaseModel):
    version: int = Field(examples=[3])
    at: str = Field(examples=["2026-12-03T16:17:50+00:00"])
    by: str = Field(examples=["admin"])
    action: str = Field(examples=["update"])
    etag: str | None = None
    changes: list[dict[str, Any]] = Field(examples=[[{"path": "config.page_size", "from": 100, "to": 50}]])


class VersionDetail(VersionSummary):
    settings: InstanceSettings | None = Field(None, description="None: this version deleted the instance.")


class VersionList(BaseModel):
    customer: str
    integration: str
    versions: list[VersionSummary]


class Activation(BaseModel):
    instance: Instance
    active: bool
    dags_changed: list[str] = Field(
        description="DAG ids paused or unpaused by this request.", examples=[["acme__crm_contacts__contacts"]]
    )
    detail: str = Field(
        examples=[
            "deactivated: events that arrive meanwhile are kept and processed once it is activated again"
        ]
    )


class Customer(BaseModel):
    id: str = Field(examples=["acme"])
    etag: str
    header: dict[str, Any] = Field(
        description="The customer's own keys: name, tags, alerts, enabled.",
        examples=[{"id": "acme", "name": "Acme Corp"}],
    )
    integrations: list[str] = Field(examples=[["crm_contacts", "orders"]])


class CustomerCreate(BaseModel):
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"id": "hooli", "name": "Hooli XYZ"}]}
    )
    id: str
    name: str


class CustomerList(BaseModel):
    customers: list[str]
    total: int
    offset: int
    limit: int


class TokenRequest(BaseModel):
    scopes: list[str] = Field(["read", "write"], examples=[["read"]])
    ttl_seconds: int = Field(900, ge=1, le=86400, examples=[900])


class TokenAnswer(BaseModel):
    customer: str
    token: str
    expires_at: str
    scopes: list[str]


class MarketplaceEntry(BaseModel):
    name: str = Field(examples=["crm_contacts"])
    description: str
    version: str = Field(description="The current version: what a new instance is pinned to.", examples=["2"])
    versions: list[str] = Field(examples=[["1", "2"]])
    flows: list[dict[str, Any]]
    config_schema: dict[str, Any] = Field(description="JSON Schema of the config values (renders a form).")
    connections: list[dict[str, Any]] = Field(
        description="Connection slots and the credentials each accepts."
    )


class Marketplace(BaseModel):
    integrations: list[MarketplaceEntry]
