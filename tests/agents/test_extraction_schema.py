"""Extraction schemas (F-76): the defaults are valid and strict; bad ones are named."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from agents.extraction_schema import (
    RECEPTION_SCHEMA,
    SALES_SCHEMA,
    check_extraction_schema,
    default_extraction_schema,
    is_strict_compatible,
)


@pytest.mark.parametrize("schema", [RECEPTION_SCHEMA, SALES_SCHEMA])
def test_defaults_are_valid_strict_and_carry_the_job_fields(schema):
    check_extraction_schema(schema)
    assert is_strict_compatible(schema)
    assert {"job_required", "job_title", "job_details"} <= set(schema["properties"])
    assert {
        "name",
        "callback_number",
        "appointment",
        "sentiment",
        "next_action",
    } <= set(schema["properties"])


def test_the_default_is_a_fresh_copy():
    first = default_extraction_schema()
    first["properties"].clear()
    assert default_extraction_schema() == RECEPTION_SCHEMA


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("text", "must be a JSON object, not str"),
        ({"type": "object", "properties": {"a": {"type": 5}}}, "properties/a/type"),
        ({"type": "object", "required": "a", "properties": {"a": {}}}, "at required"),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "object", "properties": {}}, "at least one field"),
    ],
)
def test_invalid_schemas_are_refused_naming_the_problem(schema, message):
    with translation.override("en"), pytest.raises(ValidationError) as info:
        check_extraction_schema(schema)
    assert message in " ".join(info.value.messages)


def test_loose_schemas_are_not_strict():
    assert not is_strict_compatible(
        {"type": "object", "properties": {"a": {"type": "string"}}}
    )
