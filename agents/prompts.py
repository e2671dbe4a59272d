"""Prompt variables (F-04): the one renderer used everywhere.

Templates use `{{name}}` placeholders. A template may only name known variables
(checked when it is saved); rendering with a value missing raises, so `{{...}}` text
never reaches the model. Everything outside the placeholders, Japanese included, is
left exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PROFILE_VARIABLES = (
    "company_name",
    "service_name",
    "representative_name",
    "self_introduction",
    "service_description",
)
CALL_VARIABLES = ("customer_name",)
KNOWN_VARIABLES = PROFILE_VARIABLES + CALL_VARIABLES

SAMPLE_VALUES = {
    "company_name": "株式会社サンプル",
    "service_name": "クラウド会計",
    "representative_name": "佐藤",
    "self_introduction": "営業担当の佐藤と申します",
    "service_description": "中小企業向けのクラウド会計サービスです",
    "customer_name": "山田様",
}


class PromptRenderError(ValueError):
    """A template was rendered without a value for some of its variables."""

    def __init__(self, missing: Iterable[str]) -> None:
        self.missing = sorted(set(missing))
        super().__init__(
            "Missing value for prompt variable(s): " + ", ".join(self.missing)
        )


def template_variables(template: str) -> list[str]:
    """Return the variable names a template uses, in order of first use."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(template or ""):
        seen.setdefault(match.group(1), None)
    return list(seen)


def validate_template(template: str, *, extra_variables: Iterable[str] = ()) -> None:
    """Raise ValidationError naming every unknown or malformed variable."""
    allowed = set(KNOWN_VARIABLES) | set(extra_variables)
    unknown = [
        name
        for name in template_variables(template)
        if name not in allowed or not VARIABLE_NAME.match(name)
    ]
    if unknown:
        raise ValidationError(
            _("Unknown prompt variable(s): %(names)s. Known: %(known)s."),
            code="unknown_variable",
            params={
                "names": ", ".join("{{" + n + "}}" for n in unknown),
                "known": ", ".join(sorted(allowed)),
            },
        )


def render_template(template: str, values: Mapping[str, object]) -> str:
    """Fill every placeholder; raise PromptRenderError if any value is missing or empty."""
    missing = [
        name for name in template_variables(template) if values.get(name) in (None, "")
    ]
    if missing:
        raise PromptRenderError(missing)
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template or "")
