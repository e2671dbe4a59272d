"""URL map of the public REST API under /api/ (F-42); docs/API.md describes it."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents.api.views import AgentProfileViewSet, AppointmentViewSet, CustomerViewSet
from callcenter.errors import api_not_found
from calls.api.summary_views import CallExtractApi
from calls.api.supervision_views import CallSuperviseApi
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
from calls.campaigns.api.views import (
    CampaignCancelApi,
    CampaignContactsApi,
    CampaignContactsImportApi,
    CampaignPauseApi,
    CampaignResultsCsvApi,
    CampaignResumeApi,
    CampaignStartApi,
    CampaignViewSet,
    DoNotCallViewSet,
)
from handoff.api.views import CallHandoffApi, HandoffByPhoneApi
from jobs.api.views import JobViewSet
from notifications.api.views import WebhookDeliveriesApi, WebhookEndpointViewSet

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
    path(
        "calls/<int:call_id>/supervise/",
        CallSuperviseApi.as_view(),
        name="api-call-supervise",
    ),
    path(
        "calls/<int:call_id>/extract", CallExtractApi.as_view(), name="api-call-extract"
    ),
    path("jobs/", JobViewSet.as_view(LIST), name="api-job-list"),
    path("jobs/<int:pk>/", JobViewSet.as_view(DETAIL), name="api-job-detail"),
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
    path("campaigns/", CampaignViewSet.as_view(LIST), name="api-campaign-list"),
    path(
        "campaigns/<int:pk>/",
        CampaignViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
        name="api-campaign-detail",
    ),
    path(
        "campaigns/<int:campaign_id>/contacts/",
        CampaignContactsApi.as_view(),
        name="api-campaign-contacts",
    ),
    path(
        "campaigns/<int:campaign_id>/contacts/import",
        CampaignContactsImportApi.as_view(),
        name="api-campaign-import",
    ),
    path(
        "campaigns/<int:campaign_id>/start",
        CampaignStartApi.as_view(),
        name="api-campaign-start",
    ),
    path(
        "campaigns/<int:campaign_id>/pause",
        CampaignPauseApi.as_view(),
        name="api-campaign-pause",
    ),
    path(
        "campaigns/<int:campaign_id>/resume",
        CampaignResumeApi.as_view(),
        name="api-campaign-resume",
    ),
    path(
        "campaigns/<int:campaign_id>/cancel",
        CampaignCancelApi.as_view(),
        name="api-campaign-cancel",
    ),
    path(
        "campaigns/<int:campaign_id>/results.csv",
        CampaignResultsCsvApi.as_view(),
        name="api-campaign-results",
    ),
    path("dnc/", DoNotCallViewSet.as_view(LIST), name="api-dnc-list"),
    path(
        "dnc/<int:pk>/",
        DoNotCallViewSet.as_view({"delete": "destroy"}),
        name="api-dnc-detail",
    ),
    path(
        "webhook-endpoints/",
        WebhookEndpointViewSet.as_view(LIST),
        name="api-webhook-endpoint-list",
    ),
    path(
        "webhook-endpoints/<int:pk>/",
        WebhookEndpointViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
        name="api-webhook-endpoint-detail",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/deliveries/",
        WebhookDeliveriesApi.as_view(),
        name="api-webhook-deliveries",
    ),
    # Keep last: any other /api/ URL (a newline in it too) is a 404 in the error
    # format, not an HTML page.
    re_path(r"^(?P<path>[\s\S]*)$", api_not_found, name="api-not-found"),
]
