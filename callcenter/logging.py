"""Structured logs with the call id on every line (F-53).

The call id lives in a context variable, so every coroutine or thread that works for a
call (the bridge, a webhook, a service called from either) logs it without passing it
around. `bind_call_id()` sets it for a block; the filter copies it onto each record.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_call_id", default=None
)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "call_id"}


@contextmanager
def bind_call_id(call_id: object) -> Iterator[None]:
    """Tag every log line written inside the block with this call id."""
    token = current_call_id.set(str(call_id) if call_id is not None else None)
    try:
        yield
    finally:
        current_call_id.reset(token)


class CallIdFilter(logging.Filter):
    """Copy the bound call id onto the record (an explicit `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = current_call_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, call_id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "call_id": getattr(record, "call_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class RequestCallIdMiddleware:
    """Bind the call id of URLs that name one (webhooks, call pages) for the request.

    Sync and async: under ASGI a sync-only middleware (or a sync process_view)
    would send every request through Django's one thread-sensitive executor.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
            # Django adapts a sync process_view to async on that executor.
            self.process_view = self._process_view_async  # type: ignore[method-assign]

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._call_async(request)
        # process_view binds the id once the URL is resolved; the block resets it.
        with bind_call_id(None):
            return self.get_response(request)

    async def _call_async(self, request: HttpRequest) -> HttpResponse:
        with bind_call_id(None):
            return await self.get_response(request)  # type: ignore[no-any-return]

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        _bind_view_call_id(kwargs)

    async def _process_view_async(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        _bind_view_call_id(kwargs)


def _bind_view_call_id(kwargs: Any) -> None:
    if "call_id" in kwargs:
        current_call_id.set(str(kwargs["call_id"]))
