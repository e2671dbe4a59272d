"""One application error class and the one DRF handler that renders every failure.

Every API failure has the same body: ``{"error": {"code", "message", "details"}}``.
`code` is stable for clients to branch on; `details` names fields where input was bad.
"""

from __future__ import annotations

import enum
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ErrorCode(enum.StrEnum):
    VALIDATION = "validation_error"
    NOT_FOUND = "not_found"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    THROTTLED = "throttled"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    ILLEGAL_TRANSITION = "illegal_status_transition"
    NO_AGENT_NUMBER = "no_agent_number"
    CALL_NOT_LIVE = "call_not_live"
    UPSTREAM = "upstream_error"
    SERVER = "server_error"


class ApplicationError(Exception):
    """A failure the caller can act on, with a code, a message and details."""

    code: ErrorCode = ErrorCode.CONFLICT
    http_status: int = status.HTTP_409_CONFLICT

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: dict[str, Any] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.details = details or {}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the documented error body."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


_DRF_CODES: dict[type[exceptions.APIException], ErrorCode] = {
    exceptions.ValidationError: ErrorCode.VALIDATION,
    exceptions.ParseError: ErrorCode.VALIDATION,
    exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.NOT_AUTHENTICATED,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.Throttled: ErrorCode.THROTTLED,
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in an API view in the one error format."""
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.http_status
        )
    if isinstance(exc, DjangoValidationError):
        details = (
            exc.message_dict
            if hasattr(exc, "error_dict")
            else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(details)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next(
        (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), ErrorCode.SERVER
    )
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid; see details."
        details = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
    else:
        message = str(getattr(exc, "detail", exc))
        details = {}
    response.data = error_body(code, message, details)
    return response
