"""Endpoints of the webhook endpoints API (F-77), scoped to the caller's
organisation (another organisation's endpoint is a 404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, mixins, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from callcenter.api import JSON_ONLY
from notifications.api.serializers import DeliverySerializer, WebhookEndpointSerializer
from notifications.models import WebhookEndpoint
from notifications.selectors import endpoint_deliveries, endpoints_visible
from notifications.services import endpoint_delete, endpoint_save


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints"),
    create=extend_schema(summary="Add a webhook endpoint"),
    retrieve=extend_schema(summary="Get a webhook endpoint"),
    partial_update=extend_schema(
        summary="Change a webhook endpoint (turn it on again, new secret, events)"
    ),
    destroy=extend_schema(summary="Delete a webhook endpoint and its delivery log"),
)
class WebhookEndpointViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Webhook endpoints of your organisation (F-77)."""

    serializer_class = WebhookEndpointSerializer
    parser_classes = JSON_ONLY

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return endpoints_visible(user=self.request.user).order_by("pk")

    def perform_create(self, serializer: Any) -> None:  # type: ignore[override]
        endpoint = WebhookEndpoint(
            organization_id=self.request.user.organization_id,
            **serializer.validated_data,
        )
        serializer.instance = endpoint_save(endpoint=endpoint)

    def perform_update(self, serializer: Any) -> None:  # type: ignore[override]
        endpoint: WebhookEndpoint = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(endpoint, name, value)
        serializer.instance = endpoint_save(endpoint=endpoint)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        endpoint_delete(endpoint=instance)


class WebhookDeliveriesApi(generics.ListAPIView):
    """The endpoint's delivery log, newest first (paginated)."""

    serializer_class = DeliverySerializer

    @extend_schema(
        summary="List a webhook endpoint's deliveries",
        parameters=[
            OpenApiParameter(
                "endpoint_id", int, OpenApiParameter.PATH, description="Endpoint id."
            )
        ],
    )
    def get(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(
            endpoints_visible(user=request.user), pk=endpoint_id
        )
        page = self.paginate_queryset(endpoint_deliveries(endpoint=endpoint))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
