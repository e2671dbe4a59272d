"""Best-effort monitor broadcasts over the channel layer (F-20, F-71).

Monitors are nice to have; a call is not. With Redis down or hanging, a broadcast
must neither block its caller (the bridge's writer, a database thread's on-commit
hook) nor fill the log: each send is bounded by a short time-out, and after a
failure the layer is left alone for a moment (broadcasts in that moment are skipped
and counted). The first failure and the recovery are logged, once each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0
# After a failed broadcast, skip broadcasts this long before trying the layer again.
PAUSE_AFTER_FAILURE_S = 2.0


class _LayerHealth:
    def __init__(self) -> None:
        self.down_since: float | None = None
        self.paused_until = 0.0
        self.skipped = 0

    def paused(self) -> bool:
        if time.monotonic() < self.paused_until:
            self.skipped += 1
            return True
        return False

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.paused_until = now + PAUSE_AFTER_FAILURE_S
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "channel layer unreachable (%s); monitor broadcasts paused",
                f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__,
            )

    def worked(self) -> None:
        if self.down_since is not None:
            log.warning(
                "channel layer back after %.1f s; %d monitor broadcasts skipped",
                time.monotonic() - self.down_since,
                self.skipped,
            )
            self.down_since = None
            self.skipped = 0


health = _LayerHealth()


def broadcasts_paused() -> bool:
    """True while the layer failed a moment ago (the broadcast is counted skipped)."""
    return health.paused()


async def agroup_send_best_effort(group: str, message: dict[str, Any]) -> bool:
    """Send to a group within SEND_TIMEOUT_S; False (logged once) when it failed."""
    layer = get_channel_layer()
    if layer is None or health.paused():
        return False
    try:
        await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        health.failed(exc)
        return False
    health.worked()
    return True
