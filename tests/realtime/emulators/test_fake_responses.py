"""The fake Responses API answers the real `openai` client, streaming and not, with
tool calls, and refuses what the API refuses, with the API's error shapes."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from realtime.emulators.fake_responses import FakeResponsesServer

KEY = "sk-fake-responses"
TOOLS = [
    {
        "type": "function",
        "name": "schedule_appointment",
        "description": "予約",
        "parameters": {
            "type": "object",
            "properties": {"date": {"type": "string"}},
            "required": ["date"],
            "additionalProperties": False,
        },
        "strict": False,
    }
]


@pytest.fixture
async def fake():
    async with FakeResponsesServer(api_key=KEY) as server:
        yield server


def _client(fake: FakeResponsesServer, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=fake.base_url, max_retries=0)


async def _raw(fake: FakeResponsesServer, body: object) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            fake.base_url + "/responses",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
        )


async def test_text_reply_validates_as_the_sdk_model(fake):
    response = await _client(fake).responses.create(
        model="gpt-4.1-mini",
        instructions="あなたは受付です。",
        input=[{"role": "user", "content": "営業時間を教えてください"}],
        store=False,
    )
    Response.model_validate(response.model_dump())  # every required field, typed
    assert response.status == "completed"
    assert "営業時間" in response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    fake.assert_complete()


async def test_tool_call_then_its_output_gets_a_sentence(fake):
    client = _client(fake)
    first = await client.responses.create(
        model="gpt-4.1-mini",
        input=[{"role": "user", "content": "明日の予約をお願いします"}],
        tools=TOOLS,
        store=False,
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "schedule_appointment"
    assert json.loads(call.arguments)["date"]
    second = await client.responses.create(
        model="gpt-4.1-mini",
        input=[
            {"role": "user", "content": "明日の予約をお願いします"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": json.dumps(
                    {"ok": True, "date": "2030-01-02", "time": "15:00"}
                ),
            },
        ],
        tools=TOOLS,
        store=False,
    )
    assert "2030-01-02 15:00にご予約を承りました" in second.output_text
    fake.assert_complete()


async def test_streamed_reply_is_a_valid_event_sequence(fake):
    adapter = TypeAdapter(ResponseStreamEvent)
    stream = await _client(fake).responses.create(
        model="gpt-4.1-mini",
        input=[{"role": "user", "content": "明日の予約をお願いします"}],
        tools=TOOLS,
        stream=True,
    )
    events = [event async for event in stream]
    for event in events:
        adapter.validate_python(event.model_dump())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.function_call_arguments.done" in kinds
    done = events[-1].response
    assert done.output[0].type == "function_call"
    deltas = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert deltas == done.output[0].arguments


async def test_streamed_text_deltas_add_up(fake):
    stream = await _client(fake).responses.create(
        model="gpt-4.1-mini",
        input="こんにちは、確認したいことがあります",
        stream=True,
    )
    events = [event async for event in stream]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"model": "gpt-4.1-mini", "input": "x", "temprature": 1},
            "temprature",
            "unknown_parameter",
        ),
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "gpt-9", "input": "x"}, "model", "model_not_found"),
        (
            {"model": "gpt-4.1-mini", "input": [{"role": "robot", "content": "x"}]},
            "input[0].role",
            "invalid_value",
        ),
        (
            {
                "model": "gpt-4.1-mini",
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "call_1",
                        "output": "{}",
                    }
                ],
            },
            "input",
            None,
        ),
        (
            {
                "model": "gpt-4.1-mini",
                "input": [
                    {
                        "type": "function_call",
                        "call_id": "c",
                        "name": "f",
                        "arguments": "{}",
                    },
                    {"role": "user", "content": "x"},
                ],
            },
            "input",
            None,
        ),
        (
            {
                "model": "gpt-4.1-mini",
                "input": "x",
                "tools": [
                    {
                        "type": "function",
                        "name": "bad name",
                        "parameters": {"type": "object"},
                    }
                ],
            },
            "tools[0].name",
            "invalid_value",
        ),
    ],
)
async def test_requests_the_api_refuses_get_its_error_shape(fake, body, param, code):
    response = await _raw(fake, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert fake.problems()


async def test_wrong_key_is_401_invalid_api_key(fake):
    with pytest.raises(openai.AuthenticationError) as caught:
        await _client(fake, "sk-wrong-key-1234").responses.create(
            model="gpt-4.1-mini", input="x"
        )
    assert caught.value.code == "invalid_api_key"


async def test_injected_faults(fake):
    client = _client(fake)
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="gpt-4.1-mini", input="x")
    fake.malformed_next()
    response = await client.responses.create(model="gpt-4.1-mini", input="x")
    (call,) = response.output
    assert call.type == "function_call"
    with pytest.raises(ValueError):
        json.loads(call.arguments)
    fake.assert_complete()  # faults are not the client's fault
