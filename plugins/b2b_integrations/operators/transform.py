"""Run a Python callable over the records of a flow (pandas in, pandas out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.callables import import_callable
from b2b_integrations.errors import FatalStepError, is_transient
from b2b_integrations.operators.base import MESSAGE_ID, RECEIVED_AT, StepOperator

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context


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
        func = import_callable(self.callable)
        frame = self.load_input(context)
        rows_in = 0 if frame is None else len(frame)
        if frame is not None and MESSAGE_ID in frame.columns:
            result = self._transform_messages(func, frame)
        else:
            result = self._call(func, frame)
        self.log.info("Transform %s: %d rows in, %d rows out", self.callable, rows_in, len(result))
        return self.stage_output(context, result)

    def _call(self, func: Callable[..., Any], frame: pd.DataFrame | None) -> pd.DataFrame:
        import pandas as pd

        result = func(frame, **self.options)
        if result is None:
            return pd.DataFrame()
        if isinstance(result, list):
            if not all(isinstance(row, dict) for row in result):
                raise FatalStepError(f"callable {self.callable!r} returned a list that is not all dicts")
            return pd.DataFrame.from_records(result)
        if not isinstance(result, pd.DataFrame):
            raise FatalStepError(
                f"callable {self.callable!r} returned {type(result).__name__}; expected a DataFrame, "
                "a list of dicts or None"
            )
        return result

    def _transform_messages(self, func: Callable[..., Any], frame: pd.DataFrame) -> pd.DataFrame:
        """Inbox records: transform them so that a message the callable fails on is quarantined and the
        others go on, and every output row still names the message it came from.

        The whole batch is tried first. It is used as is when it succeeds and the callable kept the
        message-id column. Otherwise the callable runs once per message: a failure (other than a transient
        one, which fails the task) is then that message's alone, and each output row gets its message's
        id. Every message's rows come from exactly one successful call, so none is output twice.
        """
        import pandas as pd

        if frame.empty:
            return pd.DataFrame(columns=[MESSAGE_ID, RECEIVED_AT])
        try:
            whole = self._call(func, frame)
        except Exception as e:
            if is_transient(e):
                raise
            self.log.warning(
                "Transform %s failed on the batch (%s); running it message by message to find the message(s)",
                self.callable,
                _describe(e),
            )
        else:
            if MESSAGE_ID in whole.columns:
                return whole
        parts = []
        for message_id, group in frame.groupby(MESSAGE_ID, sort=False):
            try:
                out = self._call(func, group.reset_index(drop=True))
            except Exception as e:
                if is_transient(e):
                    raise
                self.quarantine(
                    str(message_id),
                    f"transform {self.callable} failed on it: {_describe(e)}",
                    received_at=_first(group, RECEIVED_AT),
                )
                continue
            if MESSAGE_ID not in out.columns:
                out = out.assign(**{MESSAGE_ID: message_id, RECEIVED_AT: _first(group, RECEIVED_AT)})
            parts.append(out)
        parts = [p for p in parts if not p.empty]
        if not parts:
            return pd.DataFrame(columns=[MESSAGE_ID, RECEIVED_AT])
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text[:500]}" if text else type(error).__name__


def _first(group: pd.DataFrame, column: str) -> Any:
    if column not in group.columns or group.empty:
        return None
    value = group[column].iloc[0]
    return value if isinstance(value, str) else None
