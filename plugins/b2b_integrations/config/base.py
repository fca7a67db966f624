"""Shared pydantic building blocks for config models."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# Lower-case snake_case without double underscores: DAG ids join customer, integration and flow with "__",
# so a double underscore inside a name would make a DAG id ambiguous.
IDENT_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN, max_length=60)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config file must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
