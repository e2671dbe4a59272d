"""REST API plumbing shared by the apps' `api` packages (F-42).

Pagination, the per-user throttles on mutating requests and the JSON-only parser
list. Imported by DRF settings, so it must not import `rest_framework.views` (which
reads those settings while it loads); the schema side lives in `api_docs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import permissions
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request

# The API reads JSON only: one documented body format, nothing form-encoded.
JSON_ONLY = [JSONParser]

# Ids are 64-bit on every backend; a larger one is bad input, not a database error.
ID_MAX = 2**63 - 1


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M` (default `PAGE_SIZE`, at most 200).

    A page or size that is not a positive integer is bad input (400 naming it); a
    page past the end is 404, as in DRF.
    """

    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        errors: dict[str, list[str]] = {}
        for name in (self.page_query_param, self.page_size_query_param):
            raw = request.query_params.get(name)
            if raw is None or (name == self.page_query_param and raw == "last"):
                continue
            if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
                errors[name] = ["A positive integer is required."]
        if errors:
            raise ValidationError(errors)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page (default {self.page_size}; "
                    f"more than {self.max_page_size} gives {self.max_page_size})."
                )
        return parameters


class UserRateThrottle(SimpleRateThrottle):
    """Throttle a user's (or token's) requests at the rate of `scope`.

    The rate is read from `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]` on every
    request, so changing the setting (tests do) takes effect at once. Anonymous
    requests are not counted: they are refused before throttling.
    """

    scope = "mutations"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def applies(self, request: Request) -> bool:
        return request.method not in permissions.SAFE_METHODS

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not (user and user.is_authenticated) or not self.applies(request):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class MutationRateThrottle(UserRateThrottle):
    """Every POST, PUT, PATCH and DELETE of a user: `API_THROTTLE_MUTATIONS`."""

    scope = "mutations"


class OutboundRateThrottle(UserRateThrottle):
    """Outbound calls a user places (they cost money): `API_THROTTLE_OUTBOUND`."""

    scope = "outbound"
