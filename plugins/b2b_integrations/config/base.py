"""Shared pydantic building blocks for config models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

# Lower-case snake_case without double underscores: DAG ids join customer, integration and flow with "__",
# so a double underscore inside a name would make a DAG id ambiguous.
IDENT_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN, max_length=60)]

# Customer-supplied text must never become Airflow Jinja: substituted into a templated option it could
# otherwise read other customers' connections and secrets at run time.
JINJA_MARKERS = re.compile(r"\{\{|\{%|\{#")


def _no_jinja(value: str) -> str:
    if JINJA_MARKERS.search(value):
        raise ValueError("may not contain Jinja markers ('{{', '{%', '{#')")
    return value


JINJA_REFUSED = "customer values may not contain Jinja markers ('{{', '{%', '{#')"


def jinja_markers_in(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The key path of every string in ``value`` that holds a Jinja marker (``()``: ``value`` itself)."""
    if isinstance(value, str) and JINJA_MARKERS.search(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from jinja_markers_in(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from jinja_markers_in(item, (*path, index))


PlainText = Annotated[str, AfterValidator(_no_jinja)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config file must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
