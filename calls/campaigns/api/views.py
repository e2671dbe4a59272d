"""Endpoints of the campaigns and do-not-call API (F-67).

Each view reads through an organisation-scoped query (another organisation's
campaign is a 404), validates with a serializer and writes through one service of
`calls.campaigns.services`; their `ApplicationError`s (409 `illegal_status_transition`,
`disclosure_incomplete`, `conflict`) are rendered by `callcenter.errors`.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, renderers, status, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.selectors import user_organization_id
from callcenter.api import JSON_ONLY
from callcenter.api_docs import error_response
from callcenter.errors import ApplicationError, ErrorCode
from calls.campaigns.api.serializers import (
    RESULTS_CSV_COLUMNS,
    CampaignFilterSerializer,
    CampaignSerializer,
    CampaignStatusSerializer,
    ContactFilterSerializer,
    ContactSerializer,
    ContactsImportSerializer,
    DoNotCallSerializer,
    ImportReportSerializer,
    results_csv_row,
)
from calls.campaigns.models import Campaign, Contact, DoNotCall
from calls.campaigns.selectors import (
    campaign_attempts,
    campaigns_visible,
    dnc_visible,
)
from calls.campaigns.services import (
    campaign_cancel,
    campaign_delete,
    campaign_pause,
    campaign_resume,
    campaign_save,
    campaign_start,
    dnc_add,
    dnc_remove,
)

CAMPAIGN_ID = OpenApiParameter(
    "campaign_id", int, OpenApiParameter.PATH, description="Campaign id."
)


def campaign_get(*, user: Any, campaign_id: int) -> Campaign:
    """One campaign the user may see, or 404."""
    return get_object_or_404(campaigns_visible(user=user), pk=campaign_id)


@extend_schema_view(
    list=extend_schema(summary="List campaigns", parameters=[CampaignFilterSerializer]),
    create=extend_schema(
        summary="Create a campaign (as a draft)",
        responses={201: CampaignSerializer},
    ),
    retrieve=extend_schema(summary="Get a campaign with its progress"),
    partial_update=extend_schema(
        summary="Change a draft or paused campaign",
        responses={200: CampaignSerializer, 409: error_response(409)},
    ),
    destroy=extend_schema(
        summary="Delete a draft campaign",
        responses={204: None, 409: error_response(409)},
    ),
)
class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Campaigns of your organisation (F-63, F-67)."""

    serializer_class = CampaignSerializer
    parser_classes = JSON_ONLY

    def get_queryset(self) -> QuerySet[Campaign]:
        campaigns = campaigns_visible(user=self.request.user)
        if self.action == "list":
            filters = CampaignFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            if "status" in filters.validated_data:
                campaigns = campaigns.filter(status=filters.validated_data["status"])
        return campaigns

    def perform_create(self, serializer: Any) -> None:  # type: ignore[override]
        data = dict(serializer.validated_data)
        campaign = Campaign(
            organization=data["agent"].organization,
            created_by=self.request.user,
            **data,
        )
        serializer.instance = campaign_save(campaign=campaign)

    def perform_update(self, serializer: Any) -> None:  # type: ignore[override]
        campaign: Campaign = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(campaign, name, value)
        serializer.instance = campaign_save(campaign=campaign)

    def perform_destroy(self, instance: Campaign) -> None:
        campaign_delete(campaign=instance)


class CampaignActionApi(APIView):
    """Move a campaign along its status machine; subclasses name the service."""

    parser_classes = JSON_ONLY
    service: Callable[..., Campaign]

    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_get(user=request.user, campaign_id=campaign_id)
        campaign = type(self).service(campaign=campaign)
        return Response(CampaignStatusSerializer({"status": campaign.status}).data)


def _action_docs(summary: str) -> Any:
    return extend_schema(
        summary=summary,
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: CampaignStatusSerializer, 409: error_response(409)},
    )


class CampaignStartApi(CampaignActionApi):
    """draft → running, once the opening discloses who calls and why (F-66)."""

    service = staticmethod(campaign_start)  # type: ignore[assignment]

    @_action_docs("Start a draft campaign")
    def post(self, request: Request, campaign_id: int) -> Response:
        return super().post(request, campaign_id)


class CampaignPauseApi(CampaignActionApi):
    """running → paused: no new dials; live calls go on."""

    service = staticmethod(campaign_pause)  # type: ignore[assignment]

    @_action_docs("Pause a running campaign")
    def post(self, request: Request, campaign_id: int) -> Response:
        return super().post(request, campaign_id)


class CampaignResumeApi(CampaignActionApi):
    """paused → running."""

    service = staticmethod(campaign_resume)  # type: ignore[assignment]

    @_action_docs("Resume a paused campaign")
    def post(self, request: Request, campaign_id: int) -> Response:
        return super().post(request, campaign_id)


class CampaignCancelApi(CampaignActionApi):
    """Any open status → canceled: nothing more is dialled."""

    service = staticmethod(campaign_cancel)  # type: ignore[assignment]

    @_action_docs("Cancel a campaign")
    def post(self, request: Request, campaign_id: int) -> Response:
        return super().post(request, campaign_id)


class CampaignContactsApi(generics.ListAPIView):
    """The campaign's contacts in import order, filtered by status, paginated."""

    serializer_class = ContactSerializer

    def get_queryset(self) -> QuerySet[Contact]:
        campaign = campaign_get(
            user=self.request.user, campaign_id=self.kwargs["campaign_id"]
        )
        filters = ContactFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        contacts = Contact.objects.filter(campaign=campaign).order_by("pk")
        if "status" in filters.validated_data:
            contacts = contacts.filter(status=filters.validated_data["status"])
        return contacts

    @extend_schema(
        summary="List a campaign's contacts",
        parameters=[CAMPAIGN_ID, ContactFilterSerializer],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class CampaignContactsImportApi(APIView):
    """Import contacts from a CSV; every rejected row is reported with why."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Import contacts from CSV",
        parameters=[CAMPAIGN_ID],
        request={"multipart/form-data": ContactsImportSerializer},
        responses={200: ImportReportSerializer, 409: error_response(409)},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        from calls.campaigns.importing import contacts_import

        campaign = campaign_get(user=request.user, campaign_id=campaign_id)
        body = ContactsImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = contacts_import(campaign=campaign, fileobj=body.validated_data["file"])
        return Response(ImportReportSerializer(report.as_dict()).data)


class JSONErrorsNegotiation(BaseContentNegotiation):
    """Any `Accept` is fine: the body is CSV, and errors are JSON like everywhere."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return (renderers[0], renderers[0].media_type)


class _Echo:
    """A file-like whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def results_csv_lines(campaign: Campaign) -> Iterator[str]:
    """results.csv, line by line: a UTF-8 BOM (Excel), the header, one row each."""
    writer = csv.writer(_Echo())
    yield codecs.BOM_UTF8.decode("utf-8")
    yield writer.writerow(RESULTS_CSV_COLUMNS)
    refused_calls = set(
        DoNotCall.objects.filter(
            organization_id=campaign.organization_id, call__isnull=False
        ).values_list("call_id", flat=True)
    )
    for attempt in campaign_attempts(campaign=campaign).iterator(chunk_size=500):
        opted_out = (
            attempt.contact.status == Contact.Status.OPTED_OUT
            or attempt.call_id in refused_calls
        )
        yield writer.writerow(results_csv_row(attempt, opted_out=opted_out))


def results_csv_response(campaign: Campaign) -> StreamingHttpResponse:
    """Stream results.csv as an attachment (UTF-8 with BOM)."""
    response = StreamingHttpResponse(
        results_csv_lines(campaign), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="campaign-{campaign.pk}-results.csv"'
    )
    return response


class CampaignResultsCsvApi(APIView):
    """One row per dial attempt, streamed; UTF-8 with a BOM so Excel reads Japanese."""

    renderer_classes = [renderers.JSONRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        summary="Download a campaign's results as CSV",
        operation_id="campaigns_results_csv",
        parameters=[CAMPAIGN_ID],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="UTF-8 with a BOM; columns: "
                + ", ".join(RESULTS_CSV_COLUMNS)
                + ".",
            )
        },
    )
    def get(self, request: Request, campaign_id: int) -> StreamingHttpResponse:
        campaign = campaign_get(user=request.user, campaign_id=campaign_id)
        return results_csv_response(campaign)


@extend_schema_view(
    list=extend_schema(summary="List the do-not-call numbers"),
    create=extend_schema(
        summary="Put a number on the do-not-call list",
        responses={201: DoNotCallSerializer},
    ),
    destroy=extend_schema(summary="Take a number off the do-not-call list"),
)
class DoNotCallViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your organisation's do-not-call list (特定商取引法 第17条, F-65)."""

    serializer_class = DoNotCallSerializer
    parser_classes = JSON_ONLY

    def get_queryset(self) -> QuerySet[DoNotCall]:
        return dnc_visible(user=self.request.user)

    def perform_create(self, serializer: Any) -> None:  # type: ignore[override]
        user = self.request.user
        organization_id = user_organization_id(user)
        if organization_id is None:
            raise ApplicationError(
                "The request is not valid; see details.",
                code=ErrorCode.VALIDATION,
                http_status=status.HTTP_400_BAD_REQUEST,
                details={"non_field_errors": ["You belong to no organisation."]},
            )
        serializer.instance = dnc_add(
            organization=user.organization,
            phone=serializer.validated_data["phone"],
            reason=serializer.validated_data.get("reason", ""),
            source=DoNotCall.Source.OPERATOR,
            created_by=user,
        )

    def perform_destroy(self, instance: DoNotCall) -> None:
        dnc_remove(entry=instance)
