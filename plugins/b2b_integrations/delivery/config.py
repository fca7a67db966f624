"""Delivery targets as config: one pydantic model per target type, chosen by ``type``.

The same models check a template when it is loaded (through the ``deliver`` step model) and the targets an
operator receives at run time (after ``${config.*}`` and Jinja are resolved), so both give one verdict.
Values holding a ``${...}`` reference are checked only once resolved, at run time.

Naming: ``name`` identifies a target in the delivery ledger. A target without one is named after its type
(``sftp``); the second and later unnamed targets of the same type get ``_2``, ``_3``, ... in list order
(``email``, ``email_2``). Appending a target never renames the ones before it; names must be unique.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from b2b_integrations.config.base import Ident, StrictModel
from b2b_integrations.config.http_options import AuthOptions
from b2b_integrations.config.references import iter_references
from b2b_integrations.delivery.messages import check_file_name, check_template

if TYPE_CHECKING:
    from pydantic import TypeAdapter

# Same rule as config.models.CONN_ID_PATTERN (not imported: that module imports the step models). A
# template names a connection *slot* here; a hand-written DAG may name an Airflow connection id directly.
CONN_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,250}$"
ConnId = Annotated[str, Field(pattern=CONN_ID_PATTERN)]
_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def _has_reference(value: Any) -> bool:
    return any(True for _ in iter_references(value))


def _placeholders(value: str) -> str:
    check_template(value)
    return value


def _file_name(value: str) -> str:
    check_template(value)
    if "{" not in value and not _has_reference(value):
        check_file_name(value)
    return value


def _address(value: str) -> str:
    if not _has_reference(value) and not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


Text = Annotated[str, AfterValidator(_placeholders)]
FileName = Annotated[str, AfterValidator(_file_name)]


def _address_list(value: list[str] | str) -> list[str] | str:
    """A list, or one string of addresses separated by ',' or ';' (a whole ``${config.x}`` stays as is)."""
    if isinstance(value, str):
        if _has_reference(value):
            return value
        value = [part for part in re.split(r"\s*[,;]\s*", value.strip()) if part]
    return [_address(item) for item in value]


class TargetBase(StrictModel):
    """Fields every delivery target has."""

    name: Ident | None = Field(
        None,
        description="Identifies the target in the delivery ledger. Default: the type (sftp, email, ...); "
        "the second and later unnamed targets of a type get _2, _3, ...",
    )
    file_name: FileName | None = Field(
        None,
        description="Name the file is delivered under, with placeholders, e.g. '{customer}_{report}_{period}.pdf'. "
        "Default: the report's file name.",
    )
    connection: Any = None  # typed by each target; a slot in templates, an Airflow connection id at run time

    @property
    def target_name(self) -> str:
        """The ledger name (set by :func:`name_targets`; the type before that)."""
        return self.name or self.type  # type: ignore[attr-defined]


class NetworkTargetBase(TargetBase):
    """Targets reached over the network: they wait at most ``timeout`` for any one operation."""

    timeout: float = Field(60, gt=0, le=3600, description="Seconds to wait for any one network operation.")


class SftpTargetConfig(NetworkTargetBase):
    """Upload to a folder on an SFTP server: temporary name, then an atomic rename over the final name."""

    type: Literal["sftp"]
    connection: ConnId = Field(description="Connection slot of the SFTP server.")
    folder: Text = Field(
        min_length=1, description="Remote folder the file goes to, e.g. /outbox (placeholders)."
    )
    create_folder: bool = Field(False, description="Create the folder (and its parents) if it is missing.")


class EmailTargetConfig(NetworkTargetBase):
    """Send the file as an email attachment through an SMTP connection."""

    type: Literal["email"]
    connection: ConnId = Field(description="Connection slot of the SMTP server.")
    to: list[str] | str = Field(description="Recipients: a list, or one string separated by ',' or ';'.")
    cc: list[str] | str = Field(default_factory=list, description="Copy recipients.")
    subject: Text = Field("{report} for {period}", description="Subject, with placeholders.")
    body: Text = Field(
        "Please find attached {name} ({rows} rows).\n\n{summary}", description="Body text, with placeholders."
    )
    from_email: Annotated[str, AfterValidator(_address)] | None = Field(
        None, description="Sender; default: the connection's extra 'from_email'."
    )
    max_attachment_mb: float = Field(
        20, gt=0, le=100, description="Larger files fail instead of being refused by a mail server later."
    )

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, value: list[str] | str) -> list[str] | str:
        return _address_list(value)

    @model_validator(mode="after")
    def _has_recipients(self) -> EmailTargetConfig:
        if isinstance(self.to, list) and not self.to:
            raise ValueError("'to' needs at least one address")
        return self


class SlackTargetConfig(NetworkTargetBase):
    """Post to Slack: a message through an incoming webhook, or the file itself through the upload API."""

    type: Literal["slack"]
    connection: ConnId = Field(
        description="Connection slot: webhook mode, the incoming-webhook URL as password; upload mode, the "
        "bot token as password (and the API base URL as host, default https://slack.com/api)."
    )
    mode: Literal["webhook", "upload"] = Field(
        description="webhook: a message; upload: the file to a channel."
    )
    channel: str | None = Field(None, description="Channel id (C0123...) for upload mode.")
    text: Text = Field(
        "{report} for {period}: {rows} rows\n{summary}",
        description="Message (webhook) or the file's initial comment (upload), with placeholders.",
    )
    link: Text | None = Field(
        None, description="A URL added to the message, e.g. where the report can be read."
    )

    @model_validator(mode="after")
    def _check_mode(self) -> SlackTargetConfig:
        if self.mode == "upload" and not self.channel:
            raise ValueError(
                "mode 'upload' needs 'channel': the channel id (e.g. C0123ABCD) to share the file in"
            )
        if self.mode == "webhook" and self.channel:
            raise ValueError("an incoming webhook posts to the channel it was created for: remove 'channel'")
        if self.channel and not _has_reference(self.channel) and not _SLACK_CHANNEL.match(self.channel):
            raise ValueError(
                f"channel {self.channel!r} is not a Slack channel id (like C0123ABCD; a name like #general "
                "does not work with the upload API): copy it from the channel's details in Slack"
            )
        return self


class HttpTargetConfig(NetworkTargetBase):
    """Upload to an HTTP endpoint: a multipart form, or the file as the request body."""

    type: Literal["http"]
    connection: ConnId = Field(description="Connection slot of the API: base URL and the secret for auth.")
    endpoint: Text = Field(min_length=1, description="Path relative to the base URL, with placeholders.")
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    mode: Literal["multipart", "raw"] = Field(
        "multipart", description="multipart: a form with the file field; raw: the file is the body."
    )
    field: str = Field("file", min_length=1, description="Form field of the file (multipart).")
    form: dict[str, Text] = Field(
        default_factory=dict, description="More form fields (multipart), with placeholders."
    )
    headers: dict[str, Text] = Field(
        default_factory=dict, description="Extra request headers, with placeholders (never credentials)."
    )
    content_type: str | None = Field(None, description="Body content type (raw); default: the report's.")
    auth: AuthOptions = Field(
        default_factory=lambda: AuthOptions(type="none"),
        description="How the connection's secret is used: type none | basic | api_key | bearer | "
        "oauth2_client_credentials, with header, token_url, scope.",
    )

    @model_validator(mode="after")
    def _check_options(self) -> HttpTargetConfig:
        if self.form and self.mode != "multipart":
            raise ValueError("'form' fields are only sent in mode 'multipart'")
        if self.field in self.form:
            raise ValueError(f"'form' has a field {self.field!r}, the name of the file field: rename one")
        secret = sorted(h for h in self.headers if h.lower() in _SECRET_HEADERS)
        if secret:
            raise ValueError(
                f"header(s) {secret} carry credentials: put the secret in the connection and use 'auth'"
            )
        return self


class LocalTargetConfig(TargetBase):
    """Copy to a folder or an object-storage location (``airflow.sdk.ObjectStoragePath``)."""

    type: Literal["local"]
    path: Text = Field(
        min_length=1,
        description="Folder path or URL (file:///data/out, s3://bucket/prefix), with placeholders.",
    )
    connection: ConnId | None = Field(None, description="Connection slot with object-storage credentials.")
    create_folder: bool = Field(False, description="Create the folder if it is missing.")


def _phone(value: str) -> str:
    from b2b_integrations.delivery.sms_text import e164

    return value if _has_reference(value) else e164(value)


PhoneNumber = Annotated[str, AfterValidator(_phone)]


class SmsTargetConfig(NetworkTargetBase):
    """A text message (no file) through a Twilio-compatible Messages API: "your report is ready"."""

    type: Literal["sms"]
    connection: ConnId = Field(
        description="Connection slot: the account SID as login, the auth token as password, the API base "
        "URL as host (default https://api.twilio.com)."
    )
    to: PhoneNumber = Field(description="One recipient, E.164 (+4512345678); a target per number.")
    sender: PhoneNumber = Field(description="The sending number, E.164.")
    text: Text = Field(
        "{report} for {period} is ready: {name} ({rows} rows)", description="Message, with placeholders."
    )
    max_segments: int = Field(
        3, ge=1, le=10, description="Longest message in SMS segments (160 GSM-7 / 70 UCS-2 characters each)."
    )
    too_long: Literal["truncate", "refuse"] = Field(
        "truncate", description="A longer text is cut (ending in '...') or refused."
    )


TARGET_MODELS: tuple[type[TargetBase], ...] = (
    SftpTargetConfig,
    EmailTargetConfig,
    SlackTargetConfig,
    HttpTargetConfig,
    LocalTargetConfig,
    SmsTargetConfig,
)
TARGET_TYPES: frozenset[str] = frozenset(m.model_fields["type"].annotation.__args__[0] for m in TARGET_MODELS)  # type: ignore[union-attr]
TargetConfig = Annotated[Union[TARGET_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007


def name_targets(targets: Sequence[TargetBase]) -> list[TargetBase]:
    """Give unnamed targets their default name (see the module docstring) and require unique names."""
    unnamed_of_type: dict[str, int] = {}
    named: list[TargetBase] = []
    for target in targets:
        if target.name is None:
            kind: str = target.type  # type: ignore[attr-defined]
            count = unnamed_of_type[kind] = unnamed_of_type.get(kind, 0) + 1
            target = target.model_copy(update={"name": kind if count == 1 else f"{kind}_{count}"})
        named.append(target)
    positions: dict[str, list[int]] = {}
    for index, target in enumerate(named):
        positions.setdefault(target.target_name, []).append(index)
    clashes = {name: where for name, where in positions.items() if len(where) > 1}
    if clashes:
        details = "; ".join(f"{name!r} is used by targets {where}" for name, where in clashes.items())
        raise ValueError(
            f"target names must be unique, they identify deliveries in the ledger: {details}; "
            "give each target an explicit 'name'"
        )
    return named


NamedTargets = Annotated[list[TargetConfig], Field(min_length=1), AfterValidator(name_targets)]
"""A deliver step's targets: validated, default names given, names unique."""


@cache
def _adapter() -> TypeAdapter[list[TargetBase]]:
    from pydantic import TypeAdapter

    return TypeAdapter(NamedTargets)


def parse_targets(raw: Any) -> list[TargetBase]:
    """Validate and name a list of target dicts; a ValueError lists every problem with its position."""
    try:
        targets = _adapter().validate_python(raw)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            loc = list(error["loc"])
            # Drop the discriminator tag pydantic puts in the location: [0].sftp.folder -> [0].folder.
            if len(loc) > 1 and loc[1] in TARGET_TYPES:
                del loc[1]
            where = f"targets[{loc[0]}]" + "".join(f".{part}" for part in loc[1:]) if loc else "targets"
            problems.append(f"{where}: {error['msg']}")
        raise ValueError("; ".join(problems)) from None
    return targets
