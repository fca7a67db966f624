"""The period a report covers, from the run's data interval or as the last full calendar period.

Airflow 3's default timetable for cron schedules (``CronTriggerTimetable``) gives runs a zero-length data
interval (start == end == the run time), so "the run's data interval" only works with interval timetables
(``create_cron_data_intervals = True``, or a timedelta schedule). A calendar unit (``period: month``)
works with either: the month that ended at or before the run's interval end, in a stated time zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIOD_UNITS = ("interval", "day", "week", "month", "quarter", "year")


def check_timezone(name: str) -> ZoneInfo:
    """The zone called ``name`` (IANA, e.g. Europe/Berlin) or ValueError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


def plain_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC (Airflow hands pendulum objects; drivers and pandas want plain ones).

    A naive value is taken as UTC, as Airflow stores times.
    """
    if value.tzinfo is None:
        return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def report_period(
    unit: str,
    interval_start: datetime | None,
    interval_end: datetime | None,
    timezone: str = "UTC",
    *,
    allow_point: bool = False,
) -> tuple[datetime, datetime]:
    """[start, end) of the report: the data interval itself, or the last full ``unit`` ending at or before
    ``interval_end`` in ``timezone``. ValueError explains what is missing.

    A zero-length interval is refused unless ``allow_point``: a query filtering on it would silently find
    nothing. Reports whose data does not depend on the period (a snapshot) may allow it.
    """
    if unit == "interval":
        if interval_start is None or interval_end is None:
            raise ValueError(
                "the run has no data interval; set the step's 'period' to day, week, month, quarter or year"
            )
        start, end = plain_utc(interval_start), plain_utc(interval_end)
        if start > end or (start == end and not allow_point):
            raise ValueError(
                f"the run's data interval is empty ({start.isoformat()} to {end.isoformat()}): cron schedules "
                "use CronTriggerTimetable by default; set the step's 'period' (e.g. month) or enable "
                "[scheduler] create_cron_data_intervals"
            )
        return start, end
    if unit not in PERIOD_UNITS:
        raise ValueError(f"unknown period {unit!r}; expected one of {list(PERIOD_UNITS)}")
    if interval_end is None:
        raise ValueError("the run has no logical date or data interval to take the period from")
    zone = check_timezone(timezone)
    local = plain_utc(interval_end).astimezone(zone)
    end_day = _floor(unit, local.date())
    start_day = _previous(unit, end_day)
    return _midnight(start_day, zone), _midnight(end_day, zone)


def period_label(start: datetime, end: datetime) -> str:
    """``2026-11-01 – 2026-11-30`` for whole days (the end shown inclusive), else both times with zone."""
    zone = start.tzname() or ""
    if start == end:
        return f"{start:%Y-%m-%d %H:%M} {zone}".rstrip()
    whole_days = start.time() == end.time() == datetime.min.time() and end > start
    if whole_days:
        last = (end - timedelta(days=1)).date()
        first = start.date()
        return first.isoformat() if first == last else f"{first.isoformat()} – {last.isoformat()}"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {zone}".rstrip()


def _floor(unit: str, day: date) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())  # Monday
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return date(day.year, 1, 1)


def _previous(unit: str, start: date) -> date:
    if unit == "day":
        return start - timedelta(days=1)
    if unit == "week":
        return start - timedelta(days=7)
    if unit == "year":
        return date(start.year - 1, 1, 1)
    months = 1 if unit == "month" else 3
    index = start.year * 12 + start.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)
