"""Typed option blocks of the HTTP steps: ``auth``, ``incremental`` and a ``deliver_events`` ``target``.

The run-time builders (``clients.http_api.auth_from_config``, ``sources.incremental.incremental_from_config``)
validate the resolved block with these same models.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Field, model_validator

from b2b_integrations.config.base import Ident
from b2b_integrations.config.options import OR_REFERENCE, OptionBlock, one_of

AuthType = Literal["none", "basic", "api_key", "bearer", "oauth2_client_credentials"]
AUTH_TYPES: tuple[str, ...] = AuthType.__args__  # type: ignore[attr-defined]
NonEmpty = Annotated[str, Field(min_length=1)]


class AuthOptions(OptionBlock):
    """How a step uses its connection's secret against the API."""

    unknown_keys: ClassVar[str | None] = "unknown auth option(s) {unknown}; allowed: {allowed}"

    type: Annotated[
        AuthType,
        BeforeValidator(one_of(AUTH_TYPES, "auth type must be one of {choices}, got {value!r}")),
        OR_REFERENCE,
    ] = Field(
        "none",
        description="none; basic (login/password); api_key (the password in `header`); bearer (the password "
        "as a bearer token); oauth2_client_credentials (login/password exchanged at `token_url`).",
    )
    header: Annotated[NonEmpty, OR_REFERENCE] = Field("X-API-Key", description="Header of an api_key.")
    token_url: Annotated[NonEmpty, OR_REFERENCE] | None = Field(
        None,
        description="oauth2_client_credentials: token endpoint, relative to the base URL (default: the "
        "connection extra token_url).",
    )
    scope: Annotated[NonEmpty, OR_REFERENCE] | None = Field(None, description="OAuth2 scope asked for.")


class IncrementalOptions(OptionBlock):
    """Ask only for changes since the greatest ``cursor_field`` value already loaded."""

    unknown_keys: ClassVar[str | None] = "unknown incremental option(s) {unknown}; allowed: {allowed}"

    cursor_field: Annotated[str, OR_REFERENCE] = Field(
        description="Record field whose greatest value becomes the cursor, e.g. updated_at."
    )
    param: Annotated[str, OR_REFERENCE] = Field(
        description="Query parameter asking for changes since the cursor, e.g. updated_since."
    )
    start: str | int | float | None = Field(
        None, description="Where the first run starts (sent as text); unset: the first run reads everything."
    )

    @model_validator(mode="before")
    @classmethod
    def _needs_field_and_param(cls, data: Any) -> Any:
        if isinstance(data, dict):
            missing = [name for name in ("cursor_field", "param") if not data.get(name)]
            if missing:
                raise ValueError(f"incremental needs {missing}")
        return data


EventMethod = Literal["POST", "PUT", "PATCH", "DELETE"]
Timeout = Annotated[float, Field(gt=0, le=600), OR_REFERENCE]


class _EventTarget(OptionBlock):
    name: Ident | None = Field(None, description="The delivery ledger's target id (default: the type).")
    connection: Ident = Field(description="Connection slot of the receiver.")


class WebhookEventTarget(_EventTarget):
    """Each event POSTed as a signed webhook (Standard Webhooks) to the connection's URL."""

    type: Literal["webhook"]
    endpoint: Annotated[str, OR_REFERENCE] | None = Field(
        None, description="Path below the connection's URL."
    )
    timeout: Timeout | None = Field(None, description="Seconds per request (default 30).")


class ApiEventTarget(_EventTarget):
    """Each event turned into a call of the third party's own API."""

    type: Literal["api"]
    endpoint: Annotated[NonEmpty, OR_REFERENCE] = Field(
        description="Path (or absolute URL); '{data.id}' placeholders take the event's values, URL-encoded."
    )
    method: Annotated[
        EventMethod,
        BeforeValidator(one_of(EventMethod.__args__, "method must be POST, PUT, PATCH or DELETE")),  # type: ignore[attr-defined]
        OR_REFERENCE,
    ] = Field("PATCH", description="HTTP method.")
    body: dict[str, str] | None = Field(
        None, description="Their field (dotted for nesting) -> our dotted path; default: the event's data."
    )
    body_constants: dict[str, Any] = Field(default_factory=dict, description="Their field -> a fixed value.")
    auth: AuthOptions | None = Field(None, description="How the connection's secret is used (default none).")
    timeout: Timeout | None = Field(None, description="Seconds per request (default 30).")


class RedisEventTarget(_EventTarget):
    """Each event PUBLISHed on a Redis channel."""

    type: Literal["redis"]
    channel: Annotated[NonEmpty, OR_REFERENCE] = Field(description="Channel the events are published on.")


EVENT_TARGET_MODELS = (WebhookEventTarget, ApiEventTarget, RedisEventTarget)
EventTarget = Annotated[Union[EVENT_TARGET_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
