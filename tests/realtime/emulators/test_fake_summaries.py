"""The fake Responses API (F-76): strict about requests, deterministic answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from agents.extraction_schema import RECEPTION_SCHEMA
from calls.summary.client import response_schema
from realtime.emulators.fake_summaries import FakeSummariesServer, answer_for

FORMAT = {
    "type": "json_schema",
    "name": "call_summary",
    "schema": response_schema(RECEPTION_SCHEMA),
    "strict": True,
}
TRANSCRIPT = (
    "[ai] お電話ありがとうございます。\n[customer] 佐藤と申します。点検をお願いします。"
)


def body(**changes: Any) -> dict[str, Any]:
    base = {"model": "gpt-4.1-mini", "input": TRANSCRIPT, "text": {"format": FORMAT}}
    base.update(changes)
    return base


async def post(
    fake: FakeSummariesServer, payload: Any, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{fake.base_url}/responses",
            content=json.dumps(payload),
            headers={
                "Authorization": "Bearer sk-test",
                "Content-Type": "application/json",
                **headers,
            },
        )


async def test_the_openai_sdk_gets_a_structured_answer() -> None:
    async with FakeSummariesServer() as fake:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url)
        response = await client.responses.create(
            model="gpt-4.1-mini", input=TRANSCRIPT, text={"format": FORMAT}
        )
        await client.close()
    reply = json.loads(response.output_text)
    assert reply["summary"].startswith("お客様の用件: 佐藤と申します")
    assert reply["fields"]["name"] == "佐藤"
    assert reply["fields"]["job_required"] is True
    assert response.usage is not None and response.usage.output_tokens > 0


def test_the_answer_is_deterministic() -> None:
    schema = response_schema(RECEPTION_SCHEMA)
    assert answer_for(schema, TRANSCRIPT) == answer_for(schema, TRANSCRIPT)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (body(temperature=0.2, colour="red"), 400, "Unknown parameter: 'colour'"),
        (body(model=""), 400, "Missing required parameter: 'model'"),
        (body(input=""), 400, "Invalid 'input'"),
        (body(text={"format": {"type": "text"}}), 400, "json_schema"),
        (
            body(text={"format": {**FORMAT, "name": "bad name!"}}),
            400,
            "text.format.name",
        ),
        (
            body(text={"format": {**FORMAT, "schema": {"type": "strng"}}}),
            400,
            "Invalid schema",
        ),
        (
            body(
                text={
                    "format": {
                        **FORMAT,
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    }
                }
            ),
            400,
            "Missing 'a'",
        ),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
async def test_bad_requests_are_refused_like_the_api(
    payload: Any, status: int, message: str
) -> None:
    async with FakeSummariesServer() as fake:
        response = await post(fake, payload)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


async def test_a_missing_key_is_401_and_other_paths_404() -> None:
    async with FakeSummariesServer(api_key="sk-right") as fake:
        assert (await post(fake, body())).status_code == 401
        async with httpx.AsyncClient() as client:
            other = await client.post(f"http://127.0.0.1:{fake.port}/v1/responses")
        assert other.status_code == 404


async def test_faults_for_tests() -> None:
    async with FakeSummariesServer() as fake:
        fake.fail_next(1, status=429)
        fake.invalid_next(1)
        assert (await post(fake, body())).status_code == 429
        invalid = await post(fake, body())
        text = invalid.json()["output"][0]["content"][0]["text"]
        assert json.loads(text) == {"unexpected": True}
        assert (await post(fake, body())).status_code == 200
