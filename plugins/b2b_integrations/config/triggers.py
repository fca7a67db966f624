"""What starts a flow. One model per trigger type, chosen by ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from b2b_integrations.config.base import Ident, StrictModel
from b2b_integrations.config.schedules import check_schedule

Schedule = Annotated[str, AfterValidator(check_schedule)]


class ScheduleTrigger(StrictModel):
    """Run on a cron expression, an Airflow preset, or an interval (``15m``, ``2h``, ``1d``)."""

    type: Literal["schedule"]
    schedule: Schedule = Field(description="Cron, preset (@daily) or interval (15m). Customers may override.")
    catchup: bool = Field(False, description="Run missed intervals after a pause or a late start.")


class ManualTrigger(StrictModel):
    """Run only when triggered from the UI, the REST API or the CLI."""

    type: Literal["manual"]


class WebhookTrigger(StrictModel):
    """A third party calls our webhook endpoint; each stored event becomes an asset event."""

    type: Literal["webhook"]
    signature: Literal["standard_webhooks", "github", "stripe", "shared_secret", "none"] = Field(
        "standard_webhooks", description="How the sender signs requests."
    )
    secret_connection: Ident | None = Field(
        None, description="Connection slot holding the signing secret (password field)."
    )
    payload_schema: dict[str, Any] | None = Field(None, description="Optional JSON Schema for payloads.")


class AppEventTrigger(StrictModel):
    """Our own app publishes events; the flow runs for the event types it subscribes to."""

    type: Literal["app_event"]
    events: list[str] = Field(min_length=1, description="Event types, e.g. invoice.paid.")
    filter: dict[str, Any] = Field(default_factory=dict, description="Field equality filter on event data.")


class PubSubTrigger(StrictModel):
    """A message on a pub/sub channel (Redis) or a queue (RabbitMQ) starts the flow. Redis pub/sub drops
    what is published while no triggerer listens; RabbitMQ keeps it and delivers at least once."""

    type: Literal["pubsub"]
    broker: Literal["redis", "rabbitmq"] = Field(
        "redis", description="redis: pub/sub channel, at most once. rabbitmq: durable queue, at least once."
    )
    channel: str = Field(
        min_length=1, description="Redis channel or RabbitMQ queue name; may use ${customer.id}."
    )
    connection: Ident | None = Field(None, description="Connection slot of the broker.")
    prefetch: int | None = Field(
        None, ge=1, le=1000, description="rabbitmq: messages in flight before acknowledgement (default 200)."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=500,
        description="rabbitmq: messages stored together as one event, so one run reads them all (default 1; "
        "at most prefetch).",
    )
    batch_wait_seconds: float | None = Field(
        None,
        ge=0,
        le=10,
        description="rabbitmq: longest wait for a batch to fill after its first message (default 1).",
    )

    @model_validator(mode="after")
    def _check_prefetch(self) -> PubSubTrigger:
        for option in ("prefetch", "batch_size", "batch_wait_seconds"):
            if getattr(self, option) is not None and self.broker != "rabbitmq":
                raise ValueError(f"{option} applies to broker: rabbitmq only")
        prefetch = self.prefetch or 200  # the trigger's default (triggers.amqp.DEFAULT_PREFETCH)
        if self.batch_size is not None and self.batch_size > prefetch:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed prefetch ({prefetch}): the broker sends at "
                "most prefetch unacknowledged messages, so a larger batch never fills"
            )
        return self


class SyncTrigger(StrictModel):
    """A caller POSTs to ``/b2b/sync/<customer>/<integration>/<flow>`` and waits for the flow's answer; a
    run slower than the wait answers 202 with a status URL, and the result can be POSTed to a callback."""

    type: Literal["sync"]
    timeout_seconds: float = Field(30, gt=0, le=300, description="How long the caller waits by default.")
    max_timeout_seconds: float = Field(
        120, gt=0, le=300, description="Longest wait a caller may ask for with 'Prefer: wait=N'."
    )
    input_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the request body.")
    result_step: Ident | None = Field(
        None, description="Step whose return value is the answer (default: the last step)."
    )
    callback_secret_connection: Ident | None = Field(
        None,
        description="Connection slot whose password (whsec_...) signs callbacks (Standard Webhooks); "
        "without it callers cannot ask for a callback.",
    )

    @model_validator(mode="after")
    def _check_wait(self) -> SyncTrigger:
        if self.timeout_seconds > self.max_timeout_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds:g}) is more than max_timeout_seconds "
                f"({self.max_timeout_seconds:g})"
            )
        return self


class AssetTrigger(StrictModel):
    """Run after another flow of the same integration (for the same customer) produced output."""

    type: Literal["asset"]
    flow: Ident = Field(description="The upstream flow of this integration.")


Trigger = Annotated[
    ScheduleTrigger
    | ManualTrigger
    | WebhookTrigger
    | AppEventTrigger
    | PubSubTrigger
    | SyncTrigger
    | AssetTrigger,
    Field(discriminator="type"),
]
