"""The web voice channel's pages and the public page's guards (no media here).

Offers that pass every guard reach aiortc; here they carry an SDP aiortc refuses,
so the call is created and then closed as failed, and nothing keeps running. Those
tests use the transactional database: the call's writes run in a context of its own.
"""

from __future__ import annotations

import re
import time
from unittest import mock

import pytest
from django.core import signing
from django.core.cache import cache
from django.test import Client

from agents.services import agent_profile_save
from callcenter.errors import ApplicationError
from calls.models import CallSession
from calls.status import CallStatus
from calls.web.tokens import (
    SALT,
    PublicTokenInvalid,
    public_token_check,
    public_token_issue,
)
from tests.agents.factories import (
    AgentProfileFactory,
    CustomerFactory,
    OperatorFactory,
)
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db

START = re.compile(r"<button[^>]*data-start[^>]*>\s*通話を開始\s*</button>")
BAD_SDP = {"type": "offer", "sdp": "v=0\r\nthis is not an offer\r\n"}


@pytest.fixture
def agent(settings):
    cache.clear()  # the rate limit counts per address in the cache
    settings.PUBLIC_WEB_CALL_RATE = "2/min"
    settings.PUBLIC_WEB_TOKEN_MAX_AGE = 300
    agent = AgentProfileFactory(name="受付", company_name="テスト商事")
    agent.public_web_calls = True
    return agent_profile_save(agent=agent)


@pytest.fixture
def operator(agent):
    return OperatorFactory(organization=agent.organization)


def talk_token(client: Client, agent) -> str:
    page = client.get(f"/talk/{agent.public_id}/")
    assert page.status_code == 200
    return re.search(r'data-token="([^"]+)"', page.content.decode()).group(1)


def post_offer(client: Client, url: str, **body):
    return client.post(url, {**BAD_SDP, **body}, content_type="application/json")


def test_try_page_has_the_contracts(client, operator, agent):
    """One start button, a hidden hang-up button, a role=log transcript, customers."""
    CustomerFactory(organization=agent.organization, name="山田")
    client.force_login(operator)
    html = client.get(f"/agents/{agent.pk}/try/").content.decode()
    assert len(START.findall(html)) == 1
    assert re.search(r"<button[^>]*data-hangup hidden>\s*切断\s*</button>", html)
    assert 'role="log"' in html and "山田" in html
    assert f'data-offer-url="/agents/{agent.pk}/try/offer/"' in html


def test_try_page_in_english(client, operator, agent):
    """The page speaks English when the operator chooses it."""
    client.force_login(operator)
    client.cookies["django_language"] = "en"
    html = client.get(f"/agents/{agent.pk}/try/", HTTP_ACCEPT_LANGUAGE="en").content
    text = html.decode()
    assert ">Start call<" in text and ">Hang up<" in text
    assert "Microphone access was refused" in text


def test_try_page_of_another_organisation_is_404(client, agent):
    """An operator cannot try another organisation's agent."""
    client.force_login(OperatorFactory())
    assert client.get(f"/agents/{agent.pk}/try/").status_code == 404
    assert post_offer(client, f"/agents/{agent.pk}/try/offer/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_try_offer_with_an_unusable_sdp_fails_the_call(client, operator, agent):
    """An offer aiortc refuses is a 400, and its call is closed as failed."""
    client.force_login(operator)
    reply = post_offer(client, f"/agents/{agent.pk}/try/offer/")
    assert reply.status_code == 400
    call = CallSession.objects.get(direction="web")
    assert call.status == CallStatus.FAILED and call.end_reason == "web-offer-refused"


def test_talk_page_only_when_the_profile_allows_it(client, agent):
    """/talk/<public id>/ is 404 once public web calls are off; no login needed."""
    html = client.get(f"/talk/{agent.public_id}/").content.decode()
    assert len(START.findall(html)) == 1 and 'role="log"' in html
    assert "web-call-customer" not in html  # no operator controls
    agent.public_web_calls = False
    agent_profile_save(agent=agent)
    assert client.get(f"/talk/{agent.public_id}/").status_code == 404
    assert client.get("/talk/nonexistent/").status_code == 404


def test_forged_token_is_refused(client, agent):
    """A token not signed by us, or for another agent, is 403; no call is made."""
    url = f"/talk/{agent.public_id}/offer/"
    assert post_offer(client, url, token="forged:token:here").status_code == 403
    other = public_token_issue(public_id="someone-else")
    reply = post_offer(client, url, token=other)
    assert reply.status_code == 403
    assert reply.json()["error"]["details"] == {"expired": False}
    assert not CallSession.objects.exists()


def test_expired_token_is_refused(client, agent):
    """A token older than PUBLIC_WEB_TOKEN_MAX_AGE is 403 with expired: true."""
    with mock.patch.object(signing.time, "time", return_value=time.time() - 301):
        old = signing.TimestampSigner(salt=SALT).sign(agent.public_id)
    reply = post_offer(client, f"/talk/{agent.public_id}/offer/", token=old)
    assert reply.status_code == 403
    assert reply.json()["error"]["details"] == {"expired": True}
    assert not CallSession.objects.exists()
    with pytest.raises(PublicTokenInvalid):
        public_token_check(token=old, public_id=agent.public_id)


@pytest.mark.django_db(transaction=True)
def test_public_offers_are_rate_limited_per_ip(client, agent):
    """Past PUBLIC_WEB_CALL_RATE offers from one address get 429; another address
    is not affected."""
    token = talk_token(client, agent)
    url = f"/talk/{agent.public_id}/offer/"
    for _ in range(2):
        assert post_offer(client, url, token=token).status_code == 400  # admitted
    reply = post_offer(client, url, token=token)
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "throttled"
    assert CallSession.objects.count() == 2
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert post_offer(other, url, token=token).status_code == 400


def test_public_calls_are_capped_per_agent(client, agent):
    """With public_web_max_calls live web calls, the next public offer gets 503."""
    for _ in range(agent.public_web_max_calls):
        CallSessionFactory(
            organization=agent.organization,
            agent=agent,
            direction="web",
            status=CallStatus.AI_RESPONDING,
        )
    reply = post_offer(
        client, f"/talk/{agent.public_id}/offer/", token=talk_token(client, agent)
    )
    assert reply.status_code == 503
    assert reply.json()["error"]["details"] == {"max_calls": agent.public_web_max_calls}


def test_public_id_is_given_when_public_calls_are_switched_on():
    """The profile gets a public id the first time public web calls are on, once."""
    agent = AgentProfileFactory()
    assert agent.public_id is None
    agent.public_web_calls = True
    agent_profile_save(agent=agent)
    first = agent.public_id
    assert first and len(first) >= 16
    agent_profile_save(agent=agent)
    assert agent.public_id == first


def test_public_rate_is_a_sliding_window(settings):
    """Two offers a minute: the third within 60 s of the first is refused, even
    across a clock minute; once the first is 60 s old, one more is allowed."""
    from calls.web.services import public_rate_check

    cache.clear()
    settings.PUBLIC_WEB_CALL_RATE = "2/min"
    public_rate_check(client_ip="10.1.1.1", now=1000.0)  # 16:40 into a minute
    public_rate_check(client_ip="10.1.1.1", now=1030.0)
    with pytest.raises(ApplicationError) as refused:
        public_rate_check(client_ip="10.1.1.1", now=1059.0)  # a new clock minute
    assert refused.value.http_status == 429
    assert refused.value.details["retry_after_s"] == 1
    public_rate_check(client_ip="10.1.1.1", now=1060.5)
