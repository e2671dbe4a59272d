"""`manage.py place_call --to … --agent …`: a real outbound call (F-43).

The same path as the API's outbound call: `calls.outbound.call_outbound_start`
creates the CallSession and dials it through the configured dialer (by default
Twilio's REST API via `calls.twilio_client`, pointed at TWILIO_API_BASE_URL). When
the callee answers, Twilio fetches the outbound answer webhook and the agent speaks
first on a media stream; a machine gets the profile's voicemail message (F-11).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import AgentProfile
from callcenter.errors import ApplicationError
from calls.outbound import call_outbound_start


def agent_find(reference: str, *, organization: str = "") -> AgentProfile:
    """The agent profile with this id or name (in `organization`, if given)."""
    agents = AgentProfile.objects.select_related("organization")
    if organization:
        agents = agents.filter(organization__name=organization)
    if reference.isdigit():
        found = agents.filter(pk=int(reference)).first()
        if found is not None:
            return found
    named = list(agents.filter(name=reference).order_by("pk"))
    if len(named) == 1:
        return named[0]
    if named:
        choices = ", ".join(f"{a.pk} ({a.organization.name})" for a in named)
        raise CommandError(
            f"Several agent profiles are called {reference!r}: {choices}. "
            "Give the id, or --organization."
        )
    where = f" in organisation {organization!r}" if organization else ""
    raise CommandError(f"No agent profile with id or name {reference!r}{where}.")


def _variables(pairs: list[str]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--var takes NAME=VALUE, got {pair!r}.")
        variables[name.strip()] = value
    return variables


def _explain(exc: ApplicationError) -> str:
    details = "; ".join(
        f"{field}: {' '.join(str(m) for m in messages)}"
        for field, messages in exc.details.items()
        if isinstance(messages, list)
    )
    return f"{exc.message} ({details})" if details else exc.message


class Command(BaseCommand):
    help = (
        "Place an outbound call: the agent profile speaks first when the callee "
        "answers. Prints the call id and Twilio's call SID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to",
            required=True,
            help="the number to call, any Japanese format (090-1234-5678, +81…)",
        )
        parser.add_argument(
            "--agent", required=True, help="the agent profile's id or name"
        )
        parser.add_argument(
            "--organization",
            default="",
            help="the agent's organisation, when its name is not unique",
        )
        parser.add_argument(
            "--var",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a contact variable for the prompts (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agent = agent_find(options["agent"], organization=options["organization"])
        try:
            call = call_outbound_start(
                organization=agent.organization,
                agent=agent,
                to=options["to"],
                contact_variables=_variables(options["var"]),
            )
        except ApplicationError as exc:
            raise CommandError(f"Call not placed: {_explain(exc)}") from exc
        self.stdout.write(
            f"call {call.pk} placed to {call.to_number} "
            f"by agent {agent.name!r}: Twilio call SID {call.twilio_call_sid}"
        )
        self.stdout.write(f"call_id={call.pk}")
        self.stdout.write(f"call_sid={call.twilio_call_sid}")
