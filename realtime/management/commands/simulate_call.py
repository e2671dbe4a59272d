"""`manage.py simulate_call`: a whole phone call against the running service (F-44).

Rings the service's number through the Twilio emulator (`make run` starts it in demo
mode), prints the call live, then its transcript, status timeline, usage and latency
figures; exits non-zero if the call went wrong or nothing to call is running. See
`realtime.simulation` for what it does and how a handoff is requested.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from callcenter import env as E
from realtime.simulation import Simulation, print_report, verdict


class Command(BaseCommand):
    help = (
        "Place a simulated phone call to the running service through the Twilio "
        "emulator; print the call live, then its transcript and latency figures."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        port = E.get_int("PORT")
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{port}",
            help="the service, as Twilio reaches it (its PUBLIC_BASE_URL); "
            "default http://127.0.0.1:$PORT",
        )
        parser.add_argument(
            "--to",
            default=None,
            help="number called (default +815012345678; with --legacy +815012345679)",
        )
        parser.add_argument(
            "--legacy",
            action="store_true",
            help="a call on the legacy Gather path (F-72): the demo's legacy number, "
            "the caller speaking to <Gather> instead of a media stream",
        )
        parser.add_argument(
            "--from", dest="from_", default="+819012345678", help="caller's number"
        )
        parser.add_argument(
            "--turns", type=int, default=2, help="caller turns (default 2)"
        )
        parser.add_argument(
            "--handoff-after",
            type=float,
            default=None,
            metavar="SECONDS",
            help="hand the call to a human this long after the stream is up",
        )
        parser.add_argument(
            "--talk-seconds",
            type=float,
            default=3.0,
            help="with --handoff-after: how long caller and human talk",
        )
        parser.add_argument(
            "--emulator",
            default=f"http://127.0.0.1:{E.get_int('DEMO_TWILIO_PORT')}",
            help="the Twilio emulator (default http://127.0.0.1:$DEMO_TWILIO_PORT)",
        )
        parser.add_argument(
            "--user", default="demo", help="operator who asks for the handoff"
        )
        parser.add_argument(
            "--timeout", type=float, default=180.0, help="give up after (seconds)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["turns"] < 0:
            raise CommandError("--turns must be 0 or more")
        if options["legacy"] and options["handoff_after"] is not None:
            raise CommandError(
                "--handoff-after drives a media-stream call; on --legacy ask for a "
                "human in words instead"
            )

        # One line per poll of the emulator would drown the call.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        simulation = Simulation(
            url=options["url"],
            emulator=options["emulator"],
            to=options["to"]
            or ("+815012345679" if options["legacy"] else "+815012345678"),
            from_=options["from_"],
            turns=options["turns"],
            handoff_after=options["handoff_after"],
            talk_seconds=options["talk_seconds"],
            user=options["user"],
            timeout=options["timeout"],
            write=write,
            legacy=options["legacy"],
        )
        try:
            simulation.run()
            print_report(simulation)
            failure = verdict(simulation)
        finally:
            simulation.http.close()
            close_old_connections()
        if failure is not None:
            raise CommandError(f"simulated call failed: {failure}")
