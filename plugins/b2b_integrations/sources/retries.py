"""When to retry an API call and how long to wait: pure decisions, so they are testable without a server.

* 429: wait what ``Retry-After`` says (seconds or an HTTP date), else back off;
* 5xx, timeouts, dropped connections, a 2xx whose body is not JSON: exponential backoff with full jitter;
* any other 4xx: no retry; retrying cannot fix a bad request or bad credentials.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` tries per request; waits grow from ``base_seconds`` to ``max_seconds``."""

    attempts: int = 6
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    max_retry_after: float = 120.0
    """A longer ``Retry-After`` than this fails the call instead of blocking a worker slot for it."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_seconds < 0 or self.max_seconds < self.base_seconds:
            raise ValueError(f"invalid retry policy {self}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff before try ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def wait_for(
        self,
        attempt: int,
        status: int | None,
        retry_after: str | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next try, or None to give up.

        ``status`` is None for a transport failure (timeout, dropped connection) or an unreadable body.
        """
        if attempt >= self.attempts:
            return None
        if status is not None and status not in TRANSIENT_STATUSES:
            return None
        if status == 429 and retry_after:
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                return None if seconds > self.max_retry_after else seconds
        return self.backoff(attempt, rng)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or HTTP-date); None if unreadable."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone accepts "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
