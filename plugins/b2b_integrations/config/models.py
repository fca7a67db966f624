"""The two levels of configuration: integration templates and customer instances (pydantic v2).

These models check shape and types. Rules that span several fields or files (references to declared
variables and connection slots, customer values against the template) live in ``validate.py`` where each
problem can be given its exact key path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from b2b_integrations.config.alerts import AlertOptions
from b2b_integrations.config.base import Ident, PlainText, StrictModel
from b2b_integrations.config.limits import CustomerLimits
from b2b_integrations.config.monitors import AppMonitors, MonitorSettings
from b2b_integrations.config.staging import StagingSettings
from b2b_integrations.config.steps import Step
from b2b_integrations.config.triggers import Schedule, Trigger
from b2b_integrations.config.variables import ConfigVariable

# Airflow connection ids: letters, digits, dot, dash, underscore.
CONN_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,250}$"
# A template version a customer can pin: also the file name of a version kept side by side
# (integrations/versions/<name>/<version>.yaml), hence no separators and no leading dot.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$"


def _version_text(value: Any) -> Any:
    # `version: 2` unquoted in YAML is an int; the pin means the text "2" (a float such as 1.10 is refused:
    # its text would not be what was typed).
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Pattern(StrEnum):
    """Integration patterns, used for tags and docs."""

    EVENT_DRIVEN_IMPORT = "event_driven_import"
    EVENT_DRIVEN_EXPORT = "event_driven_export"
    TWO_WAY = "two_way"
    SCHEDULED_DATA_IMPORT = "scheduled_data_import"
    SCHEDULED_FILE_IMPORT = "scheduled_file_import"
    SCHEDULED_FILE_EXPORT = "scheduled_file_export"
    SYNCHRONOUS = "synchronous"
    HYBRID = "hybrid"
    CUSTOM = "custom"


class ConnectionSlot(StrictModel):
    """A credential the integration needs; each customer names the Airflow connection that fills it."""

    type: str | None = Field(None, description="Expected Airflow connection type (http, sftp, postgres...).")
    description: str = Field("", description="What the connection is for.")
    required: bool = Field(True, description="Customers must fill required slots.")
    shared: str | None = Field(
        None,
        pattern=CONN_ID_PATTERN,
        description="A connection the data engineer provides for every customer (our app's database): the "
        "instances API binds it for customers, who can neither see its credentials nor bind it elsewhere.",
    )


class RunDefaults(StrictModel):
    """Retry and timeout policy for every task of a flow (Airflow ``default_args``)."""

    owner: str = Field("b2b-integrations", description="Owner shown in the Airflow UI.")
    retries: int = Field(2, ge=0, le=20, description="Task retries.")
    retry_delay_seconds: float = Field(60, gt=0, description="First retry delay.")
    retry_exponential_backoff: bool = Field(True, description="Double the delay on each retry.")
    max_retry_delay_seconds: float = Field(1800, gt=0, description="Cap on the retry delay.")
    execution_timeout_minutes: float | None = Field(60, gt=0, description="Kill a task running longer.")


class Flow(StrictModel):
    """A trigger and the chain of steps it runs."""

    description: str = Field("", description="What the flow does, for the generated DAG docs.")
    pattern: Pattern | None = Field(None, description="Defaults to the pattern implied by trigger and steps.")
    trigger: Trigger
    steps: list[Step] = Field(
        min_length=1, description="Run in order; each step gets the previous one's output."
    )
    max_active_runs: int | None = Field(
        None, ge=1, le=64, description="Defaults to 1 (runs of a flow stay in order)."
    )
    defaults: RunDefaults | None = Field(None, description="Overrides the integration's run defaults.")


class UpgradeRenames(StrictModel):
    """Old name -> name in this version, for values an instance keeps when it moves to this version."""

    config: dict[Ident, Ident] = Field(default_factory=dict, description="Config variable renames.")
    connections: dict[Ident, Ident] = Field(default_factory=dict, description="Connection slot renames.")


class Upgrade(StrictModel):
    """How an instance's settings carry over when a rollout moves it to this version from any other."""

    renames: UpgradeRenames = Field(default_factory=UpgradeRenames)
    defaults: dict[Ident, Any] = Field(
        default_factory=dict,
        description="Values given to upgraded instances that have none (e.g. a new required variable, or "
        "the old behaviour kept for existing customers while new ones get the variable's default).",
    )


class IntegrationTemplate(StrictModel):
    """What an integration does, written once by a data engineer (include/integrations/<name>.yaml)."""

    name: Ident = Field(description="Must equal the file name without .yaml.")
    description: str = Field("", description="Shown in docs.")
    version: str = Field(
        "1",
        description="This template's version. Other versions live side by side in "
        "integrations/versions/<name>/<version>.yaml; customers may pin one.",
    )
    upgrade: Upgrade | None = Field(
        None, description="Renames and defaults applied when a rollout moves an instance to this version."
    )
    config: dict[Ident, ConfigVariable] = Field(default_factory=dict, description="Variables customers set.")
    connections: dict[Ident, ConnectionSlot] = Field(default_factory=dict, description="Credential slots.")
    defaults: RunDefaults = Field(default_factory=RunDefaults)
    monitors: MonitorSettings | None = Field(
        None, description="Alert monitors of every instance (app.yaml's defaults apply under them)."
    )
    flows: dict[Ident, Flow] = Field(min_length=1)


class FlowOverride(StrictModel):
    """A customer's changes to one flow."""

    enabled: bool = Field(True, description="false: no DAG is generated for this flow.")
    schedule: Schedule | None = Field(None, description="Replaces the template's schedule.")


class CustomerIntegration(StrictModel):
    """One integration a customer has, with the customer's values."""

    version: Annotated[str, BeforeValidator(_version_text), Field(pattern=VERSION_PATTERN)] | None = Field(
        None,
        description="The template version this instance is pinned to (a rollout changes it). Unset: the "
        "current version (integrations/<name>.yaml).",
    )
    enabled: bool = Field(True, description="false: no DAGs are generated for this integration.")
    active: bool | None = Field(
        None,
        description="Activation (the instances API's activate/deactivate): false pauses the integration's "
        "DAGs, true unpauses them; events that arrive while inactive are kept. Unset: new DAGs follow "
        "Airflow's dags_are_paused_at_creation.",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Values of the template's variables.")
    connections: dict[str, str] = Field(
        default_factory=dict, description="Connection slot -> Airflow connection id."
    )
    flows: dict[str, FlowOverride] = Field(default_factory=dict, description="Per-flow overrides.")
    monitors: MonitorSettings | None = Field(
        None, description="Alert monitors of this instance, over the template's and app.yaml's."
    )


class Customer(StrictModel):
    """A customer instance (include/customers/<id>.yaml): data only, never code."""

    id: Ident = Field(description="Must equal the file name without .yaml.")
    name: PlainText = Field(min_length=1, description="Display name (no Jinja markers).")
    enabled: bool = Field(True, description="false: no DAGs for this customer.")
    tags: list[str] = Field(default_factory=list, description="Extra DAG tags.")
    alerts: AlertOptions | None = Field(
        None,
        description="Failure alerts: slack (slackwebhook connection id), email (addresses), email_connection, "
        "email_from, sms (E.164 numbers), sms_connection, sms_from; unset targets fall back to the "
        "operator's [b2b_alerts] defaults.",
    )
    integrations: dict[Ident, CustomerIntegration] = Field(
        default_factory=dict, description="Integration name -> the customer's settings for it."
    )
    limits: CustomerLimits = Field(
        default_factory=CustomerLimits,
        description="This customer's share of the workers: task and run caps over all its flows, priority.",
    )


class OutboxSettings(StrictModel):
    """Our app writes events to an outbox table in its own database; a poller DAG publishes them."""

    enabled: bool = Field(True, description="false: no poller DAG.")
    connection: str = Field(
        pattern=CONN_ID_PATTERN, description="Airflow connection id of our app's database."
    )
    api_connection: str = Field(
        pattern=CONN_ID_PATTERN,
        description="Airflow connection id of the Airflow API server (base URL, an API user's login/password).",
    )
    table: str = Field("b2b_outbox", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    columns: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=dict,
        description="Column names where they differ: id, event_type, event_id, occurred_at, data, origin, created_at.",
    )
    schedule: str = Field(
        "@continuous", description="@continuous (back to back), an interval (1m) or a cron."
    )
    batch_size: int = Field(500, ge=1, le=10_000)
    settle_seconds: float = Field(
        2, ge=0, le=600, description="Rows younger than this wait for the next poll."
    )
    max_seconds: float = Field(55, gt=0, le=3600, description="How long one run keeps polling.")
    poll_interval: float = Field(1, gt=0, le=60, description="Wait between polls of an empty outbox.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"id", "event_type", "event_id", "occurred_at", "data", "origin", "created_at"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown outbox column role(s) {unknown}; expected some of {sorted(known)}")
        return value


class AppSettings(StrictModel):
    """``include/app.yaml``: settings of our own app (the SaaS product), shared by every customer."""

    outbox: OutboxSettings | None = Field(None, description="Publish app events from a transactional outbox.")
    monitors: AppMonitors | None = Field(
        None, description="Evaluate alert monitors of every instance (a DAG of our app) and their defaults."
    )
    staging: StagingSettings | None = Field(
        None, description="Delete staged records older than retention_hours (a DAG of our app)."
    )
