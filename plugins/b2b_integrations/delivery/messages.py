"""Placeholders in delivery texts (subjects, bodies, Slack messages, file names, endpoints): pure functions.

A placeholder is ``{name}`` with a name from :data:`PLACEHOLDERS`, or ``{summary.<label>}`` for one figure
of the report's summary (labels may contain spaces: ``{summary.Total revenue}``); ``{summary}`` alone is
every figure, one ``label: value`` line each. Anything else in braces that does not look like a name
(``{"a": 1}``, Jinja's ``{{ ds }}``) is left as written. Names are checked when the config is loaded, so a
typo is a config error, not a message sent with a hole in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDERS: dict[str, str] = {
    "customer": "customer id",
    "integration": "integration name",
    "flow": "flow name",
    "report": "report id",
    "period": "the report's period (the run's ds)",
    "period_start": "start of the period (ISO)",
    "period_end": "end of the period (ISO)",
    "rows": "rows in the report",
    "bytes": "size of the file in bytes",
    "name": "file name as delivered",
    "format": "file format (pdf, csv, xlsx, ...)",
    "summary": "every summary figure, one 'label: value' line each",
}
SUMMARY_PREFIX = "summary."
_PLACEHOLDER = re.compile(r"\{(summary\.[^{}]+|[A-Za-z_][A-Za-z0-9_]*)\}")


def placeholder_names(template: str) -> list[str]:
    """The placeholders a text uses, in order of appearance."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def check_template(template: str) -> None:
    """Raise ValueError naming every unknown placeholder (summary labels are only known at run time)."""
    unknown = [
        name
        for name in placeholder_names(template)
        if name not in PLACEHOLDERS and not name.startswith(SUMMARY_PREFIX)
    ]
    if unknown:
        known = ", ".join(f"{{{n}}}" for n in PLACEHOLDERS)
        raise ValueError(
            f"unknown placeholder(s) {', '.join(f'{{{n}}}' for n in unknown)}; known: {known}, "
            "and {summary.<label>} for one summary figure"
        )


def summary_text(summary: Mapping[str, Any]) -> str:
    return "\n".join(f"{label}: {format_value(value)}" for label, value in summary.items())


def format_value(value: Any) -> str:
    if isinstance(value, Mapping):  # a money figure kept per currency: "EUR 1300.49, USD 20.0"
        return ", ".join(f"{code} {format_value(figure)}" for code, figure in value.items())
    return "" if value is None else str(value)


def render(template: str, values: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """Fill the placeholders of ``template``; a summary label the report does not have is a ValueError."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "summary":
            return summary_text(summary)
        if name.startswith(SUMMARY_PREFIX):
            label = name[len(SUMMARY_PREFIX) :]
            if label not in summary:
                available = ", ".join(repr(k) for k in summary) or "none"
                raise ValueError(f"the report has no summary figure {label!r} (it has: {available})")
            return format_value(summary[label])
        if name not in values:
            raise ValueError(f"unknown placeholder {{{name}}}")
        return format_value(values[name])

    return _PLACEHOLDER.sub(fill, template)


_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_file_name(name: str) -> str:
    """Raise ValueError unless ``name`` is a plain file name: no folders, no control characters, not hidden."""
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or _UNSAFE_NAME.search(name)
        or len(name) > 255
    ):
        raise ValueError(
            f"{name!r} is not a plain file name (no '/', '\\', control characters or leading '.'; at most 255 "
            "characters)"
        )
    return name
