"""One request to the text model: transcript in, summary and fields out (F-76).

The `openai` package's Responses API with structured output: the reply is held to
``{"summary": str, "fields": <the profile's extraction schema>}`` (``strict`` when
the schema allows it) and validated here again with `jsonschema`, so a reply that
fails the schema is an error with the reason, never half-saved fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai
from jsonschema import Draft202012Validator

from agents.extraction_schema import is_strict_compatible

INSTRUCTIONS = (
    "You read the transcript of a finished phone call between a caller ([customer]), "
    "an AI phone agent ([ai]) and maybe a human operator ([agent]). Write `summary`: "
    "two to four sentences a busy colleague can act on. Fill `fields` from what was "
    "said; use null where the call does not say. Write the summary and every text "
    "value in the language of the call: a call in Japanese gets Japanese."
)
FORMAT_NAME = "call_summary"


@dataclass(frozen=True, slots=True)
class SummaryResult:
    summary: str
    fields: dict[str, Any]
    input_tokens: int
    output_tokens: int


class SummaryError(Exception):
    """The text model gave no usable answer; `reason` says why (kept on the call)."""

    def __init__(self, reason: str, *, input_tokens: int = 0, output_tokens: int = 0):
        super().__init__(reason)
        self.reason = reason[:2000]
        self.input_tokens, self.output_tokens = input_tokens, output_tokens


def response_schema(fields_schema: dict[str, Any]) -> dict[str, Any]:
    """The whole reply's schema: a summary and the profile's fields."""
    return {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "fields": fields_schema},
        "required": ["summary", "fields"],
        "additionalProperties": False,
    }


def request_summary(
    *,
    transcript: str,
    fields_schema: dict[str, Any],
    model: str,
    base_url: str,
    api_key: str,
    timeout_s: float,
) -> SummaryResult:
    """Ask the model once; raise SummaryError with the reason on any failure."""
    schema = response_schema(fields_schema)
    client = openai.OpenAI(
        api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
    )
    try:
        response = client.responses.create(
            model=model,
            instructions=INSTRUCTIONS,
            input=transcript,
            store=False,
            text={
                "format": {
                    "type": "json_schema",
                    "name": FORMAT_NAME,
                    "schema": schema,
                    "strict": is_strict_compatible(schema),
                }
            },
        )
    except openai.APITimeoutError:
        raise SummaryError(
            f"the text model did not answer within {timeout_s:g} s"
        ) from None
    except openai.APIConnectionError as exc:
        raise SummaryError(f"cannot reach the text model: {exc}") from None
    except openai.APIStatusError as exc:
        raise SummaryError(
            f"the text model answered HTTP {exc.status_code}: {_message(exc)}"
        ) from None
    finally:
        client.close()
    usage = response.usage
    tokens_in = usage.input_tokens if usage else 0
    tokens_out = usage.output_tokens if usage else 0

    def fail(reason: str) -> SummaryError:
        return SummaryError(reason, input_tokens=tokens_in, output_tokens=tokens_out)

    if response.status != "completed":
        details = response.incomplete_details
        why = details.reason if details is not None else response.status
        raise fail(f"the reply is incomplete ({why})")
    refusal = _refusal(response)
    if refusal:
        raise fail(f"the model refused: {refusal}")
    try:
        reply = json.loads(response.output_text)
    except ValueError as exc:
        raise fail(f"the reply is not JSON: {exc}") from None
    problems = sorted(
        Draft202012Validator(schema).iter_errors(reply), key=lambda e: list(e.path)
    )
    if problems:
        first = problems[0]
        where = "/".join(str(p) for p in first.path) or "(top level)"
        raise fail(f"the reply fails the schema at {where}: {first.message}")
    return SummaryResult(
        summary=reply["summary"].strip(),
        fields=reply["fields"],
        input_tokens=tokens_in,
        output_tokens=tokens_out,
    )


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc.message)


def _refusal(response: Any) -> str:
    for item in response.output or []:
        for part in getattr(item, "content", None) or []:
            if getattr(part, "type", "") == "refusal":
                return str(getattr(part, "refusal", "") or "refused")
    return ""
