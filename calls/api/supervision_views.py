"""`/api/calls/<id>/supervise/`: supervise a live call from an integration (F-75).

`POST` runs one action (whisper, barge, barge_end, take_over, hand_back,
listen_phone) through `calls.supervision`; `GET` says who holds the call and who
listened or stepped in, and when. Listening in the browser (WebRTC) is the monitor
page's; integrations listen from a phone (`listen_phone`, calls with a human).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.serializers import PhoneNumberField
from agents.phones import normalize_phone
from callcenter.api import JSON_ONLY, MutationRateThrottle
from callcenter.api_docs import error_response
from calls.api.views import CALL_ID
from calls.selectors import (
    call_get,
    call_supervision_history,
    call_supervision_state,
)
from calls.supervision import (
    SupervisionAction,
    supervision_act,
    supervision_check_allowed,
)

ACTION_CHOICES = [(a.value, a.value) for a in SupervisionAction]
HISTORY_ACTION_CHOICES = [
    (a, a)
    for a in (
        "listen",
        "phone-listen",
        "whisper",
        "barge",
        "barge-end",
        "take-over",
        "hand-back",
    )
]
HOLDERS = [("ai", "ai"), ("supervisor", "supervisor")]
MODES = [("barge", "barge"), ("take-over", "take-over")]


class SuperviseRequestSerializer(serializers.Serializer):
    """One supervision action; which fields count depends on `action`."""

    action = serializers.ChoiceField(
        choices=ACTION_CHOICES,
        help_text="whisper: an instruction the AI never speaks (needs `text`); "
        "barge / barge_end: the supervisor speaks, the AI pauses, then resumes; "
        "take_over / hand_back: the supervisor holds the call until handing it "
        "back; listen_phone: add a phone to a call that is with a human.",
    )
    text = serializers.CharField(
        required=False,
        max_length=2000,
        help_text="whisper: what the AI should do or say next.",
    )
    listener = serializers.CharField(
        required=False,
        max_length=64,
        help_text="barge / take_over: the browser listener whose microphone the "
        "caller hears. Omitted by API clients: the AI pauses, no audio is sent.",
    )
    phone = PhoneNumberField(
        required=False,
        help_text="listen_phone: the phone to ring (Japanese or E.164 format); "
        "default: your operator phone number.",
    )
    coaching = serializers.BooleanField(
        required=False,
        default=False,
        help_text="listen_phone: be heard by the human agent only (coach), "
        "instead of muted.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        action = attrs["action"]
        if action == SupervisionAction.WHISPER and not attrs.get("text"):
            raise serializers.ValidationError({"text": ["Whisper needs a text."]})
        if action == SupervisionAction.LISTEN_PHONE and not attrs.get("phone"):
            own = str(getattr(self.context.get("user"), "phone_number", "") or "")
            if not own:
                raise serializers.ValidationError(
                    {"phone": ["Give a phone number (you have none on file)."]}
                )
            attrs["phone"] = normalize_phone(own)
        return attrs


class SupervisionHistoryRowSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=HISTORY_ACTION_CHOICES)
    by_id = serializers.IntegerField(
        allow_null=True, help_text="The supervisor; null when the system acted."
    )
    by_name = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(
        allow_null=True, help_text="listen: when it stopped (null while it lasts)."
    )
    seconds = serializers.FloatField(allow_null=True)
    text = serializers.CharField(allow_blank=True, help_text="whisper: the text.")
    to = serializers.CharField(allow_blank=True, help_text="phone-listen: masked.")
    coaching = serializers.BooleanField()
    reason = serializers.CharField(
        allow_blank=True, help_text="hand-back: `supervisor-lost` when automatic."
    )


class SupervisionStateSerializer(serializers.Serializer):
    """Who holds the call after the action (or now)."""

    call_id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ACTION_CHOICES)
    holder = serializers.ChoiceField(choices=HOLDERS)
    mode = serializers.ChoiceField(choices=MODES, allow_null=True)
    held_by = serializers.IntegerField(
        allow_null=True, help_text="The operator who took the call over."
    )
    by_name = serializers.CharField(allow_null=True)


class SupervisionOverviewSerializer(serializers.Serializer):
    call_id = serializers.IntegerField()
    holder = serializers.ChoiceField(choices=HOLDERS)
    mode = serializers.ChoiceField(choices=MODES, allow_null=True)
    held_by = serializers.IntegerField(allow_null=True)
    by_name = serializers.CharField(allow_null=True)
    history = SupervisionHistoryRowSerializer(many=True)


EXAMPLES = [
    OpenApiExample(
        "Whisper",
        value={"action": "whisper", "text": "料金は担当者から折り返すと伝えて"},
        request_only=True,
    ),
    OpenApiExample("Take over", value={"action": "take_over"}, request_only=True),
    OpenApiExample("Hand back", value={"action": "hand_back"}, request_only=True),
    OpenApiExample(
        "Listen from a phone, coaching the human",
        value={"action": "listen_phone", "phone": "090-1234-5678", "coaching": True},
        request_only=True,
    ),
    OpenApiExample(
        "Taken over",
        value={
            "call_id": 42,
            "action": "take_over",
            "holder": "supervisor",
            "mode": "take-over",
            "held_by": 7,
            "by_name": "佐藤 花子",
        },
        response_only=True,
    ),
]


class CallSuperviseApi(APIView):
    """Supervise a live call: needs the `calls.supervise_call` permission (else 403)."""

    parser_classes = JSON_ONLY
    throttle_classes = [MutationRateThrottle]

    @extend_schema(
        summary="Who holds a call, and its supervision history",
        parameters=[CALL_ID],
        responses=SupervisionOverviewSerializer,
    )
    def get(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        supervision_check_allowed(user=request.user)
        state = call_supervision_state(call=call)
        body = SupervisionOverviewSerializer(
            {
                "call_id": call.pk,
                **state,
                "history": call_supervision_history(call=call),
            }
        ).data
        return Response(body)

    @extend_schema(
        summary="Whisper, barge, take over, hand back or listen from a phone",
        parameters=[CALL_ID],
        request=SuperviseRequestSerializer,
        responses={
            200: SupervisionStateSerializer,
            409: error_response(409),
            502: error_response(502),
        },
        examples=EXAMPLES,
    )
    def post(self, request: Request, call_id: int) -> Response:
        call = call_get(user=request.user, call_id=call_id)
        supervision_check_allowed(user=request.user)  # 403 before any 400
        body = SuperviseRequestSerializer(
            data=request.data, context={"user": request.user}
        )
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = supervision_act(
            call=call,
            user=request.user,
            action=SupervisionAction(data["action"]),
            text=data.get("text", ""),
            listener=data.get("listener", ""),
            phone=data.get("phone", ""),
            coaching=data["coaching"],
        )
        body_out = SupervisionStateSerializer(
            {
                "call_id": result.call_id,
                "action": result.action,
                "holder": result.holder,
                "mode": result.mode,
                "held_by": result.held_by,
                "by_name": result.by_name,
            }
        ).data
        return Response(body_out)
