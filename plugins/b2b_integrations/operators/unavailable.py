"""Stand-in for step kinds that a later version implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.errors import StepNotAvailableError
from b2b_integrations.operators.base import StepOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class StepNotAvailableOperator(StepOperator):
    """
    Fails at run time, without retries, saying which step kind is missing. The DAG still parses, so a
    template can be written and deployed before every step kind it uses exists.

    :param kind: The step kind named in the template.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#fbe8e8"

    def __init__(self, *, kind: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def run_step(self, context: Context) -> Any:
        raise StepNotAvailableError(
            f"step kind {self.kind!r} is not yet available in this version of b2b-integrations; "
            "see the README's step kinds table"
        )
