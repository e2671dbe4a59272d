"""URL map of the public REST API under /api/ (F-42); docs/API.md describes it."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents.api.views import AgentProfileViewSet, AppointmentViewSet, CustomerViewSet
from callcenter.errors import api_not_found
from calls.api.views import (
    CallDetailApi,
    CallEventsApi,
    CallHangupApi,
    CallInstructApi,
    CallListApi,
    CallOutboundApi,
    CallTranscriptApi,
    HealthApi,
)
from handoff.api.views import CallHandoffApi, HandoffByPhoneApi

LIST = {"get": "list", "post": "create"}
DETAIL = {
    "get": "retrieve",
    "put": "update",
    "patch": "partial_update",
    "delete": "destroy",
}

urlpatterns: list[URLPattern] = [
    path("health", HealthApi.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema"),
        name="api-docs",
    ),
    path("calls/", CallListApi.as_view(), name="api-call-list"),
    path("calls/outbound", CallOutboundApi.as_view(), name="api-call-outbound"),
    path(
        "calls/handoff-by-phone",
        HandoffByPhoneApi.as_view(),
        name="api-call-handoff-by-phone",
    ),
    path("calls/<int:call_id>/", CallDetailApi.as_view(), name="api-call-detail"),
    path(
        "calls/<int:call_id>/transcript/",
        CallTranscriptApi.as_view(),
        name="api-call-transcript",
    ),
    path(
        "calls/<int:call_id>/events/", CallEventsApi.as_view(), name="api-call-events"
    ),
    path("calls/<int:call_id>/hangup", CallHangupApi.as_view(), name="api-call-hangup"),
    path(
        "calls/<int:call_id>/handoff", CallHandoffApi.as_view(), name="api-call-handoff"
    ),
    path(
        "calls/<int:call_id>/instruct",
        CallInstructApi.as_view(),
        name="api-call-instruct",
    ),
    path("agents/", AgentProfileViewSet.as_view(LIST), name="api-agent-list"),
    path(
        "agents/<int:pk>/",
        AgentProfileViewSet.as_view(DETAIL),
        name="api-agent-detail",
    ),
    path("customers/", CustomerViewSet.as_view(LIST), name="api-customer-list"),
    path(
        "customers/<int:pk>/",
        CustomerViewSet.as_view(DETAIL),
        name="api-customer-detail",
    ),
    path(
        "appointments/", AppointmentViewSet.as_view(LIST), name="api-appointment-list"
    ),
    path(
        "appointments/<int:pk>/",
        AppointmentViewSet.as_view(DETAIL),
        name="api-appointment-detail",
    ),
    # Keep last: any other /api/ URL is a 404 in the error format, not an HTML page.
    re_path(r"^(?P<path>.*)$", api_not_found, name="api-not-found"),
]
