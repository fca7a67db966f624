"""One exception tree for the whole package.

Config problems are collected (every problem in every file, not just the first) into :class:`ConfigError`.
Runtime step errors are split into fatal (retrying cannot help) and retriable ones, so operators can map
them onto Airflow's retry machinery. Messages never carry secrets or raw response bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class B2BError(Exception):
    """Root of every error raised by b2b-integrations."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem found in one config file, located as precisely as the YAML allows."""

    file: str
    key_path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = self.key_path or "<document>"
        return f"{where}: {key}: {self.message}"


class ConfigError(B2BError):
    """A config file (or several) is invalid; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = sorted(problems, key=lambda p: (p.file, p.line or 0, p.key_path))
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        header = f"{count} config problem{'s' if count != 1 else ''}:"
        return "\n".join([header, *(f"  {p}" for p in self.problems)])


class StepError(B2BError):
    """A step failed at run time. Subclasses say whether a retry can help."""


class FatalStepError(StepError):
    """Retrying cannot help (bad config, bad credentials, 4xx). Fails the task without retries."""


class RetriableStepError(StepError):
    """Transient failure (timeouts, 5xx, 429, locked files): Airflow's retries apply."""
