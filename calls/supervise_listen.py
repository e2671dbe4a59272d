"""Listen to a live call from the browser (F-75): the offer goes to the bridge.

The process holding the call's bridge answers the supervisor's WebRTC offer (see
``realtime/supervise_offer.py``): the offer travels over the call's control group
with a fresh reply channel; the answer or the refusal comes back on it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from channels.layers import get_channel_layer

from callcenter.db import db_sync_to_async
from callcenter.errors import ApplicationError, ErrorCode
from calls.models import CallSession
from calls.services import acall_control_send
from calls.status import CallStatus

__all__ = ["ANSWER_TIMEOUT_S", "SUPERVISE_PERMISSION", "asupervise_listen_offer"]

SUPERVISE_PERMISSION: Final = "calls.supervise_call"
ANSWER_TIMEOUT_S: Final = 10.0


def _operator_name(user: Any) -> str:
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return str(full or getattr(user, "username", "") or user.pk)


async def asupervise_listen_offer(
    *, call: CallSession, user: Any, sdp: str
) -> dict[str, str]:
    """Send ``sdp`` to the call's bridge; ``{"sdp", "listener"}`` of its answer.

    ApplicationError: 403 without the permission, 409 when the call is not with
    the AI on a bridge, 504 when no bridge answered in time, 400 an unusable offer,
    502 the channel layer is down.
    """
    if not await db_sync_to_async(user.has_perm)(SUPERVISE_PERMISSION):
        raise ApplicationError(
            "You may not supervise calls.",
            code=ErrorCode.PERMISSION_DENIED,
            http_status=403,
        )
    await db_sync_to_async(call.refresh_from_db)(fields=["status"])
    if call.status != CallStatus.AI_RESPONDING:
        raise ApplicationError(
            f"Call {call.pk} is not with the AI (status '{call.status}').",
            code=ErrorCode.CALL_NOT_LIVE,
            http_status=409,
            details={"status": call.status},
        )
    layer = get_channel_layer()
    if layer is None:
        raise ApplicationError(
            "No channel layer.", code=ErrorCode.NOT_CONFIGURED, http_status=502
        )
    try:
        reply_channel = await layer.new_channel()
        await acall_control_send(
            call_id=call.pk,
            command="supervise-offer",
            sdp=sdp,
            reply_channel=reply_channel,
            by_id=user.pk,
            by_name=_operator_name(user),
        )
    except Exception as exc:
        raise ApplicationError(
            "The call's bridge could not be reached; try again.",
            code=ErrorCode.UPSTREAM,
            http_status=502,
        ) from exc
    try:
        reply = await asyncio.wait_for(layer.receive(reply_channel), ANSWER_TIMEOUT_S)
    except TimeoutError:
        raise ApplicationError(
            "No bridge answered for this call.",
            code=ErrorCode.UPSTREAM,
            http_status=504,
        ) from None
    if reply.get("type") == "supervise.answer":
        return {"sdp": str(reply["sdp"]), "listener": str(reply["listener"])}
    status = reply.get("status") if reply.get("status") in (400, 409) else 409
    raise ApplicationError(
        str(reply.get("detail") or "The bridge refused the offer."),
        code=ErrorCode.VALIDATION if status == 400 else ErrorCode.CALL_NOT_LIVE,
        http_status=status,
    )
