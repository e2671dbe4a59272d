"""Do-not-call services (F-65): bulk import source, contacts stopped at once."""

from __future__ import annotations

import pytest

from calls.campaigns.models import Contact, DoNotCall
from calls.campaigns.services import dnc_add, dnc_import
from tests.agents.factories import OrganizationFactory
from tests.calls.campaigns.factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db


def test_dnc_import_lists_numbers_with_source_import() -> None:
    """Any Japanese format; blanks skipped; bad numbers returned, not raised."""
    org = OrganizationFactory()
    listed, refused = dnc_import(
        organization=org,
        phones=[
            "090-1111-2222",
            "０９０１１１１３３３３",
            "",
            "12",
            "+81 90 1111 4444",
        ],
        reason="bulk",
    )
    assert (listed, refused) == (3, ["12"])
    assert sorted(DoNotCall.objects.values_list("phone", "source")) == [
        ("+819011112222", "import"),
        ("+819011113333", "import"),
        ("+819011114444", "import"),
    ]


def test_dnc_import_takes_a_generator_and_keeps_the_first_source() -> None:
    org = OrganizationFactory()
    dnc_add(organization=org, phone="09011112222", source="operator")
    listed, _ = dnc_import(organization=org, phones=(p for p in ["09011112222"]))
    assert listed == 1
    assert DoNotCall.objects.get().source == "operator"


def test_listed_numbers_stop_pending_contacts_of_the_organisation() -> None:
    """Pending contacts become skipped-dnc; another organisation's are untouched."""
    campaign = CampaignFactory()
    mine = ContactFactory(campaign=campaign, phone="+819011112222")
    theirs = ContactFactory(phone="+819011112222")
    dnc_import(organization=campaign.organization, phones=["09011112222"])
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Contact.Status.SKIPPED_DNC
    assert theirs.status == Contact.Status.PENDING
