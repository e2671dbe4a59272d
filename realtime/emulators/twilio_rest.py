"""REST plumbing of the Twilio emulator: forms, errors, list filters, pages.

Parses what the ``twilio`` library sends (form bodies, query strings with
``StartTime>``-style inequalities) and builds what it reads back (Twilio's
error bodies, paged lists with ``next_page_uri``). No Django, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from realtime.emulators.twilio_far_ends import RestFault
from realtime.emulators.twilio_resources import API_VERSION

__all__ = [
    "CALL_PATH",
    "MAX_PAGE_SIZE",
    "TIME_PARAMS",
    "Form",
    "InjectedFault",
    "Query",
    "RestError",
    "TimeFilter",
    "check_url",
    "list_page",
    "read_moment",
]

MAX_PAGE_SIZE: Final = 1000


class RestError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


class Form:
    """A form-encoded body: repeated names keep every value."""

    def __init__(self, body: bytes) -> None:
        self.pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]

    def method(self, name: str) -> str:
        value = (self.get(name) or "POST").upper()
        if value not in ("GET", "POST"):
            raise RestError(400, 21200, f"{name} must be GET or POST, got {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            raise RestError(400, 21200, f"{name} must be {low}..{high}, got {value!r}")
        return int(value)


class InjectedFault(Exception):
    """An injected ``RestFault``: the app replies with it (or drops)."""

    def __init__(self, fault: RestFault) -> None:
        super().__init__(fault.error_message())
        self.fault = fault

    def body(self) -> dict[str, Any]:
        code = self.fault.error_code()
        return {
            "code": code,
            "message": self.fault.error_message(),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": self.fault.status,
        }


class Query(Form):
    """A query string: ``StartTime>=2026-01-01`` arrives as ``StartTime>``."""

    def __init__(self, query: str) -> None:
        self.pairs = parse_qsl(query, keep_blank_values=True)


TIME_PARAMS: Final = (
    "StartTime",
    "StartTime>",
    "StartTime<",
    "EndTime",
    "EndTime>",
    "EndTime<",
)


def read_moment(name: str, value: str) -> tuple[datetime, bool]:
    """Read ``YYYY-MM-DD`` (midnight UTC, True) or an ISO 8601 date-time."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return day, True
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RestError(400, 21200, f"Invalid {name}: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC), False


@dataclass(frozen=True, slots=True)
class TimeFilter:
    """``StartTime``/``EndTime`` and their inequalities, as Twilio reads them.

    ``X=YYYY-MM-DD``: on that UTC day (a date-time: on its day).
    ``X>=v`` (sent as ``X>``): at or after ``v``; ``X<=v`` (``X<``): at or
    before ``v``; a bare date is its midnight UTC ("on or after / on or
    before midnight of this date"). Times compare to the second, as the
    resource shows them. A call without that time (not dialed yet, or not
    ended) matches no filter on it.
    """

    day: datetime | None = None
    after: datetime | None = None
    before: datetime | None = None

    @classmethod
    def read(cls, query: Form, name: str) -> TimeFilter:
        day = after = before = None
        if (value := query.get(name)) is not None:
            day = read_moment(name, value)[0].replace(
                hour=0, minute=0, second=0, microsecond=0
            )
        if (value := query.get(name + ">")) is not None:
            after = read_moment(name + ">", value)[0]
        if (value := query.get(name + "<")) is not None:
            before = read_moment(name + "<", value)[0]
        return cls(day, after, before)

    def matches(self, moment: datetime | None) -> bool:
        if self.day is None and self.after is None and self.before is None:
            return True
        if moment is None:
            return False
        moment = moment.replace(microsecond=0)
        if self.day is not None and not (
            self.day <= moment < self.day + timedelta(days=1)
        ):
            return False
        if self.after is not None and moment < self.after:
            return False
        return self.before is None or moment <= self.before


def list_page(
    key: str,
    items: list[dict[str, Any]],
    path: str,
    query: Form,
    filters: list[tuple[str, str]],
) -> dict[str, Any]:
    """One page of a list, with Twilio's paging fields.

    ``PageSize`` (1..1000, default 50) and ``Page`` choose the page;
    ``next_page_uri`` also carries ``PageToken=PA<sid of the page's last
    item>``, and a page with a token starts after that item, so calls created
    between two page reads do not shift the pages.
    """
    size = query.integer("PageSize", 50, 1, MAX_PAGE_SIZE)
    number = query.integer("Page", 0, 0, 1_000_000)
    start = number * size
    token = query.get("PageToken")
    if token and token.startswith("PA"):
        sids = [item["sid"] for item in items]
        if token[2:] in sids:
            start = sids.index(token[2:]) + 1
    chunk = items[start : start + size]

    def uri(page: int, page_token: str | None = None) -> str:
        pairs = [*filters, ("PageSize", str(size)), ("Page", str(page))]
        if page_token is not None:
            pairs.append(("PageToken", page_token))
        return f"{path}?{urlencode(pairs, quote_via=quote)}"

    more = start + size < len(items)
    return {
        key: chunk,
        "start": start,
        "end": start + max(len(chunk) - 1, 0),
        "page": number,
        "page_size": size,
        "first_page_uri": uri(0),
        "next_page_uri": (
            uri(number + 1, "PA" + chunk[-1]["sid"]) if more and chunk else None
        ),
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "uri": uri(number, token),
    }


def check_url(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RestError(400, 21205, f"{name} is not a valid URL: {value}")
    return value


CALL_PATH: Final = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)"
    r"/(?P<kind>Calls|Conferences)(?:/(?P<sid>[^/]+))?\.json$"
)
