"""`POST /api/calls/<id>/extract`: summarise an ended call again (F-76)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callcenter.api import JSON_ONLY, MutationRateThrottle
from callcenter.api_docs import error_response
from calls.api.serializers import CallExtractSerializer
from calls.api.views import CALL_ID
from calls.selectors import call_get
from calls.summary.services import call_extraction_rerun


class CallExtractApi(APIView):
    """Queue the summary and extraction of an ended call again (202; 409 if live).

    The result replaces `summary`, `extraction` and `extraction_status` of
    `GET /api/calls/<id>/` when the task is done; its cost is added to the call's.
    """

    parser_classes = JSON_ONLY
    throttle_classes = [MutationRateThrottle]

    @extend_schema(
        summary="Summarise a call again",
        parameters=[CALL_ID],
        request=None,
        responses={202: CallExtractSerializer, 409: error_response(409)},
    )
    def post(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        call = call_extraction_rerun(call=call)
        body = CallExtractSerializer(
            {"call_id": call.pk, "extraction_status": call.extraction_status}
        ).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
