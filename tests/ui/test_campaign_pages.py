"""Campaign and do-not-call pages: scoping, the form, the buttons, the import report."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from calls.campaigns.models import DEFAULT_OPENING, Campaign, Contact, DoNotCall
from tests.calls.campaign_factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(org, agent):
    return CampaignFactory(organization=org, agent=agent)


def form_data(agent, **changes):
    data = {
        "name": "夏のご案内",
        "agent": agent.pk,
        "from_number": "050-1234-5678",
        "time_zone": "Asia/Tokyo",
        "days": ["1", "3", "5"],
        "window_start": "10:00",
        "window_end": "18:00",
        "max_concurrent": "2",
        "calls_per_second": "1",
        "max_attempts": "3",
        "retry_delay_seconds": "900",
        "retry_on": ["busy", "no-answer"],
        "machine_action": "hangup",
        "business_name": "テスト商事",
        "caller_name": "佐藤",
        "product": "浄水器",
        "opening": DEFAULT_OPENING,
    }
    data.update(changes)
    return data


def test_pages_need_login(client, campaign):
    for url in (
        "/campaigns/",
        "/campaigns/new/",
        f"/campaigns/{campaign.pk}/",
        "/dnc/",
    ):
        response = client.get(url)
        assert (
            response.status_code == 302 and "/accounts/login/" in response["Location"]
        )


def test_list_shows_status_progress_and_counts(logged_in, campaign, other_org):
    ContactFactory(campaign=campaign, status=Contact.Status.DONE)
    ContactFactory(campaign=campaign)
    foreign = CampaignFactory(organization=other_org, name="よその案内")
    html = logged_in.get("/campaigns/").content.decode()
    assert campaign.name in html and foreign.name not in html
    assert 'value="50"' in html
    assert "一斉コール" in html  # the nav link


def test_other_organisations_campaign_is_404(logged_in, other_org):
    foreign = CampaignFactory(organization=other_org)
    assert logged_in.get(f"/campaigns/{foreign.pk}/").status_code == 404
    assert logged_in.get(f"/campaigns/{foreign.pk}/edit/").status_code == 404
    assert logged_in.post(f"/campaigns/{foreign.pk}/start").status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == "draft"


def test_new_form_shows_default_opening(logged_in):
    html = logged_in.get("/campaigns/new/").content.decode()
    assert "{{business_name}}の{{caller_name}}と申します。" in html
    assert 'type="time"' in html and 'type="checkbox"' in html


def test_create_from_the_form(logged_in, agent):
    response = logged_in.post("/campaigns/new/", form_data(agent))
    campaign = Campaign.objects.get(name="夏のご案内")
    assert response.status_code == 302
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.status == "draft" and campaign.organization == agent.organization
    assert campaign.from_number == "+815012345678"
    assert campaign.days == [1, 3, 5] and campaign.retry_on == ["busy", "no-answer"]


def test_form_refuses_bad_window_and_foreign_agent(logged_in, agent, foreign_agent):
    response = logged_in.post(
        "/campaigns/new/", form_data(agent, window_start="19:00", window_end="09:00")
    )
    assert response.status_code == 200
    assert "window_end" in response.context["form"].errors
    response = logged_in.post("/campaigns/new/", form_data(foreign_agent))
    assert "agent" in response.context["form"].errors
    assert not Campaign.objects.exists()


def test_edit_draft_but_not_running(logged_in, campaign, agent):
    response = logged_in.post(
        f"/campaigns/{campaign.pk}/edit/", form_data(agent, name="改名")
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "改名"
    campaign.status = "running"
    campaign.save()
    response = logged_in.get(f"/campaigns/{campaign.pk}/edit/", follow=True)
    assert "編集できません" in response.content.decode()


def test_buttons_move_the_status(logged_in, campaign):
    base = f"/campaigns/{campaign.pk}"
    for action, status in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "canceled"),
    ]:
        response = logged_in.post(f"{base}/{action}")
        assert response.status_code == 302
        campaign.refresh_from_db()
        assert campaign.status == status


def test_illegal_button_shows_an_error(logged_in, campaign):
    response = logged_in.post(f"/campaigns/{campaign.pk}/pause", follow=True)
    assert "この操作はできません" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_start_without_disclosure_names_what_is_missing(logged_in, campaign):
    campaign.caller_name = ""
    campaign.save()
    response = logged_in.post(f"/campaigns/{campaign.pk}/start", follow=True)
    html = response.content.decode()
    assert "開始できません" in html and "担当者名" in html
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_detail_buttons_for_the_status(logged_in, campaign):
    html = logged_in.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert f'action="/campaigns/{campaign.pk}/start" data-show-when="draft">' in html
    assert (
        f'action="/campaigns/{campaign.pk}/pause" data-show-when="running" hidden'
        in html
    )
    assert f"/api/campaigns/{campaign.pk}/results.csv" in html
    assert "/static/callcenter/js/campaign.js" in html


def test_import_shows_every_rejected_line(logged_in, campaign):
    data = "phone,name\n090-1234-5678,佐藤\nabc,鈴木\n090-1234-5678,佐藤\n"
    upload = SimpleUploadedFile("c.csv", data.encode("cp932"), "text/csv")
    response = logged_in.post(f"/campaigns/{campaign.pk}/import", {"file": upload})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 件を取り込みました。2 件は取り込めませんでした。" in html
    assert 'data-rejected-line="3"' in html and 'data-rejected-line="4"' in html
    assert "番号が不正" in html and "重複" in html
    assert Contact.objects.filter(campaign=campaign).count() == 1


def test_dnc_page_add_and_remove(logged_in, org, other_org):
    DoNotCall.objects.create(organization=other_org, phone="+819099998888")
    response = logged_in.post("/dnc/", {"phone": "090-1111-2222", "reason": "申し出"})
    assert response.status_code == 302
    entry = DoNotCall.objects.get(organization=org)
    assert entry.phone == "+819011112222" and entry.source == "operator"
    html = logged_in.get("/dnc/").content.decode()
    assert "+819011112222" in html and "+819099998888" not in html
    foreign = DoNotCall.objects.get(organization=other_org)
    assert logged_in.post(f"/dnc/{foreign.pk}/delete").status_code == 404
    assert logged_in.post(f"/dnc/{entry.pk}/delete").status_code == 302
    assert not DoNotCall.objects.filter(organization=org).exists()


def test_english_pages(logged_in, campaign):
    logged_in.cookies["django_language"] = "en"
    html = logged_in.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Campaigns" in html and "Pause" in html and "Import contacts" in html


def test_admin_running_campaign_is_read_only(client, org):
    from agents.models import Operator

    root = Operator.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    draft = CampaignFactory(organization=org)
    running = CampaignFactory(organization=org, status="running")
    html = client.get(f"/admin/calls/campaign/{draft.pk}/change/").content.decode()
    assert 'name="max_concurrent"' in html
    html = client.get(f"/admin/calls/campaign/{running.pk}/change/").content.decode()
    assert 'name="max_concurrent"' not in html
