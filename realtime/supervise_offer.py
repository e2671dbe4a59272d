"""A supervisor's offer, answered by the process that holds the call's bridge (F-75).

The offer view (``calls/supervise_views.py``) sends the call's control group a
``supervise-offer`` command carrying the SDP and a reply channel; the bridge
hands it here. The answer (or the refusal) goes back on that channel:
``{"type": "supervise.answer", "sdp", "listener"}`` or
``{"type": "supervise.refused", "detail", "status"}`` (409 the call is not with
the AI here, 400 an unusable offer). ICE settings are the web voice channel's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.supervision.peer import OfferRefused
from realtime.transport.aiortc_tuning import host_addresses_choose

if TYPE_CHECKING:
    from realtime.bridge import CallBridge

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S: Final = 2.0

__all__ = ["supervise_offer_answer"]


async def supervise_offer_answer(bridge: CallBridge, data: dict[str, Any]) -> None:
    """Answer (or refuse) one supervisor's offer on its reply channel."""
    reply_channel = data.get("reply_channel")
    if not isinstance(reply_channel, str) or not reply_channel:
        log.warning("supervise-offer without a reply channel: ignored")
        return
    reply = await _answer(bridge, data)
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await asyncio.wait_for(layer.send(reply_channel, reply), REPLY_TIMEOUT_S)
    except Exception:
        log.warning("supervise-offer: the answer could not be sent", exc_info=True)
        listener = reply.get("listener")
        if bridge.supervision is not None and isinstance(listener, str):
            await bridge.supervision.remove_listener(listener)


async def _answer(bridge: CallBridge, data: dict[str, Any]) -> dict[str, Any]:
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return _refused("The offer has no SDP.", 400)
    if not bridge.live_for_supervision:
        return _refused("The call is not held by the AI here.", 409)
    host_addresses_choose(settings.WEBRTC_HOST_ADDRESSES)
    hub = bridge.supervision_start(ice_servers=settings.WEBRTC_ICE_SERVERS)
    try:
        answer, listener = await hub.add_listener(
            sdp, by_id=data.get("by_id"), by_name=str(data.get("by_name") or "")
        )
    except OfferRefused as exc:
        return _refused(str(exc), 400)
    return {"type": "supervise.answer", "sdp": answer, "listener": listener}


def _refused(detail: str, status: int) -> dict[str, Any]:
    return {"type": "supervise.refused", "detail": detail, "status": status}
