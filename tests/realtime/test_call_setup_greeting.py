"""The bridge config finds a call's cached greeting (F-73)."""

from __future__ import annotations

import random

import pytest

from calls.models import CallSession
from realtime.call_setup import bridge_config_build
from tests.agents.factories import AgentProfileFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db

AUDIO = random.Random(5).randbytes(4000)


@pytest.fixture
def cache_on(settings, tmp_path):
    settings.GREETING_CACHE_SIZE = 16
    settings.GREETING_CACHE_DIR = tmp_path / "greetings"
    return settings


def outbound_call(agent=None, **fields: object) -> CallSession:
    agent = agent or AgentProfileFactory(
        greeting_template="{{customer_name}}様、お時間よろしいでしょうか。"
    )
    defaults: dict[str, object] = {
        "organization": agent.organization,
        "agent": agent,
        "direction": CallSession.Direction.OUTBOUND,
        "from_number": "+815012345678",
        "to_number": "+819012345678",
        "contact_variables": {"customer_name": "山田"},
    }
    defaults.update(fields)
    return CallSessionFactory(**defaults)


def test_a_miss_names_the_key_to_fill_and_a_hit_carries_the_audio(cache_on):
    call = outbound_call()
    first = bridge_config_build(call=call)
    assert first.cached_greeting is None
    assert first.greeting_key is not None and first.greeting_cache is not None
    first.greeting_cache.put(
        first.greeting_key, "山田様、お時間よろしいでしょうか。", AUDIO
    )
    again = bridge_config_build(call=outbound_call(call.agent))
    assert again.greeting_key == first.greeting_key
    assert again.cached_greeting is not None
    assert again.cached_greeting.audio == AUDIO


def test_per_call_variables_and_profile_changes_give_other_keys(cache_on):
    call = outbound_call()
    config = bridge_config_build(call=call)
    config.greeting_cache.put(config.greeting_key, "山田様", AUDIO)
    other = bridge_config_build(
        call=outbound_call(call.agent, contact_variables={"customer_name": "佐藤"})
    )
    assert other.greeting_key != config.greeting_key
    assert other.cached_greeting is None
    agent = call.agent
    agent.voice = "cedar"
    agent.save()
    revoiced = bridge_config_build(call=outbound_call(agent))
    assert revoiced.greeting_key not in (config.greeting_key, other.greeting_key)
    assert revoiced.cached_greeting is None


def test_no_lookup_without_a_greeting_said_first_or_for_a_web_call(cache_on):
    quiet_agent = AgentProfileFactory(ai_speaks_first=False)
    inbound = outbound_call(quiet_agent, direction=CallSession.Direction.INBOUND)
    assert bridge_config_build(call=inbound).greeting_key is None
    web = outbound_call(direction=CallSession.Direction.WEB)
    assert bridge_config_build(call=web).greeting_key is None


def test_cache_off_means_no_lookup(settings):
    settings.GREETING_CACHE_SIZE = 0
    config = bridge_config_build(call=outbound_call())
    assert config.greeting_key is None and config.cached_greeting is None
