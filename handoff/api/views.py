"""Handoff endpoints (F-31): hand a live call to a human, by id or by phone."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callcenter.api import JSON_ONLY
from callcenter.api_docs import error_response
from calls.selectors import call_get
from handoff.api.serializers import (
    HandoffByPhoneSerializer,
    HandoffRequestSerializer,
    HandoffResultSerializer,
)
from handoff.selectors import live_call_find
from handoff.services import HandoffResult, handoff_request

CALL_ID = OpenApiParameter(
    "call_id", int, OpenApiParameter.PATH, description="Call id."
)
RESPONSES = {
    202: HandoffResultSerializer,
    404: error_response(404),
    409: error_response(409),
    502: error_response(502),
}


def _reply(result: HandoffResult) -> Response:
    body = HandoffResultSerializer(
        {
            "call_id": result.call_id,
            "status": result.status,
            "agent_call_sid": result.agent_call_sid,
            "agent_number": result.agent_number_masked,
            "created": result.created,
        }
    ).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class CallHandoffApi(APIView):
    """Hand a live AI call to a human through a conference (idempotent)."""

    parser_classes = JSON_ONLY

    @extend_schema(
        summary="Hand a call to a human",
        parameters=[CALL_ID],
        request=HandoffRequestSerializer,
        responses=RESPONSES,
    )
    def post(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        body = HandoffRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = handoff_request(
            call_id=call.pk,
            trigger="api",
            reason=body.validated_data.get("reason", ""),
            requested_by=request.user,
        )
        return _reply(result)


class HandoffByPhoneApi(APIView):
    """Hand off the live call of a phone number or a Twilio CallSid."""

    parser_classes = JSON_ONLY

    @extend_schema(
        summary="Hand a call to a human, found by number or CallSid",
        request=HandoffByPhoneSerializer,
        responses=RESPONSES,
    )
    def post(self, request: Request) -> Response:
        body = HandoffByPhoneSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        call = live_call_find(
            user=request.user,
            phone_number=data.get("phoneNumber", ""),
            call_sid=data.get("callSid", ""),
        )
        result = handoff_request(
            call_id=call.pk,
            trigger="api-by-phone",
            reason=data.get("reason", ""),
            requested_by=request.user,
        )
        return _reply(result)
