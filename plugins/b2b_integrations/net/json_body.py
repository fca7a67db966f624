"""The JSON acceptance policy of every inbound endpoint (webhooks, sync calls, app events): one parser.

A body is accepted only if every consumer downstream can take it, so a message is refused at the door
(400 with a reason the sender can act on) instead of failing later in a customer's DAG, for ever:

* **UTF-8** (RFC 8259 §8.1): bodies are stored and re-read as UTF-8 text;
* **finite numbers only**: ``NaN``, ``Infinity``, ``-Infinity`` (what Python's ``json.dumps`` writes for
  non-finite floats) and numbers too large for a double (``1e999``) are refused; Airflow's Execution API,
  PostgreSQL ``jsonb`` and most JSON parsers refuse them;
* **integers within int64** (-2^63 .. 2^63-1, at most 19 digits): what a ``BIGINT`` column and most
  languages hold exactly; the size is checked on the digits before converting, so a 5000-digit integer is
  a 400, not Python's int-string limit (``ValueError``, a 500);
* **nesting at most** :data:`MAX_DEPTH` levels of arrays/objects: counted on the raw text before parsing,
  so no input makes the parser recurse deeply (50 000 levels used to be a ``RecursionError``, a 500);
* **text that PostgreSQL can store**: no ``\\u0000`` and no unpaired UTF-16 surrogate escape in any string.

The size limit stays with each endpoint (it stops reading there). :func:`parse_json` raises only
:class:`JsonRefused`, whatever the bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_INT_DIGITS = 19

# JSON strings: brackets inside them do not nest. The unrolled-loop form is linear on long strings. An
# unterminated string leaves its quote unmatched and the brackets after it counted, which can only count
# more nesting (refuse more), never less than json.loads would recurse into.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class JsonRefused(ValueError):
    """The body breaks the JSON policy; ``reason`` is a stable code, ``detail`` says what to fix."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def answer_body(self) -> dict[str, str]:
        """The body of the 400 answer, the same on every endpoint."""
        return {"error": "bad_json", "reason": self.reason, "detail": self.detail}


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body, if the policy (module docstring) accepts it.

    :raises JsonRefused: ``reason`` one of ``not_utf8``, ``not_json``, ``too_deep``, ``non_finite_number``,
        ``integer_out_of_range``, ``unstorable_string``.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonRefused("not_utf8", f"the body is not UTF-8 (byte {e.start})") from None
    check_depth(body, max_depth)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite)
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise JsonRefused("not_json", f"the body is not JSON: {e}") from None
    if _SUSPECT_ESCAPE.search(text):
        _check_strings(value)
    return value


def check_depth(body: bytes, max_depth: int = MAX_DEPTH) -> None:
    """:raises JsonRefused: when arrays/objects nest deeper than ``max_depth`` (outside strings)."""
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    # Fast path, all in C: each pass drops the innermost pairs, so a text that empties within max_depth
    # passes nests no deeper than that. What is left (deep or unbalanced) is counted exactly.
    nested = brackets.replace(b"{", b"[").replace(b"}", b"]")
    for _ in range(max_depth):
        shorter = nested.replace(b"[]", b"")
        if shorter == nested:
            break
        nested = shorter
    if not nested:
        return
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > max_depth:
                raise JsonRefused(
                    "too_deep", f"the JSON nests deeper than {max_depth} levels of arrays/objects"
                )
        else:
            depth -= 1
            if depth < 0:  # a close with nothing open: json.loads stops here, no deeper
                return


def check_value_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """The same nesting limit on an already parsed value (a walk without recursion).

    For writers that get values from elsewhere than :func:`parse_json`: a deeply nested value in an asset
    event's extra makes Airflow's scheduler exit while it reads the event (pydantic's recursion limit), so
    nothing that deep may be stored, whoever produced it.

    :raises JsonRefused: ``too_deep``.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth + 1 > max_depth:
                raise JsonRefused(
                    "too_deep", f"the JSON nests deeper than {max_depth} levels of arrays/objects"
                )
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def _refuse_constant(name: str) -> Any:
    raise JsonRefused("non_finite_number", f"{name} is not a JSON number; send finite numbers only")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(
            "integer_out_of_range", _int_detail(f"an integer with {len(digits.lstrip('-'))} digits")
        )
    value = int(digits)
    if not INT64_MIN <= value <= INT64_MAX:
        raise JsonRefused("integer_out_of_range", _int_detail(f"the integer {value}"))
    return value


def _int_detail(what: str) -> str:
    return f"{what} is outside the 64-bit range ({INT64_MIN} .. {INT64_MAX}); send it as a string"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(
            "non_finite_number",
            f"the number {text[:40]} is too large for a 64-bit float; send it as a string",
        )
    return value


def _check_strings(value: Any) -> None:
    # Only when the text has a \u0000 or surrogate escape (rare), so ordinary bodies pay nothing. Iterative:
    # the depth is bounded already, but a walk need not rely on that.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                pending.append(child)
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            _check_string(item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise JsonRefused("unstorable_string", "a string holds \\u0000, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefused(
            "unstorable_string", "a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
        ) from None
