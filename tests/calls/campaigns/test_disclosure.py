"""The opening disclosure rule (F-66) and campaign_start's 409."""

from __future__ import annotations

import pytest

from callcenter.errors import ApplicationError
from calls.campaigns.disclosure import disclosure_missing, opening_render
from calls.campaigns.models import Campaign
from calls.campaigns.services import campaign_start
from tests.calls.campaigns.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def start_refusal(campaign: Campaign) -> ApplicationError:
    with pytest.raises(ApplicationError) as exc:
        campaign_start(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    return exc.value


def test_default_opening_with_all_fields_starts() -> None:
    campaign = CampaignFactory()
    assert disclosure_missing(campaign) == []
    assert opening_render(campaign) == (
        "株式会社サンプルの佐藤と申します。光回線のご案内でお電話いたしました。"
    )
    assert campaign_start(campaign=campaign).status == Campaign.Status.RUNNING


@pytest.mark.parametrize("field", ["business_name", "caller_name", "product"])
def test_an_empty_field_refuses_the_start_naming_it(field: str) -> None:
    """A blank business, caller or product: 409 disclosure_incomplete naming it."""
    campaign = CampaignFactory(**{field: "  "})
    error = start_refusal(campaign)
    assert error.http_status == 409
    assert error.code == "disclosure_incomplete"
    assert error.details["missing"] == [field]
    assert field in error.message


def test_opening_that_leaves_out_a_set_value_is_refused() -> None:
    """The field is set but the opening never says it."""
    campaign = CampaignFactory(
        opening="{{business_name}}です。{{product}}のご案内でお電話しました。"
    )
    assert start_refusal(campaign).details["missing"] == ["caller_name"]


def test_opening_with_the_value_written_out_counts() -> None:
    """The rule looks at the rendered text, not at placeholders."""
    campaign = CampaignFactory(
        opening="株式会社サンプルの{{caller_name}}です。{{product}}のご案内です。"
    )
    assert disclosure_missing(campaign) == []


def test_opening_without_a_purpose_phrase_is_refused() -> None:
    campaign = CampaignFactory(
        opening="{{business_name}}の{{caller_name}}です。{{product}}について。"
    )
    assert start_refusal(campaign).details["missing"] == ["purpose"]


def test_everything_missing_is_named_at_once() -> None:
    campaign = CampaignFactory(
        business_name="", caller_name="", product="", opening="こんにちは"
    )
    assert start_refusal(campaign).details["missing"] == [
        "business_name",
        "caller_name",
        "product",
        "purpose",
    ]


def test_purpose_phrases_setting_is_honoured(settings) -> None:
    """DISCLOSURE_PURPOSE_PHRASES decides what counts as saying it is a sales call."""
    campaign = CampaignFactory(
        opening="{{business_name}}の{{caller_name}}です。{{product}}のお知らせです。"
    )
    settings.DISCLOSURE_PURPOSE_PHRASES = ["お知らせ"]
    assert disclosure_missing(campaign) == []
    settings.DISCLOSURE_PURPOSE_PHRASES = ["勧誘"]
    assert disclosure_missing(campaign) == ["purpose"]
    assert disclosure_missing(campaign, purpose_phrases=["お知らせ"]) == []


@pytest.mark.parametrize("phrase", ["勧誘", "営業", "ご案内", "セールス"])
def test_default_purpose_phrases(phrase: str) -> None:
    campaign = CampaignFactory(
        opening="{{business_name}}の{{caller_name}}です。{{product}}の"
        + phrase
        + "です。"
    )
    assert disclosure_missing(campaign) == []


def test_a_running_campaign_cannot_start_again() -> None:
    campaign = CampaignFactory(status=Campaign.Status.RUNNING)
    with pytest.raises(ApplicationError) as exc:
        campaign_start(campaign=campaign)
    assert exc.value.code == "illegal_status_transition"
