"""Run a Python callable over the records of a flow (pandas in, pandas out)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import StepOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def import_callable(dotted_path: str) -> Callable[..., Any]:
    """Import ``package.module.function`` (or ``package.module:function``) with a clear error."""
    module_name, sep, attr = dotted_path.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise FatalStepError(f"callable {dotted_path!r} must be a dotted path 'package.module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FatalStepError(f"cannot import module {module_name!r} of callable {dotted_path!r}: {e}") from e
    func = getattr(module, attr, None)
    if not callable(func):
        raise FatalStepError(f"{module_name!r} has no callable named {attr!r}")
    return func


class TransformOperator(StepOperator):
    """
    Call ``callable(frame, **options)`` where ``frame`` is the upstream step's records as a pandas
    DataFrame (None for a first step). The callable returns a DataFrame, a list of dicts, or None (no rows);
    the result is staged for the next step and its reference returned to XCom.

    :param callable: Dotted path of the function, e.g. ``b2b_integrations.transforms.demo.flag_low_stock``.
    :param options: Keyword arguments for the function. (templated)
    """

    template_fields: Sequence[str] = ("options",)
    ui_color = "#f3e8fb"

    def __init__(self, *, callable: str, options: dict[str, Any] | None = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(**kwargs)
        self.callable = callable
        self.options = options or {}

    def run_step(self, context: Context) -> Any:
        import pandas as pd

        func = import_callable(self.callable)
        frame = self.load_input(context)
        rows_in = 0 if frame is None else len(frame)
        result = func(frame, **self.options)
        if result is None:
            result = pd.DataFrame()
        elif isinstance(result, list):
            if not all(isinstance(row, dict) for row in result):
                raise FatalStepError(f"callable {self.callable!r} returned a list that is not all dicts")
            result = pd.DataFrame.from_records(result)
        elif not isinstance(result, pd.DataFrame):
            raise FatalStepError(
                f"callable {self.callable!r} returned {type(result).__name__}; expected a DataFrame, "
                "a list of dicts or None"
            )
        self.log.info("Transform %s: %d rows in, %d rows out", self.callable, rows_in, len(result))
        return self.stage_output(context, result)
