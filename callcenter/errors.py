"""One application error class and the one DRF handler that renders every failure.

Every API failure has the same body: ``{"error": {"code", "message", "details"}}``.
`code` is stable for clients to branch on; `details` names fields where input was bad
(``{"field": ["message", ...]}``, ``non_field_errors`` for the whole object) and carries
``retry_after`` (seconds) when throttled. docs/API.md lists the codes.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from django.core.exceptions import (
    NON_FIELD_ERRORS,
    ObjectDoesNotExist,
    PermissionDenied,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)


class ErrorCode(enum.StrEnum):
    VALIDATION = "validation_error"
    NOT_FOUND = "not_found"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    THROTTLED = "throttled"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    CONFLICT = "conflict"
    ILLEGAL_TRANSITION = "illegal_status_transition"
    NO_AGENT_NUMBER = "no_agent_number"
    CALL_NOT_LIVE = "call_not_live"
    CALL_NOT_SUPERVISABLE = "call_not_supervisable"
    UPSTREAM = "upstream_error"
    NOT_CONFIGURED = "not_configured"
    DISCLOSURE_INCOMPLETE = "disclosure_incomplete"
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
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ErrorCode.THROTTLED,
}


def _django_validation_details(exc: DjangoValidationError) -> dict[str, Any]:
    if not hasattr(exc, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
    return {
        (
            api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field
        ): msgs
        for field, msgs in exc.message_dict.items()
    }


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Render any exception raised in an API view in the one error format."""
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.http_status
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_details(exc))
    elif isinstance(exc, Http404 | ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        # A bug: log it with its traceback and still answer in the documented format.
        log.error("unhandled error in an API view", exc_info=exc)
        return Response(
            error_body(ErrorCode.SERVER, "Internal server error."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next(
        (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), ErrorCode.SERVER
    )
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid; see details."
        details = (
            response.data
            if isinstance(response.data, dict)
            else {api_settings.NON_FIELD_ERRORS_KEY: response.data}
        )
    else:
        message = str(getattr(exc, "detail", exc))
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after": int(exc.wait)}
    response.data = error_body(code, message, details)
    return response


@csrf_exempt  # it changes nothing; a CSRF 403 would hide the 404
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Answer an unknown /api/ URL in the error format rather than an HTML page."""
    return JsonResponse(
        error_body(ErrorCode.NOT_FOUND, "No such API endpoint."), status=404
    )
