"""Placing an outbound call (F-42 outbound, F-11, F-43): create the call, then dial.

The dialer is chosen by a settings string, `TWILIO_DIALER` (default
`calls.twilio_client.dial_outbound`): a callable taking the new CallSession and
returning the Twilio call SID, raising `TwilioError` on failure. Tests plug in a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils.module_loading import import_string

from agents.models import AgentProfile, Operator, Organization
from agents.phones import mask_phone, normalize_phone
from agents.prompts import PromptRenderError
from agents.selectors import customer_find
from agents.services import agent_render_prompts
from callcenter.errors import ApplicationError, ErrorCode
from calls.models import CallSession
from calls.services import call_event_record, call_session_transition
from calls.status import CallStatus
from calls.twilio_client import TwilioError

Dialer = Callable[[CallSession], str]


def outbound_dialer() -> Dialer:
    """Return the configured dialer (`settings.TWILIO_DIALER`)."""
    dialer: Dialer = import_string(settings.TWILIO_DIALER)
    return dialer


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(
        "The request is not valid; see details.",
        code=ErrorCode.VALIDATION,
        http_status=400,
        details={field: [message]},
    )


def call_outbound_check(
    *,
    organization: Organization,
    agent: AgentProfile,
    contact_variables: Mapping[str, Any],
) -> None:
    """Check an outbound call can be placed, or raise ApplicationError.

    The agent must belong to the organisation, a caller ID must be configured, and
    the agent's templates must render with the profile and contact values (F-04), so
    no call is dialled that the bridge would refuse to voice.
    """
    if agent.organization_id != organization.pk:
        raise _invalid("agent", "The agent belongs to another organisation.")
    if not settings.TWILIO_FROM_NUMBER:
        raise ApplicationError(
            "Outbound calls need TWILIO_FROM_NUMBER (the caller ID) to be set.",
            code=ErrorCode.NOT_CONFIGURED,
            http_status=503,
        )
    try:
        agent_render_prompts(agent=agent, contact_variables=dict(contact_variables))
    except PromptRenderError as exc:
        raise _invalid("contact_variables", str(exc)) from exc


def call_outbound_start(
    *,
    organization: Organization,
    agent: AgentProfile,
    to: str,
    contact_variables: Mapping[str, Any] | None = None,
    requested_by: Operator | None = None,
) -> CallSession:
    """Create an outbound CallSession (initiated) and dial it through the dialer.

    A known customer with that number is linked and lends `customer_name`. If the
    dialer fails, the call is marked failed with the reason and TwilioError (502)
    propagates; the row stays as a record of the attempt.
    """
    try:
        to_e164 = normalize_phone(to)
    except DjangoValidationError as exc:
        raise _invalid("to", " ".join(exc.messages)) from exc
    variables = dict(contact_variables or {})
    customer = customer_find(organization_id=organization.pk, phone_number=to_e164)
    if customer is not None and customer.name:
        variables.setdefault("customer_name", customer.name)
    call_outbound_check(
        organization=organization, agent=agent, contact_variables=variables
    )
    with transaction.atomic():
        call = CallSession.objects.create(
            organization=organization,
            agent=agent,
            customer=customer,
            direction=CallSession.Direction.OUTBOUND,
            status=CallStatus.INITIATED,
            from_number=settings.TWILIO_FROM_NUMBER,
            to_number=to_e164,
            contact_variables=variables,
        )
        call_event_record(
            call=call,
            type="outbound-requested",
            payload={
                "to": mask_phone(to_e164),
                "requested_by": requested_by.pk if requested_by else None,
            },
        )
    # Dial outside the transaction: no row lock is held while Twilio answers.
    try:
        call_sid = outbound_dialer()(call)
    except TwilioError as exc:
        call_event_record(
            call=call, type="error", payload={"step": "dial", "message": exc.message}
        )
        call_session_transition(
            call=call, to=CallStatus.FAILED, reason=f"dial failed: {exc.message}"
        )
        raise
    call.twilio_call_sid = call_sid
    call.save(update_fields=["twilio_call_sid"])
    call_event_record(call=call, type="outbound-dialed", payload={"call_sid": call_sid})
    return call
