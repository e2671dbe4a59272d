from __future__ import annotations

import pytest

from calls.status import CallStatus
from tests.agents.factories import (
    AgentProfileFactory,
    OperatorFactory,
    OrganizationFactory,
)
from tests.calls.factories import CallSessionFactory


@pytest.fixture
def org(db):
    return OrganizationFactory()


@pytest.fixture
def other_org(db):
    return OrganizationFactory()


@pytest.fixture
def operator(org):
    return OperatorFactory(organization=org, is_staff=False)


@pytest.fixture
def agent(org):
    return AgentProfileFactory(organization=org, company_name="テスト商事")


@pytest.fixture
def live_call(org, agent):
    return CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.AI_RESPONDING
    )


@pytest.fixture
def ended_call(org, agent):
    return CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.COMPLETED
    )


@pytest.fixture
def foreign_call(other_org):
    return CallSessionFactory(organization=other_org, status=CallStatus.AI_RESPONDING)


@pytest.fixture
def foreign_agent(other_org):
    return AgentProfileFactory(organization=other_org)


@pytest.fixture
def logged_in(client, operator):
    client.force_login(operator)
    return client
