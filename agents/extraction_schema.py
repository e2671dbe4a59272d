"""The extraction schema of an agent profile (F-76): defaults and validation.

A profile's `extraction_schema` is a JSON Schema (draft 2020-12) for the fields the
text model extracts from a finished call. It must describe an object with
properties; anything else is refused on save with a message naming the problem.
Both defaults are strict-mode compatible (every property required, no extra keys;
optional values are nullable), so the model is held to them exactly.

`job_required`, `job_title` and `job_details` are what job cards read (F-77): a call
whose extraction says `job_required: true` (or that booked an appointment) becomes a
job card.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def _nullable(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


_COMMON: dict[str, dict[str, Any]] = {
    "name": _nullable("The caller's name as they said it, or null."),
    "callback_number": _nullable("A number to call back, as said, or null."),
    "appointment": _nullable(
        "The appointment booked in the call (date and time as said), or null."
    ),
    "sentiment": {
        "type": "string",
        "enum": ["positive", "neutral", "negative"],
        "description": "The caller's overall mood.",
    },
    "next_action": {
        "type": "string",
        "description": "What the business should do next, in the call's language.",
    },
    "job_required": {
        "type": "boolean",
        "description": "True when the business has work to do for the caller.",
    },
    "job_title": _nullable("A short title for that work, or null."),
    "job_details": _nullable("What the work is, with the facts needed, or null."),
}


def _object(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


RECEPTION_SCHEMA: dict[str, Any] = _object(
    {
        "name": _COMMON["name"],
        "callback_number": _COMMON["callback_number"],
        "request": {
            "type": "string",
            "description": "What the caller asked for, in the call's language.",
        },
        "appointment": _COMMON["appointment"],
        "sentiment": _COMMON["sentiment"],
        "next_action": _COMMON["next_action"],
        "job_required": _COMMON["job_required"],
        "job_title": _COMMON["job_title"],
        "job_details": _COMMON["job_details"],
    }
)

SALES_SCHEMA: dict[str, Any] = _object(
    {
        "name": _COMMON["name"],
        "callback_number": _COMMON["callback_number"],
        "interest": {
            "type": "string",
            "enum": ["high", "medium", "low", "none"],
            "description": "How interested the callee is in the offer.",
        },
        "objections": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Objections the callee raised, in the call's language.",
        },
        "appointment": _COMMON["appointment"],
        "sentiment": _COMMON["sentiment"],
        "next_action": _COMMON["next_action"],
        "job_required": _COMMON["job_required"],
        "job_title": _COMMON["job_title"],
        "job_details": _COMMON["job_details"],
    }
)

PRESETS: dict[str, dict[str, Any]] = {
    "reception": RECEPTION_SCHEMA,
    "sales": SALES_SCHEMA,
}


def default_extraction_schema() -> dict[str, Any]:
    """The reception default (a fresh copy: JSONField defaults must be callables)."""
    return copy.deepcopy(RECEPTION_SCHEMA)


def check_extraction_schema(schema: object) -> None:
    """Raise ValidationError naming the problem unless `schema` is usable.

    Usable: valid JSON Schema (draft 2020-12 meta-schema), an object type with at
    least one property (structured output needs an object at the top).
    """
    if not isinstance(schema, dict):
        raise ValidationError(
            _("The extraction schema must be a JSON object, not %(kind)s."),
            params={"kind": type(schema).__name__},
            code="not_object",
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise ValidationError(
            _("Not valid JSON Schema at %(where)s: %(problem)s"),
            params={"where": where, "problem": exc.message},
            code="invalid_schema",
        ) from None
    if schema.get("type") != "object":
        raise ValidationError(
            _('The top level of the extraction schema must have "type": "object".'),
            code="not_object_type",
        )
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise ValidationError(
            _('The extraction schema needs at least one field under "properties".'),
            code="no_properties",
        )


def is_strict_compatible(schema: Any) -> bool:
    """True when OpenAI's strict structured output accepts the schema as it is.

    Strict mode wants every object to list all its properties as required and to
    forbid others; a schema written more loosely is sent with `strict: false` and
    the reply is still validated here against the schema.
    """
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is not False:
                return False
            if set(schema.get("required", [])) != set(props):
                return False
        return all(is_strict_compatible(v) for v in schema.values())
    if isinstance(schema, list):
        return all(is_strict_compatible(v) for v in schema)
    return True
