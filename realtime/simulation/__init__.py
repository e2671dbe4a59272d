"""A simulated phone call against the running service (F-44, `manage.py simulate_call`).

The simulation plays Twilio's side only. Through the Twilio emulator's control API
(`python -m realtime.emulators.run`, which `make run` starts in demo mode) it rings the
service's number: the emulator posts the signed voice webhook, runs the TwiML and opens
the Media Stream, and its simulated caller listens to the greeting, speaks N turns of
speech-like audio (waiting for each answer) and hangs up. The service decides who
answers: the built-in fake Realtime server in demo mode, the real model with a key.

With a handoff time the call goes to a human that long after the stream is up: through
`POST /api/calls/<id>/handoff` (an operator's DRF token) when the service has that
endpoint, else by pressing the agent's handoff digit on the caller's keypad (F-22),
which the service's bridge turns into the same handoff. The human's leg, the room and
`human-connected` are shown; the caller hangs up a few seconds later.

`driver` places and watches the call, printing both sides live; `report` prints the
transcript, status timeline, usage and cost, and latency figures afterwards.
"""

from realtime.simulation.driver import Simulation, SimulationFailed, caller_script
from realtime.simulation.report import print_report, verdict

__all__ = ["Simulation", "SimulationFailed", "caller_script", "print_report", "verdict"]
