"""uvicorn with a drain on SIGTERM (F-69): `python -m realtime.server <uvicorn args>`.

Plain uvicorn answers SIGTERM by closing every WebSocket at once (close 1012), which
ends every call of the process. `DrainingServer` takes the first SIGTERM (or Ctrl-C)
before uvicorn does anything with it:

1. `callcenter.draining.begin()`: `/api/health` answers 503 `draining` from the next
   request on; after DRAIN_NOTICE seconds (the balancers have taken the process out)
   new media streams are refused;
2. `draining.drain_all(DRAIN_TIMEOUT, DRAIN_NOTICE)` then hands each live call over at
   its next quiet moment (the bridge closes Twilio's socket with 1000, the call stays with the AI and
   Twilio's `<Connect action>` resumes it on another process, F-68), at the latest
   after DRAIN_TIMEOUT seconds;
3. only then uvicorn's own shutdown: listeners closed, what is left (operators' page
   sockets, keep-alive HTTP) closed, the process exits with status 0.

The server keeps listening while it drains, so health checks see `draining` and the
`stream-ended` webhooks of its own calls are still answered. A second signal while
draining is uvicorn's usual exit (leftover sockets get 1012), a third Ctrl-C forces
it, as in uvicorn.

The command line is uvicorn's own (its click command, run with this server class),
so the Procfile and `serve` keep their flags. Checked against the uvicorn pinned in
requirements.txt by tests/realtime/test_drain_server.py, which SIGTERMs a real
server process with a live call.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from callcenter import draining
from callcenter import env as E

log = logging.getLogger("realtime.server")

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_timeout_s() -> float:
    return E.get_float("DRAIN_TIMEOUT")


def drain_notice_s() -> float:
    return E.get_float("DRAIN_NOTICE")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains the calls before exiting."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain_timeout: float | None = None,
        drain_notice: float | None = None,
    ) -> None:
        super().__init__(config)
        self.drain_timeout = (
            drain_timeout_s() if drain_timeout is None else drain_timeout
        )
        self.drain_notice = drain_notice_s() if drain_notice is None else drain_notice
        self._loop: asyncio.AbstractEventLoop | None = None
        self.drain_task: asyncio.Task[draining.DrainReport] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Runs in the main thread between two bytecodes: set flags, wake the loop."""
        loop = self._loop
        if (
            sig in DRAIN_SIGNALS
            and loop is not None
            and self.started
            and not self.should_exit
            and draining.begin()
        ):
            loop.call_soon_threadsafe(self.start_drain)
            return
        super().handle_exit(sig, frame)

    def start_drain(self) -> None:
        """Drain now (also for tests and embedders without a signal)."""
        draining.begin()
        if self.drain_task is None:
            self.drain_task = asyncio.get_running_loop().create_task(
                self._drain(), name="drain"
            )

    async def _drain(self) -> draining.DrainReport:
        log.warning("SIGTERM: draining (health answers 503 draining at once)")
        try:
            return await draining.drain_all(self.drain_timeout, self.drain_notice)
        finally:
            self.should_exit = True


def main(argv: list[str] | None = None) -> None:
    """uvicorn's command line, served by `DrainingServer`."""
    # The module, not the `uvicorn.main` function the package exports: its `run`
    # builds the server as `Server(config=config)`.
    cli = importlib.import_module("uvicorn.main")
    cli.Server = DrainingServer
    cli.main.main(
        args=sys.argv[1:] if argv is None else argv, prog_name="realtime.server"
    )


if __name__ == "__main__":
    main()
