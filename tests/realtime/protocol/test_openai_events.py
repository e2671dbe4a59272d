"""OpenAI Realtime (GA) events: every client event validates against the official
SDK union, and server events parse into the bridge's dataclasses."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

from realtime.protocol.errors import RealtimeProtocolError
from realtime.protocol.openai_events import (
    ConversationItemAdded,
    ConversationItemDone,
    FunctionCallArgumentsDone,
    FunctionTool,
    InputAudioCommitted,
    InputAudioTimeoutTriggered,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    Item,
    ItemTruncated,
    OtherServerEvent,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    SemanticVad,
    ServerError,
    ServerVad,
    SessionConfig,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Transcription,
    TurnFlags,
    Usage,
    conversation_item_function_output,
    conversation_item_message,
    conversation_item_truncate,
    input_audio_buffer_append,
    input_audio_buffer_clear,
    input_audio_buffer_commit,
    parse_server_event,
    response_cancel,
    response_create,
    session_format_ok,
    session_payload,
    session_turn_flags,
    session_update,
)

CLIENT_EVENT = pydantic.TypeAdapter(RealtimeClientEvent)
SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)

TRANSFER = FunctionTool(
    name="transfer_to_human",
    description="Hand the caller to a person.",
    parameters={
        "type": "object",
        "properties": {"reason": {"type": "string"}},
        "required": ["reason"],
    },
)
REALISTIC = SessionConfig(
    model="gpt-realtime",
    instructions="あなたは丁寧なコールセンター係です。",
    voice="marin",
    speed=1.1,
    turn_detection=ServerVad(
        threshold=0.6,
        prefix_padding_ms=300,
        silence_duration_ms=500,
        create_response=True,
        interrupt_response=True,
        idle_timeout_ms=8000,
    ),
    transcription=Transcription(model="gpt-4o-transcribe", language="ja"),
    noise_reduction="near_field",
    tools=(TRANSFER,),
    tool_choice="auto",
    max_output_tokens=1024,
)


def assert_no_unknown_fields(value: Any, where: str = "event") -> None:
    """The SDK models accept extra keys silently; a typo would slip through."""
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, f"{where} has unknown fields {value.model_extra}"
        for name in type(value).model_fields:
            assert_no_unknown_fields(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            assert_no_unknown_fields(entry, f"{where}[{index}]")


def validate_client(text: str) -> Any:
    data = json.loads(text)
    model = CLIENT_EVENT.validate_python(data)
    assert model.type == data["type"]
    assert_no_unknown_fields(model)
    return model


# ------------------------------------------------------------------ client events


def test_realistic_session_update_validates_against_the_sdk():
    """A full Twilio bridge session.update is a valid GA event, pcmu both ways."""
    event = validate_client(session_update(REALISTIC, event_id="evt_1"))
    session = event.session
    assert session.type == "realtime"
    assert session.audio.input.format.type == "audio/pcmu"
    assert session.audio.output.format.type == "audio/pcmu"
    assert session.audio.input.turn_detection.type == "server_vad"
    assert session.audio.input.turn_detection.idle_timeout_ms == 8000
    assert session.audio.input.transcription.language == "ja"
    assert session.audio.input.noise_reduction.type == "near_field"
    assert session.audio.output.voice == "marin"
    assert session.tools[0].name == "transfer_to_human"
    assert session.output_modalities == ["audio"]
    assert event.event_id == "evt_1"


def test_session_update_has_no_beta_fields():
    """No temperature, no beta format strings, and session.type is set."""
    text = session_update(REALISTIC)
    assert "temperature" not in text
    assert "g711_ulaw" not in text
    assert "pcm16" not in text
    assert json.loads(text)["session"]["type"] == "realtime"


@pytest.mark.parametrize(
    "config",
    [
        SessionConfig(),
        SessionConfig(turn_detection=None),
        SessionConfig(turn_detection=SemanticVad(eagerness="low")),
        SessionConfig(
            turn_detection=ServerVad(create_response=False, interrupt_response=False)
        ),
        SessionConfig(transcription=Transcription(model="whisper-1", prompt="名前")),
        SessionConfig(tools=(TRANSFER,), tool_choice="transfer_to_human"),
        SessionConfig(tool_choice="required", noise_reduction="far_field"),
    ],
)
def test_session_update_variants_validate(config):
    """Every turn-detection, transcription and tool-choice variant is valid."""
    validate_client(session_update(config))


def test_turned_off_options_are_sent_as_null():
    """turn_detection, transcription and noise_reduction off are explicit nulls."""
    audio_in = session_payload(SessionConfig(turn_detection=None))["audio"]["input"]  # type: ignore[index]
    assert audio_in["turn_detection"] is None
    assert audio_in["transcription"] is None
    assert audio_in["noise_reduction"] is None


def test_forced_function_tool_choice():
    """A tool name as tool_choice forces that function."""
    payload = session_payload(SessionConfig(tools=(TRANSFER,), tool_choice="x"))
    assert payload["tool_choice"] == {"type": "function", "name": "x"}


@pytest.mark.parametrize(
    "kwargs",
    [{"speed": 2.0}, {"speed": 0.1}, {"max_output_tokens": 0}],
)
def test_session_config_refuses_out_of_range_values(kwargs):
    """Values the server would reject are refused when the config is built."""
    with pytest.raises(ValueError):
        SessionConfig(**kwargs)


def test_vad_threshold_is_checked():
    """The VAD threshold is a probability."""
    with pytest.raises(ValueError):
        ServerVad(threshold=1.5)


def test_turn_flags_of_a_config():
    """The config knows whether the server answers and interrupts by itself."""
    assert SessionConfig().interrupt_response
    assert SessionConfig().create_response
    assert not SessionConfig(turn_detection=None).interrupt_response
    off = ServerVad(interrupt_response=False)
    assert not SessionConfig(turn_detection=off).interrupt_response


@pytest.mark.parametrize(
    "text",
    [
        input_audio_buffer_append("//8="),
        input_audio_buffer_commit(),
        input_audio_buffer_clear(event_id="evt_c"),
        conversation_item_message("system", "Be brief."),
        conversation_item_message("user", "もしもし"),
        conversation_item_message("assistant", "はい、承ります。"),
        conversation_item_message("user", "hi", previous_item_id="root"),
        conversation_item_function_output("call_1", '{"ok": true}'),
        conversation_item_truncate("item_1", 1200),
        conversation_item_truncate("item_1", 0, content_index=0, event_id="e"),
        response_create(),
        response_create(instructions="Say goodbye.", tool_choice="none"),
        response_create(
            conversation="none",
            output_modalities=["text"],
            max_output_tokens=200,
            metadata={"bridge_request": "req_1"},
            event_id="evt_req_1",
        ),
        response_create(tool_choice="transfer_to_human"),
        response_cancel(),
        response_cancel("resp_1"),
    ],
)
def test_every_client_event_validates_against_the_sdk(text):
    """Each builder's output is a valid RealtimeClientEvent with no stray field."""
    validate_client(text)


def test_message_content_types_follow_the_role():
    """System and user text is input_text; assistant text is output_text."""
    system = json.loads(conversation_item_message("system", "x"))["item"]
    assistant = json.loads(conversation_item_message("assistant", "x"))["item"]
    assert system["content"] == [{"type": "input_text", "text": "x"}]
    assert assistant["content"] == [{"type": "output_text", "text": "x"}]


def test_append_escapes_untrusted_payload():
    """A payload with quotes cannot inject fields into the event."""
    text = input_audio_buffer_append('AA","type":"response.create')
    assert json.loads(text)["type"] == "input_audio_buffer.append"


def test_empty_response_create_has_no_response_object():
    """Without parameters, response.create inherits everything from the session."""
    assert json.loads(response_create()) == {"type": "response.create"}


# ------------------------------------------------------------------ server events

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_1",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "instructions": "default",
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "include": None,
    "expires_at": 0,
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 200,
                "idle_timeout_ms": None,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "voice": "alloy",
            "speed": 1.0,
        },
    },
}
PCMU_SESSION: dict[str, Any] = json.loads(json.dumps(DEFAULT_SESSION))
PCMU_SESSION["audio"]["input"]["format"] = {"type": "audio/pcmu"}
PCMU_SESSION["audio"]["output"]["format"] = {"type": "audio/pcmu"}

USAGE = {
    "total_tokens": 300,
    "input_tokens": 200,
    "output_tokens": 100,
    "input_token_details": {
        "text_tokens": 120,
        "audio_tokens": 80,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {
            "text_tokens": 60,
            "audio_tokens": 4,
            "image_tokens": 0,
        },
    },
    "output_token_details": {"text_tokens": 30, "audio_tokens": 70},
}
FUNCTION_ITEM = {
    "type": "function_call",
    "id": "item_f",
    "object": "realtime.item",
    "call_id": "call_1",
    "name": "transfer_to_human",
    "arguments": '{"reason":"asked"}',
    "status": "completed",
}
ASSISTANT_ITEM = {
    "type": "message",
    "id": "item_a",
    "object": "realtime.item",
    "role": "assistant",
    "status": "in_progress",
    "content": [],
}
IDS = {"response_id": "resp_1", "item_id": "item_a"}
POSITION = {"output_index": 0, "content_index": 0}

SAMPLES: list[tuple[dict[str, Any], object]] = [
    (
        {"type": "session.created", "session": DEFAULT_SESSION},
        SessionCreated(DEFAULT_SESSION),
    ),
    (
        {"type": "session.updated", "session": PCMU_SESSION},
        SessionUpdated(PCMU_SESSION),
    ),
    (
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "conversation_already_has_active_response",
                "message": "Conversation already has an active response",
                "param": None,
                "event_id": "evt_req_1",
            },
        },
        ServerError(
            "invalid_request_error",
            "conversation_already_has_active_response",
            "Conversation already has an active response",
            None,
            "evt_req_1",
        ),
    ),
    (
        {
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": 1200,
            "item_id": "item_u",
        },
        SpeechStarted("item_u", 1200),
    ),
    (
        {
            "type": "input_audio_buffer.speech_stopped",
            "audio_end_ms": 2400,
            "item_id": "item_u",
        },
        SpeechStopped("item_u", 2400),
    ),
    (
        {
            "type": "input_audio_buffer.committed",
            "item_id": "item_u",
            "previous_item_id": None,
        },
        InputAudioCommitted("item_u", None),
    ),
    (
        {
            "type": "input_audio_buffer.timeout_triggered",
            "item_id": "item_t",
            "audio_start_ms": 5000,
            "audio_end_ms": 13000,
        },
        InputAudioTimeoutTriggered("item_t", 5000, 13000),
    ),
    (
        {
            "type": "conversation.item.input_audio_transcription.delta",
            "item_id": "item_u",
            "content_index": 0,
            "delta": "もし",
        },
        InputTranscriptionDelta("item_u", "もし", 0),
    ),
    (
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "content_index": 0,
            "transcript": "もしもし",
            "usage": {"type": "duration", "seconds": 1.2},
        },
        InputTranscriptionCompleted("item_u", "もしもし", 0),
    ),
    (
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "item_id": "item_u",
            "content_index": 0,
            "error": {"type": "transcription_error", "code": "x", "message": "bad"},
        },
        InputTranscriptionFailed("item_u", "x", "bad", 0),
    ),
    (
        {
            "type": "conversation.item.added",
            "item": ASSISTANT_ITEM,
            "previous_item_id": "item_u",
        },
        ConversationItemAdded(
            Item("message", "item_a", "assistant", "in_progress"), "item_u"
        ),
    ),
    (
        {
            "type": "conversation.item.created",
            "item": ASSISTANT_ITEM,
            "previous_item_id": None,
        },
        ConversationItemAdded(Item("message", "item_a", "assistant", "in_progress")),
    ),
    (
        {"type": "conversation.item.done", "item": FUNCTION_ITEM},
        ConversationItemDone(
            Item(
                "function_call",
                "item_f",
                None,
                "completed",
                "call_1",
                "transfer_to_human",
                '{"reason":"asked"}',
            )
        ),
    ),
    (
        {
            "type": "conversation.item.truncated",
            "item_id": "item_a",
            "content_index": 0,
            "audio_end_ms": 640,
        },
        ItemTruncated("item_a", 0, 640),
    ),
    (
        {
            "type": "response.created",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "in_progress",
                "output": [],
                "metadata": {"bridge_request": "req_1"},
            },
        },
        ResponseCreated("resp_1", "in_progress", {"bridge_request": "req_1"}),
    ),
    (
        {
            "type": "response.output_item.added",
            "response_id": "resp_1",
            "output_index": 1,
            "item": {**FUNCTION_ITEM, "arguments": "", "status": "in_progress"},
        },
        OutputItemAdded(
            "resp_1",
            1,
            Item(
                "function_call",
                "item_f",
                None,
                "in_progress",
                "call_1",
                "transfer_to_human",
                "",
            ),
        ),
    ),
    (
        {
            "type": "response.output_item.done",
            "response_id": "resp_1",
            "output_index": 0,
            "item": {**ASSISTANT_ITEM, "status": "incomplete"},
        },
        OutputItemDone(
            "resp_1", 0, Item("message", "item_a", "assistant", "incomplete")
        ),
    ),
    (
        {"type": "response.output_audio.delta", **IDS, **POSITION, "delta": "//8="},
        OutputAudioDelta("resp_1", "item_a", "//8=", 0, 0),
    ),
    (
        {"type": "response.output_audio.done", **IDS, **POSITION},
        OutputAudioDone("resp_1", "item_a"),
    ),
    (
        {
            "type": "response.output_audio_transcript.delta",
            **IDS,
            **POSITION,
            "delta": "はい",
        },
        OutputAudioTranscriptDelta("resp_1", "item_a", "はい"),
    ),
    (
        {
            "type": "response.output_audio_transcript.done",
            **IDS,
            **POSITION,
            "transcript": "はい、承ります。",
        },
        OutputAudioTranscriptDone("resp_1", "item_a", "はい、承ります。"),
    ),
    (
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_1",
            "item_id": "item_f",
            "output_index": 1,
            "call_id": "call_1",
            "arguments": '{"reason":"asked"}',
            "name": "transfer_to_human",
        },
        FunctionCallArgumentsDone(
            "resp_1", "item_f", "call_1", '{"reason":"asked"}', "transfer_to_human"
        ),
    ),
    (
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "object": "realtime.response",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
                "output": [FUNCTION_ITEM],
                "usage": USAGE,
                "metadata": None,
            },
        },
        ResponseDone(
            "resp_1",
            "cancelled",
            "turn_detected",
            usage=Usage(300, 200, 100, 120, 80, 64, 60, 4, 30, 70),
            output=(
                Item(
                    "function_call",
                    "item_f",
                    None,
                    "completed",
                    "call_1",
                    "transfer_to_human",
                    '{"reason":"asked"}',
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize(
    ("wire", "expected"), SAMPLES, ids=[w["type"] for w, _ in SAMPLES]
)
def test_server_events_parse_into_dataclasses(wire, expected):
    """Each event the bridge acts on (shaped as the SDK knows it) parses exactly."""
    event = {**wire, "event_id": "event_1"}
    SERVER_EVENT.validate_python(event)  # the sample itself is realistic
    assert parse_server_event(json.dumps(event)) == expected


def test_function_arguments_done_without_a_name():
    """Servers of the GA launch (SDK 1.109.1) send no name with the arguments."""
    event = parse_server_event(
        json.dumps(
            {
                "type": "response.function_call_arguments.done",
                "event_id": "e",
                "response_id": "r",
                "item_id": "i",
                "call_id": "c",
                "arguments": "{}",
            }
        )
    )
    assert isinstance(event, FunctionCallArgumentsDone)
    assert event.name is None


def test_failed_response_reports_its_error():
    """A failed response.done carries the error code and message."""
    event = parse_server_event(
        json.dumps(
            {
                "type": "response.done",
                "event_id": "e",
                "response": {
                    "id": "resp_2",
                    "status": "failed",
                    "status_details": {
                        "type": "failed",
                        "error": {"type": "rate_limit", "code": "rl", "message": "m"},
                    },
                },
            }
        )
    )
    assert isinstance(event, ResponseDone)
    assert (event.status, event.error_code, event.error_message) == (
        "failed",
        "rl",
        "m",
    )
    assert event.usage is None


def test_usage_adds_up():
    """Usage of several responses sums field by field."""
    one = Usage(total_tokens=3, input_tokens=2, output_audio_tokens=1)
    assert one + one == Usage(total_tokens=6, input_tokens=4, output_audio_tokens=2)


def test_unknown_events_are_kept_raw():
    """Events the bridge does not act on come back as OtherServerEvent."""
    wire = {
        "type": "rate_limits.updated",
        "event_id": "e",
        "rate_limits": [
            {"name": "tokens", "limit": 10, "remaining": 9, "reset_seconds": 1.0}
        ],
    }
    event = parse_server_event(json.dumps(wire))
    assert event == OtherServerEvent("rate_limits.updated", wire)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{oops", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"event_id": "e"}', "without a type"),
        ('{"type": 5}', "without a type"),
        ('{"type": "response.output_audio.delta", "item_id": "i"}', "response_id"),
        (
            '{"type": "response.output_audio.delta", "response_id": "r",'
            ' "item_id": "i", "delta": 5}',
            "delta must be a string",
        ),
        ('{"type": "session.updated"}', "session must be an object"),
        ('{"type": "error", "error": {"message": "m"}}', "type must be a string"),
        (
            '{"type": "input_audio_buffer.speech_started", "item_id": "i",'
            ' "audio_start_ms": "12"}',
            "audio_start_ms must be an integer",
        ),
        ('{"type": "response.done", "response": {"id": "r"}}', "status"),
    ],
)
def test_malformed_server_frames_raise(text, fragment):
    """Broken JSON, a missing type or mistyped fields raise RealtimeProtocolError."""
    with pytest.raises(RealtimeProtocolError, match=fragment):
        parse_server_event(text)


def test_session_format_check():
    """Only audio/pcmu on input and output passes."""
    assert session_format_ok(PCMU_SESSION)
    assert not session_format_ok(DEFAULT_SESSION)
    half = json.loads(json.dumps(PCMU_SESSION))
    half["audio"]["output"]["format"] = {"type": "audio/pcm", "rate": 24000}
    assert not session_format_ok(half)
    assert not session_format_ok({})
    assert not session_format_ok({"audio": {"input": "pcmu"}})


def test_session_turn_flags():
    """Turn flags come from the effective session; missing flags default to true."""
    assert session_turn_flags(PCMU_SESSION) == TurnFlags(True, True)
    off = json.loads(json.dumps(PCMU_SESSION))
    off["audio"]["input"]["turn_detection"] = {
        "type": "server_vad",
        "interrupt_response": False,
    }
    assert session_turn_flags(off) == TurnFlags(True, False)
    off["audio"]["input"]["turn_detection"] = None
    assert session_turn_flags(off) is None
