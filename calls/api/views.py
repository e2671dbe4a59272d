"""Endpoints of the calls API (F-42): read calls, control live ones, place new ones.

Each view validates its input, calls one selector or service and serializes the
result; failures are `ApplicationError`s rendered by `callcenter.errors`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callcenter.api import JSON_ONLY, MutationRateThrottle, OutboundRateThrottle
from callcenter.api_docs import error_response
from calls.api.serializers import (
    CallControlSerializer,
    CallDetailSerializer,
    CallEventSerializer,
    CallFilterSerializer,
    CallSerializer,
    HealthSerializer,
    InstructSerializer,
    OutboundCallSerializer,
    TranscriptEntrySerializer,
)
from calls.control import call_hangup_request, call_instruct
from calls.models import CallSession
from calls.outbound import call_outbound_start
from calls.selectors import (
    call_detail,
    call_events,
    call_get,
    call_search,
    call_transcript,
    health_check,
)

CALL_ID = OpenApiParameter(
    "call_id", int, OpenApiParameter.PATH, description="Call id."
)


class CallListApi(generics.ListAPIView):
    """Calls of your organisation, newest first, filtered and paginated."""

    serializer_class = CallSerializer

    @extend_schema(summary="List calls", parameters=[CallFilterSerializer])
    def get(self, request: Request) -> Response:
        filters = CallFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = dict(filters.validated_data)
        calls = call_search(user=request.user, agent_id=data.pop("agent", None), **data)
        page = self.paginate_queryset(calls)
        return self.get_paginated_response(CallSerializer(page, many=True).data)


class CallDetailApi(APIView):
    """One call with its transcript, recordings, usage and latency figures."""

    @extend_schema(
        summary="Get a call", parameters=[CALL_ID], responses=CallDetailSerializer
    )
    def get(self, request: Request, call_id: int) -> Response:
        call = call_detail(user=request.user, call_id=call_id)
        return Response(CallDetailSerializer(call).data)


class CallTranscriptApi(APIView):
    """The call's transcript, in call order (the whole list, not paginated)."""

    @extend_schema(
        summary="Get a call's transcript",
        parameters=[CALL_ID],
        responses=TranscriptEntrySerializer(many=True),
    )
    def get(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        entries = call_transcript(call=call)
        return Response(TranscriptEntrySerializer(entries, many=True).data)


class CallEventsApi(APIView):
    """The call's timeline: webhooks, stream, model, barge-ins, tools, handoff, end."""

    @extend_schema(
        summary="Get a call's events",
        parameters=[CALL_ID],
        responses=CallEventSerializer(many=True),
    )
    def get(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        return Response(CallEventSerializer(call_events(call=call), many=True).data)


def _control_reply(call: CallSession, command: str) -> Response:
    body = CallControlSerializer(
        {"call_id": call.pk, "command": command, "status": call.status}
    ).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class CallHangupApi(APIView):
    """Ask a live call's bridge to hang up (wherever the call runs)."""

    parser_classes = JSON_ONLY

    @extend_schema(
        summary="Hang up a live call",
        parameters=[CALL_ID],
        request=None,
        responses={
            202: CallControlSerializer,
            409: error_response(409),
            502: error_response(502),
        },
    )
    def post(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        call = call_hangup_request(call=call, requested_by=request.user)
        return _control_reply(call, "hangup")


class CallInstructApi(APIView):
    """Give a live call's AI an instruction mid-call (F-23)."""

    parser_classes = JSON_ONLY

    @extend_schema(
        summary="Instruct the AI of a live call",
        parameters=[CALL_ID],
        request=InstructSerializer,
        responses={
            202: CallControlSerializer,
            409: error_response(409),
            502: error_response(502),
        },
    )
    def post(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        body = InstructSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        call = call_instruct(
            call=call, text=body.validated_data["text"], requested_by=request.user
        )
        return _control_reply(call, "instruct")


class CallOutboundApi(APIView):
    """Place an outbound call: the agent speaks first when the callee answers."""

    parser_classes = JSON_ONLY
    throttle_classes = [MutationRateThrottle, OutboundRateThrottle]

    @extend_schema(
        summary="Place an outbound call",
        request=OutboundCallSerializer,
        responses={
            201: CallSerializer,
            502: error_response(502),
            503: error_response(503),
        },
    )
    def post(self, request: Request) -> Response:
        body = OutboundCallSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data: dict[str, Any] = body.validated_data
        call = call_outbound_start(
            organization=data["agent"].organization,
            agent=data["agent"],
            to=data["to"],
            contact_variables=data["contact_variables"],
            requested_by=request.user,
        )
        return Response(CallSerializer(call).data, status=status.HTTP_201_CREATED)


class HealthApi(APIView):
    """Liveness and readiness: database, channel layer, live calls here. No auth."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        summary="Service health",
        responses={200: HealthSerializer, 503: HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        health = health_check()
        body = HealthSerializer(
            {
                "status": health.status,
                "database": health.database,
                "channel_layer": health.channel_layer,
                "live_calls_in_process": health.live_calls_in_process,
                "draining": health.draining,
            }
        ).data
        code = status.HTTP_200_OK if health.ok else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status=code)
