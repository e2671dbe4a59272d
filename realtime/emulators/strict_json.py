"""Small declarative checks of JSON values, with OpenAI-style errors.

A check is ``check(value, param)``: it returns None or raises
``ClientEventError(code, message, param)``, ``param`` being the dotted path of
the offending field (``session.audio.input.format``). Build checks from
``string``, ``boolean``, ``integer``, ``number``, ``literal``, ``nullable``,
``either``, ``array``, ``obj`` and ``tagged``; ``obj`` refuses unknown fields
unless ``open_ended``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Check",
    "ClientEventError",
    "anything",
    "array",
    "boolean",
    "either",
    "integer",
    "invalid_type",
    "literal",
    "nullable",
    "number",
    "obj",
    "string",
    "tagged",
]


class ClientEventError(Exception):
    """A client event the server refuses, with the error fields to send back."""

    def __init__(self, code: str | None, message: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


Check = Callable[[Any, str], None]
"""Validate ``value`` found at ``param``; raise ClientEventError if invalid."""

_JSON_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def _got(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def invalid_type(param: str, expected: str, value: Any) -> ClientEventError:
    return ClientEventError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {_got(value)} "
        "instead.",
        param,
    )


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def string(value: Any, param: str) -> None:
    """Check a JSON string."""
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)


def boolean(value: Any, param: str) -> None:
    """Check a JSON boolean."""
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)


def anything(value: Any, param: str) -> None:
    """Accept any JSON value."""


def integer(low: int | None = None, high: int | None = None) -> Check:
    """Check an integer (not a boolean, not a decimal) within bounds."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(param, "an integer", value)
        if low is not None and value < low:
            raise ClientEventError(
                "integer_below_min_value",
                f"Invalid '{param}': integer below minimum value. Expected a value "
                f">= {low}, but got {value} instead.",
                param,
            )
        if high is not None and value > high:
            raise ClientEventError(
                "integer_above_max_value",
                f"Invalid '{param}': integer above maximum value. Expected a value "
                f"<= {high}, but got {value} instead.",
                param,
            )

    return check


def number(low: float | None = None, high: float | None = None) -> Check:
    """Check a number within bounds."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_type(param, "a decimal", value)
        if low is not None and value < low:
            raise ClientEventError(
                "decimal_below_min_value",
                f"Invalid '{param}': decimal below minimum value. Expected a value "
                f">= {low}, but got {value} instead.",
                param,
            )
        if high is not None and value > high:
            raise ClientEventError(
                "decimal_above_max_value",
                f"Invalid '{param}': decimal above maximum value. Expected a value "
                f"<= {high}, but got {value} instead.",
                param,
            )

    return check


def literal(*values: Any) -> Check:
    """Check a value among ``values``."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, dict | list) or value not in values:
            supported = ", ".join(f"'{v}'" for v in values)
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: '{value}'. Supported values are: {supported}.",
                param,
            )

    return check


def nullable(inner: Check) -> Check:
    """Accept null or what ``inner`` accepts."""

    def check(value: Any, param: str) -> None:
        if value is not None:
            inner(value, param)

    return check


def either(*checks: Check) -> Check:
    """Accept what one of ``checks`` accepts; report the first one's error."""

    def check(value: Any, param: str) -> None:
        first: ClientEventError | None = None
        for inner in checks:
            try:
                inner(value, param)
            except ClientEventError as error:
                first = first or error
            else:
                return
        assert first is not None
        raise first

    return check


def array(item: Check, *, min_items: int = 0) -> Check:
    """Check a JSON array whose items pass ``item``."""

    def check(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise invalid_type(param, "an array", value)
        if len(value) < min_items:
            raise ClientEventError(
                "array_below_min_length",
                f"Invalid '{param}': empty array. Expected an array with minimum "
                f"length {min_items}, but got an empty array instead.",
                param,
            )
        for index, element in enumerate(value):
            item(element, f"{param}[{index}]")

    return check


def obj(
    required: Mapping[str, Check] | None = None,
    optional: Mapping[str, Check] | None = None,
    *,
    open_ended: bool = False,
) -> Check:
    """Check an object: required fields, optional fields, nothing else."""
    required = dict(required or {})
    optional = dict(optional or {})

    def check(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise invalid_type(param, "an object", value)
        for name in required:
            if name not in value:
                full = _join(param, name)
                raise ClientEventError(
                    "missing_required_parameter",
                    f"Missing required parameter: '{full}'.",
                    full,
                )
        for name, field_value in value.items():
            inner = required.get(name) or optional.get(name)
            if inner is None:
                if open_ended:
                    continue
                full = _join(param, name)
                raise ClientEventError(
                    "unknown_parameter", f"Unknown parameter: '{full}'.", full
                )
            inner(field_value, _join(param, name))

    return check


def tagged(variants: Mapping[str, Check], tag: str = "type") -> Check:
    """Check an object discriminated by ``tag`` (the variant checks the rest)."""
    tag_check = literal(*variants)

    def check(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise invalid_type(param, "an object", value)
        if tag not in value:
            full = _join(param, tag)
            raise ClientEventError(
                "missing_required_parameter",
                f"Missing required parameter: '{full}'.",
                full,
            )
        tag_check(value[tag], _join(param, tag))
        variants[value[tag]](value, param)

    return check
