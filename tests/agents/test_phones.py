from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Customer
from agents.phones import mask_phone, normalize_phone
from tests.agents.factories import OrganizationFactory


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("090-1234-5678", "+819012345678"),
        ("08070239355", "+818070239355"),
        ("+818070239355", "+818070239355"),
        ("０９０－１２３４－５６７８", "+819012345678"),
        ("０８０７０２３９３５５", "+818070239355"),
        ("03-1234-5678", "+81312345678"),
        ("050-1234-5678", "+815012345678"),
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_japanese_formats_normalise_to_e164(raw, e164):
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["", "abc", "090-1234", "12345", "+81 0000", "0120-00"])
def test_invalid_numbers_are_rejected(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("08070239355", "080****9355"),
        ("+818070239355", "080****9355"),
        ("090-1234-5678", "090****5678"),
    ],
)
def test_masking(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.django_db
def test_invalid_number_is_rejected_on_save():
    """The field refuses to store an invalid number, even without full_clean()."""
    org = OrganizationFactory()
    with pytest.raises(ValidationError), transaction.atomic():
        Customer.objects.create(organization=org, phone_number="12-34")
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_number_is_stored_as_e164_on_save():
    org = OrganizationFactory()
    customer = Customer.objects.create(organization=org, phone_number="090-1234-5678")
    customer.refresh_from_db()
    assert customer.phone_number == "+819012345678"
