"""Phone numbers: Japanese formats in, E.164 out, masked for display (F-32)."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

DEFAULT_REGION = "JP"


def normalize_phone(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """Return `raw` as E.164, or raise ValidationError naming what was wrong.

    Accepts national (`090-1234-5678`, `08070239355`), international (`+81…`) and
    full-width digits (`０９０…`); phonenumbers folds the latter to ASCII.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationError(_("Enter a phone number."), code="blank")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            _("'%(value)s' is not a phone number."),
            code="invalid",
            params={"value": raw},
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            _("'%(value)s' is not a valid phone number."),
            code="invalid",
            params={"value": raw},
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """Mask the middle digits for display: `08070239355` → `080****9355`.

    Numbers of the default region are shown in national digits; others keep their
    country code. Anything unparsable is masked all but its last four characters.
    """
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return "*" * max(len(raw) - 4, 0) + raw[-4:]
    national = phonenumbers.national_significant_number(parsed)
    if phonenumbers.region_code_for_number(parsed) == region:
        digits = "0" + national if region == "JP" else national
        prefix = ""
    else:
        digits = national
        prefix = f"+{parsed.country_code}"
    if len(digits) <= 7:
        return prefix + digits[:1] + "*" * (len(digits) - 3) + digits[-2:]
    return prefix + digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


class PhoneNumberField(models.CharField):
    """A CharField that stores E.164 and refuses to save an invalid number."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 20)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def to_python(self, value: object) -> str | None:
        value = super().to_python(value)
        if value in (None, ""):
            return value
        return normalize_phone(str(value))

    def pre_save(self, model_instance: models.Model, add: bool) -> str | None:
        value = getattr(model_instance, self.attname)
        if value in (None, ""):
            return value
        normalized = normalize_phone(str(value))
        setattr(model_instance, self.attname, normalized)
        return normalized
