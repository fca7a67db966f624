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


class StepFailed(StepError):
    """Any other error a step raised (a database's ``UndefinedTable``, a missing connection, a bug),
    re-raised with the customer, integration, flow and step in its message; the original is its
    ``__cause__``. Airflow retries it as it would have retried the original."""


# Names of exception classes (anywhere in an exception's MRO) that mean "the infrastructure did not answer":
# connection refused or reset, timeouts, a database that went away or is locked. Matched by name so this
# module imports no driver: psycopg/psycopg2/sqlite3/SQLAlchemy ``OperationalError`` and
# ``InterfaceError``, httpx ``TransportError``, requests ``ConnectionError``/``Timeout``.
_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionError",
        "TimeoutError",
        "Timeout",
        "TransportError",
        "OperationalError",
        "InterfaceError",
        "DisconnectionError",
        "AirflowRuntimeError",
        "ServerResponseError",
    }
)


def is_transient(error: BaseException) -> bool:
    """Whether a retry of the same work may succeed.

    Used where one message or record fails a step: a transient error fails the task (Airflow retries it and
    the inbox position stays), anything else is deterministic on that input and the message is quarantined.
    ``RetriableStepError`` is transient and ``FatalStepError`` is not, whatever it wraps; errors from
    Airflow's Execution API are transient (a poison value the API cannot return is recognised where it is
    read, see ``StepOperator``). Everything else (``ValueError``, ``KeyError``, a customer transform's own
    exceptions) is taken as a property of the input.
    """
    if isinstance(error, RetriableStepError):
        return True
    if isinstance(error, FatalStepError):
        return False
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__)
