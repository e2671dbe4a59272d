"""The OpenAPI side of the REST API: the error format's schema and `AutoSchema`.

`AutoSchema` (drf-spectacular's, set as DRF's `DEFAULT_SCHEMA_CLASS`) adds to every
operation the error responses it can return (401/403 when authenticated, 404 with a
path parameter or a page, 400/415 with a body, 429 when throttled), all with the one
body of `callcenter.errors`, so the schema lists every status a client (or
Schemathesis) will see. Views add the rest (409, 502, 503) with `error_response()`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

from callcenter.api import UserRateThrottle
from callcenter.errors import ErrorCode

# Named `ErrorCodeEnum` in the schema through SPECTACULAR_SETTINGS.
ERROR_CODE_CHOICES = [(c.value, c.value) for c in ErrorCode]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=ERROR_CODE_CHOICES,
        help_text="Stable code to branch on; see docs/API.md.",
    )
    message = serializers.CharField(help_text="Human-readable explanation.")
    details = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Field name → list of messages for bad input "
        "(`non_field_errors` for the whole body); `retry_after` when throttled.",
    )


class ErrorSerializer(serializers.Serializer):
    """The body of every failure."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "Bad input: `details` names each field and what is wrong with it.",
    401: "No valid credentials (`Authorization: Token <key>` or a session).",
    403: "Authenticated but not allowed.",
    404: "No such object in your organisation (or no such page).",
    409: "The object's state does not allow this (e.g. `call_not_live`).",
    415: "The body is not JSON.",
    429: "Too many mutating requests; retry after `details.retry_after` seconds.",
    502: "An upstream service (Twilio, the channel layer) failed: `upstream_error`.",
    503: "A required setting is missing: `not_configured`.",
}


def error_response(status: int) -> OpenApiResponse:
    """An OpenAPI response in the error format, for `@extend_schema(responses=…)`."""
    return OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])


# Integer limits that come from the database backend (SQLite's 64-bit integers,
# PostgreSQL's 32-bit `integer`), not from the API: left out so that the schema is
# the same on every backend.
BACKEND_INTEGER_LIMITS = {2**63 - 1, -(2**63), 2**31 - 1, -(2**31), 32767, -32768}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema plus the error responses each operation can return."""

    def _map_min_max(self, field: Any, content: dict[str, Any]) -> None:
        super()._map_min_max(field, content)
        for key in ("maximum", "minimum"):
            if content.get(key) in BACKEND_INTEGER_LIMITS:
                del content[key]

    def _error_statuses(self) -> set[int]:
        statuses: set[int] = set()
        if not all(
            isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()
        ):
            statuses |= {401, 403}
        if "{" in self.path:
            statuses.add(404)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {400, 415}
        if self.method == "GET" and any(
            p.get("in") == "query" for p in self._get_parameters()
        ):
            statuses.add(400)
            if self._is_list_view() and self._get_paginator():
                statuses.add(404)
        if self.method not in ("GET", "HEAD", "OPTIONS") and any(
            isinstance(t, UserRateThrottle) for t in self.view.get_throttles()
        ):
            statuses.add(429)
        return statuses

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in sorted(self._error_statuses()):
            responses.setdefault(
                str(status),
                self._get_response_for_code(
                    error_response(status), str(status), direction=direction
                ),
            )
        return responses
