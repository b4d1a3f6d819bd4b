"""Times of posts (as dumps write them) and of filters (as people type them), read as UTC.

Dumps: ISO 8601, the Twitter v1.1 format (``Wed Oct 10 20:19:24 +0000 2018``), numbers as Unix
seconds (milliseconds above 1e11), and all-digit strings as dates when they have 4 (``YYYY``) or
8 (``YYYYMMDD``) digits, else as Unix seconds; or one `time_format` a user names (a strptime
format such as ``%d/%m/%Y``, or ``unix`` / ``unix_ms``).

Filters: only dates, in ISO 8601 or as ``YYYY``, ``YYYYMM``, ``YYYYMMDD``; Unix seconds only
when written ``@1414022400``, because ``--since 20141023`` means a day, not a second of 1970.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import HiclError

V1_FORMAT = "%a %b %d %H:%M:%S %z %Y"
_V1 = re.compile(r"([A-Za-z]{3}) ([A-Za-z]{3}) (\d\d) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d) (\d{4})")
_DAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
UNIX_FORMATS = ("unix", "unix_ms")
_DIGIT_DATES = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d"}
_YEAR_MONTH = re.compile(r"^\d{4}-\d{2}$")


def check_time_format(time_format: str | None, name: str = "--time-format") -> None:
    """Refuse a `time_format` that is neither a unix name nor a strptime format with a directive; `name` says
    where it was given (the option, or a request's field)."""
    if time_format is None or time_format in UNIX_FORMATS:
        return
    if "%" not in time_format:
        raise HiclError(
            f"{name} {time_format!r} has no strptime directive; write e.g. '%d/%m/%Y %H:%M' "
            f"or one of {', '.join(UNIX_FORMATS)}"
        )
    try:
        sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone.utc).strftime(time_format)
        datetime.strptime(sample, time_format)
    except (ValueError, UnicodeError) as exc:
        raise HiclError(f"{name} {time_format!r} is not a strptime format ({exc})") from None


def _utc(moment: datetime) -> datetime:
    """Naive UTC: aware times converted, naive ones taken as UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def parse_post_time(value: Any, time_format: str | None = None) -> datetime | None:
    """A post's creation time from a dump value; None when absent.

    Raises ValueError (or OverflowError, OSError for absurd numbers) when it is present but
    unreadable; the readers turn that into the post note ``bad_created_at``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return _utc(_from_unix(value / 1000 if value > 1e11 else value))
    text = value.strip()
    if time_format in UNIX_FORMATS:
        number = float(text)
        return _utc(_from_unix(number / 1000 if time_format == "unix_ms" else number))
    if time_format is not None:
        return _utc(datetime.strptime(text, time_format))
    if text.isdigit():
        if len(text) in (4, 8):
            return datetime.strptime(text, _DIGIT_DATES[len(text)])
        return parse_post_time(int(text))
    v1 = _V1.fullmatch(text)
    if v1 is not None and v1[1].lower() in _DAYS and v1[2].lower() in _MONTHS:  # as strptime reads it, 2x faster
        _, month, day, hour, minute, second, sign, hours, minutes, year = v1.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        moment = datetime(int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second))
        return moment - offset if sign == "+" else moment + offset
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return _utc(datetime.strptime(text, V1_FORMAT))


def time_warning(where: object, unreadable: int, timed: int, time_format: str | None) -> str | None:
    """What to say of a file (`where`) whose times `unreadable` of `timed` posts could not be read, or None.

    Without a format, a few odd times are noise, and most unreadable means the format is unknown:
    name it. With one, every time that does not match it is worth a count: it is a second format.
    """
    if not unreadable:
        return None
    if time_format is not None:
        return (f"{unreadable} of {timed} times in {where} did not match --time-format {time_format!r}; "
                "those posts are kept without a time (bad_created_at)")
    if 2 * unreadable > timed:
        return (f"{where}: the time of {unreadable} of {timed} posts could not be read (bad_created_at); "
                "name its format with --time-format, e.g. --time-format '%d/%m/%Y %H:%M'")
    return None


def parse_filter_time(value: str | datetime) -> datetime:
    """The moment a ``--since`` / ``--until`` value names, or a `HiclError` saying how to write one."""
    if isinstance(value, datetime):
        return _utc(value)
    text = str(value).strip()
    try:
        if text.startswith("@"):
            return _utc(_from_unix(float(text[1:])))
        if text.isdigit():
            if len(text) not in _DIGIT_DATES:
                raise HiclError(
                    f"not a date: {value!r}; write a date as YYYY, YYYYMM, YYYYMMDD or ISO 8601 "
                    f"(2014-10-23T12:00:00Z), and Unix seconds with an @, e.g. @{text}"
                )
            return datetime.strptime(text, _DIGIT_DATES[len(text)])
        if _YEAR_MONTH.match(text):
            return datetime.strptime(text, "%Y-%m")
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        raise HiclError(
            f"not a date or time: {value!r}; use ISO 8601 (2024-06-01 or 2024-06-01T12:00:00Z), "
            "YYYY, YYYYMM or YYYYMMDD, or @UNIX_SECONDS"
        ) from None
