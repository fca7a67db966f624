"""Request and response bodies of the instances API, for its OpenAPI document (examples included).

Request bodies are read and checked by the instance store with the config loader (so a refusal carries the
same messages and key paths as ``validate``); these models describe them, they do not validate them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def error_responses(wording: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's error answers, all in :class:`ErrorBody`'s shape: code -> what it means
    there. Routes share the common ones through ``COMMON_ERRORS``."""
    return {code: {"model": ErrorBody, "description": text} for code, text in wording.items()}


COMMON_ERRORS = {
    401: "No valid token.",
    403: "The caller may not do this.",
    404: "No such customer or instance, or none the caller may see.",
}


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


# ---- status, runs and actions (api/observe.py) ---------------------------------------------------------
class RunError(BaseModel):
    step: str | None = Field(examples=["load"])
    message: str = Field(examples=["step 'load' failed"])
    code: str | None = None


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    run_id: str = Field(examples=["scheduled__2026-12-03T16:00:00+00:00"])
    state: str | None = Field(examples=["failed"])
    run_type: str | None = Field(None, examples=["scheduled"])
    run_after: str | None = None
    logical_date: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    failed_step: str | None = Field(None, description="Failed runs: the step that failed.", examples=["load"])
    error: RunError | None = Field(None, description="Failed runs: what the customer may be told.")
    log_excerpt: str | None = Field(
        None,
        description="Run history only (the first 10 failed runs of a page): the last lines of the failed "
        "step's log, secrets masked, size capped.",
    )


class FlowStatus(BaseModel):
    flow: str = Field(examples=["contacts"])
    dag_id: str = Field(examples=["acme__crm_contacts__contacts"])
    deployed: bool = Field(description="false: the DAG is not (yet) in Airflow.")
    is_paused: bool
    last_run: RunSummary | None
    last_finished_run: dict[str, Any] | None = Field(
        None, examples=[{"run_id": "manual__...", "state": "success"}]
    )
    next_run: dict[str, Any] = Field(
        examples=[{"logical_date": "2026-12-03T17:00:00+00:00", "create_after": "2026-12-03T17:00:00+00:00",
                   "trigger": "schedule"}]
    )  # fmt: skip
    counts: dict[str, int | None] = Field(
        description="rows_loaded_24h and quarantined_records_24h: summed from the load steps' results of "
        "the last 24 h; quarantined_messages: inbox messages set aside, not replayed; failed_files, "
        "dead_letters, pending_deliveries (flows with such steps): open rows in the app database's ledgers, "
        "null when that database could not be read.",
        examples=[{"rows_loaded_24h": 1200, "quarantined_records_24h": 2, "quarantined_messages": 0}],
    )
    counts_unavailable: str | None = Field(None, description="Why some counts are null.")


class InstanceStatus(BaseModel):
    customer: str = Field(examples=["acme"])
    integration: str = Field(examples=["crm_contacts"])
    health: str = Field(
        description="healthy, degraded, failing, paused, never run or config problem (most urgent wins).",
        examples=["degraded"],
    )
    reasons: list[str] = Field(examples=[["flow contacts: 2 quarantined records in the last 24 h"]])
    active: bool
    as_of: str
    config_problems: list[Problem]
    running_on_last_valid: str | None = Field(
        None,
        description="The customer file has a problem, so all its instances run on its last valid copy (this "
        "one) until it is fixed; the problems are listed on the instances they concern.",
    )
    counts: dict[str, int] = Field(description="The flows' counts summed (null counts as 0).")
    flows: list[FlowStatus]


class RunList(BaseModel):
    customer: str
    integration: str
    flow: str
    total: int
    offset: int
    limit: int
    runs: list[RunSummary]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"config": {"page_size": 10}}]})
    config: dict[str, Any] = Field(
        default_factory=dict, description="Config values for this run only (the flow's params)."
    )


class RunStarted(BaseModel):
    customer: str
    integration: str
    flow: str
    run_id: str = Field(examples=["manual__2026-12-03T16:05:00.123456+00:00"])
    config: dict[str, Any]
    state: str = Field(examples=["queued"])


class RunRetried(BaseModel):
    customer: str
    integration: str
    flow: str
    run_id: str
    cleared_steps: list[str] = Field(examples=[["load"]])
    state: str = Field(examples=["queued"])


class ReplayRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"dead_letters": True, "quarantined": True}, {"flow": "invoice_events",
                                        "quarantined": True, "dead_letters": False, "message_ids": ["msg_1"]}]},
    )  # fmt: skip
    flow: str | None = Field(None, description="Only this flow (required with message or event ids).")
    dead_letters: bool = Field(True, description="Re-send the dead-lettered events of deliver_events steps.")
    quarantined: bool = Field(True, description="Queue quarantined inbox messages again (once each).")
    message_ids: list[str] | None = Field(None, description="Only these quarantined messages.")
    webhooks: list[str] | None = Field(None, description="Stored webhooks (by message id) to process again.")
    event_ids: list[str] | None = Field(None, description="Only these dead letters (by event id).")


class ReplayAnswer(BaseModel):
    customer: str
    integration: str
    flows: list[dict[str, Any]] = Field(
        examples=[[{"flow": "invoice_events", "quarantined": [{"message_id": "msg_1",
                   "outcome": "queued again as msg_1#replay-20261203T160500000000"}]}]]
    )  # fmt: skip


# ---- credentials (api/credentials.py) --------------------------------------------------------------
class CredentialsRequest(BaseModel):
    """One kind of credential for a connection slot; which fields each kind takes is in the description."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "description": "kind api_key: base_url, key, header (optional; must be the header the "
            "integration sends). basic: base_url, login, password. oauth2_client_credentials: base_url, "
            "client_id, client_secret, token_url (path or URL; optional when the integration names it), "
            "scope. sftp_password: host, port (22), username, password, host_key. sftp_key: host, port, "
            "username, private_key (OpenSSH or PEM), passphrase (optional), host_key ('ssh-ed25519 AAAA...').",
            "examples": [
                {
                    "kind": "oauth2_client_credentials",
                    "base_url": "https://crm.example.com",
                    "client_id": "acme-integration",
                    "client_secret": "s3cr3t",
                    "token_url": "/oauth/token",
                },
                {
                    "kind": "api_key",
                    "base_url": "https://api.example.com/v1",
                    "key": "k-123",
                    "header": "X-API-Key",
                },
                {
                    "kind": "sftp_key",
                    "host": "sftp.partner.example",
                    "port": 22,
                    "username": "acme",
                    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n...",
                    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...",
                },
            ],
        },
    )
    kind: str = Field(description="api_key | basic | oauth2_client_credentials | sftp_password | sftp_key")


class CredentialSlot(BaseModel):
    slot: str = Field(examples=["crm_api"])
    type: str | None = Field(None, description="The slot's connection type.", examples=["http"])
    required: bool = True
    credential_types: list[str] = Field(
        description="Kinds a customer may supply here (empty: an engineer binds a connection).",
        examples=[["api_key", "basic", "oauth2_client_credentials"]],
    )
    conn_id: str | None = Field(None, examples=["b2b_acme__crm_contacts__crm_api"])
    managed: bool = Field(
        False, description="True when the connection was supplied through this API (conn id b2b_...)."
    )
    configured: bool = Field(description="The bound connection exists (secrets backends or metadata DB).")
    kind: str | None = Field(None, examples=["oauth2_client_credentials"])
    conn_type: str | None = Field(None, examples=["http"])
    host: str | None = Field(None, examples=["https://crm.example.com"])
    port: int | None = None
    login: str | None = Field(None, examples=["acme-integration"])


class CredentialList(BaseModel):
    customer: str
    integration: str
    slots: list[CredentialSlot]


class CredentialsSaved(CredentialSlot):
    created: bool = Field(description="The connection is new (else its fields were replaced).")
    instance: Instance


class ConnectionTest(BaseModel):
    slot: str = Field(examples=["crm_api"])
    conn_id: str = Field(examples=["b2b_acme__crm_contacts__crm_api"])
    ok: bool
    reason: str = Field(
        description="What was tried and what happened; never a secret or a server's own text.",
        examples=["the token endpoint https://crm.example.com/oauth/token issued an access token"],
    )
    seconds: float = Field(examples=[0.12])


class ActivationWithHeldEvents(Activation):
    held_events: int = Field(
        0, description="Events that arrived while inactive and are now being processed.", examples=[3]
    )
    runs_queued: list[str] = Field(
        default_factory=list,
        description="DAGs given a run for those events.",
        examples=[["acme__billing_webhooks__invoice_events"]],
    )
