"""Operators' sockets through the real ASGI application (routing, session, origin)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from calls.groups import call_monitor_group, org_monitor_group
from calls.services import call_session_transition, transcript_entry_add
from calls.status import CallStatus
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _application():
    from callcenter.asgi import application

    return application


@database_sync_to_async
def _session_cookie(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


async def _connect(path: str, user=None) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", (await _session_cookie(user)).encode()))
    communicator = WebsocketCommunicator(_application(), path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        # A server tells the app its refused socket is gone; the communicator must
        # too, or the consumer's channel-layer read outlives the test.
        await communicator.disconnect()
    return communicator, connected, code


@database_sync_to_async
def _world():
    org, other = OrganizationFactory(), OrganizationFactory()
    operator = OperatorFactory(organization=org)
    stranger = OperatorFactory(organization=other)
    call = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    return operator, stranger, call


async def test_operator_receives_transcript_of_own_call():
    """A saved utterance reaches the monitor socket as transcript.update JSON."""
    operator, _stranger, call = await _world()
    communicator, connected, _ = await _connect(f"/ws/calls/{call.pk}/", operator)
    assert connected
    try:
        entry = await database_sync_to_async(transcript_entry_add)(
            call=call, speaker="customer", text="予約したいです", item_id="item_1"
        )
        message = await communicator.receive_json_from(timeout=3)
        assert message == {
            "type": "transcript.update",
            "call_id": call.pk,
            "entry_id": entry.pk,
            "speaker": "customer",
            "text": "予約したいです",
            "item_id": "item_1",
            "offset_ms": 0,
            "interrupted": False,
            "final": True,
        }
    finally:
        await communicator.disconnect()


async def test_partial_status_and_event_messages_are_forwarded():
    operator, _stranger, call = await _world()
    communicator, connected, _ = await _connect(f"/ws/calls/{call.pk}/", operator)
    assert connected
    layer = get_channel_layer()
    try:
        partial = {
            "type": "transcript.partial",
            "call_id": call.pk,
            "speaker": "ai",
            "item_id": "item_2",
            "delta": "お電話",
        }
        await layer.group_send(call_monitor_group(call.pk), partial)
        assert await communicator.receive_json_from(timeout=3) == partial
        await database_sync_to_async(call_session_transition)(
            call=call, to=CallStatus.COMPLETED, reason="hangup"
        )
        status = await communicator.receive_json_from(timeout=3)
        assert status == {
            "type": "call.status",
            "call_id": call.pk,
            "status": "completed",
            "previous": "ai-responding",
            "reason": "hangup",
        }
        # A kind the page does not know yet (the handoff's) still arrives.
        await layer.group_send(
            call_monitor_group(call.pk),
            {"type": "handoff.initiated", "call_id": call.pk},
        )
        assert (await communicator.receive_json_from(timeout=3))["type"] == (
            "handoff.initiated"
        )
    finally:
        await communicator.disconnect()


@database_sync_to_async
def _saved_lines(call, *texts: str) -> list[int]:
    """Save one caller line per text, 1 s apart in the call; their entry ids."""
    return [
        transcript_entry_add(
            call=call, speaker="customer", text=text, offset_ms=1000 * (i + 1)
        ).pk
        for i, text in enumerate(texts)
    ]


async def test_reconnecting_monitor_catches_up_on_lines_it_missed():
    """`?after=<id>`: one call.snapshot with the later lines and the status now, then
    live messages as before."""
    operator, _stranger, call = await _world()
    first, second, third = await _saved_lines(call, "一", "二", "三")
    await database_sync_to_async(call_session_transition)(
        call=call, to=CallStatus.COMPLETED, reason="hangup"
    )
    communicator, connected, _ = await _connect(
        f"/ws/calls/{call.pk}/?after={first}", operator
    )
    assert connected
    try:
        snapshot = await communicator.receive_json_from(timeout=3)
        assert snapshot["type"] == "call.snapshot"
        assert snapshot["call_id"] == call.pk
        assert snapshot["status"] == "completed"
        assert [(e["entry_id"], e["text"]) for e in snapshot["entries"]] == [
            (second, "二"),
            (third, "三"),
        ]
        assert snapshot["entries"][0] == {
            "type": "transcript.update",
            "entry_id": second,
            "speaker": "customer",
            "text": "二",
            "item_id": "",
            "offset_ms": 2000,
            "interrupted": False,
            "final": True,
        }
        (fourth,) = await _saved_lines(call, "四")
        live = await communicator.receive_json_from(timeout=3)
        assert (live["type"], live["entry_id"]) == ("transcript.update", fourth)
    finally:
        await communicator.disconnect()


async def test_catch_up_from_zero_brings_every_line_and_from_the_newest_none():
    operator, _stranger, call = await _world()
    ids = await _saved_lines(call, "一", "二")
    for after, expected in ((0, ids), (ids[-1], [])):
        communicator, connected, _ = await _connect(
            f"/ws/calls/{call.pk}/?after={after}", operator
        )
        assert connected
        try:
            snapshot = await communicator.receive_json_from(timeout=3)
            assert [e["entry_id"] for e in snapshot["entries"]] == expected
            assert snapshot["status"] == "ai-responding"
        finally:
            await communicator.disconnect()


@pytest.mark.parametrize(
    "query", ["", "?after=", "?after=abc", "?after=-1", "?after=%C2%B2"]
)
async def test_no_or_malformed_catch_up_request_gets_no_snapshot(query):
    """Without a whole-number `after` the socket works as before: live messages only."""
    operator, _stranger, call = await _world()
    await _saved_lines(call, "前")
    communicator, connected, _ = await _connect(
        f"/ws/calls/{call.pk}/{query}", operator
    )
    assert connected
    try:
        (entry_id,) = await _saved_lines(call, "後")
        message = await communicator.receive_json_from(timeout=3)
        assert (message["type"], message["entry_id"]) == ("transcript.update", entry_id)
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        await communicator.disconnect()


async def test_refused_socket_gets_no_snapshot():
    """The catch-up never leaks another organisation's lines: refused before it."""
    _operator, stranger, call = await _world()
    await _saved_lines(call, "秘密")
    communicator, connected, code = await _connect(
        f"/ws/calls/{call.pk}/?after=0", stranger
    )
    assert (connected, code) == (False, 4403)
    assert await communicator.receive_nothing(timeout=0.2)


async def test_other_organisations_call_is_refused():
    _operator, stranger, call = await _world()
    _communicator, connected, code = await _connect(f"/ws/calls/{call.pk}/", stranger)
    assert not connected
    assert code == 4403


async def test_anonymous_socket_is_refused():
    _operator, _stranger, call = await _world()
    for path in (f"/ws/calls/{call.pk}/", "/ws/dashboard/"):
        _communicator, connected, code = await _connect(path)
        assert not connected
        assert code == 4403


async def test_unknown_call_is_refused():
    operator, _stranger, _call = await _world()
    _communicator, connected, code = await _connect("/ws/calls/999999/", operator)
    assert not connected
    assert code == 4403


async def test_dashboard_receives_status_of_own_organisation_only():
    operator, stranger, call = await _world()
    communicator, connected, _ = await _connect("/ws/dashboard/", operator)
    assert connected
    layer = get_channel_layer()
    try:
        await layer.group_send(
            org_monitor_group(stranger.organization_id),
            {"type": "call.status", "call_id": 0, "status": "ringing"},
        )
        await layer.group_send(
            org_monitor_group(call.organization_id),
            {"type": "transcript.partial", "call_id": call.pk, "delta": "x"},
        )
        assert await communicator.receive_nothing(timeout=0.3)
        await layer.group_send(
            org_monitor_group(call.organization_id),
            {"type": "call.status", "call_id": call.pk, "status": "transferring"},
        )
        message = await communicator.receive_json_from(timeout=3)
        assert message["call_id"] == call.pk
        assert message["status"] == "transferring"
    finally:
        await communicator.disconnect()


async def test_foreign_origin_is_refused():
    """The origin check keeps other sites' pages off the operators' sockets."""
    operator, _stranger, call = await _world()
    cookie = await _session_cookie(operator)
    communicator = WebsocketCommunicator(
        _application(),
        f"/ws/calls/{call.pk}/",
        headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie.encode())],
    )
    connected, _code = await communicator.connect(timeout=5)
    await communicator.disconnect()  # as a server would tell the app
    assert not connected


def _close_worker_connections() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            # SQLite's close() keeps in-memory test databases open; this thread's
            # own handle can go (the main thread's keeps the database alive).
            conn.connection.close()
            conn.connection = None


@pytest.fixture(autouse=True)
async def _close_consumer_connections():
    """Leave no open connection in Channels' worker thread after a test.

    Channels closes old connections before each dispatch; a handle left behind by
    these transactional tests would make that check touch the database in a later
    test that has no database access.
    """
    yield
    from asgiref.sync import sync_to_async

    await sync_to_async(_close_worker_connections)()


async def test_monitor_socket_says_try_again_while_the_channel_layer_is_down(
    monkeypatch,
):
    """F-71: a monitor that cannot join its group is closed with 1013 (the page
    retries with back-off and catches up), not left hanging."""
    operator, _, call = await _world()
    layer = get_channel_layer()

    async def down(group, channel):
        raise ConnectionError("Error 111 connecting to redis")

    monkeypatch.setattr(layer, "group_add", down)
    communicator, connected, _ = await _connect(f"/ws/calls/{call.pk}/", operator)
    assert connected
    closed = await communicator.receive_output(timeout=3)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1013)
    await communicator.disconnect()


@database_sync_to_async
def _take_over(call):
    from django.contrib.auth.models import Permission

    from agents.models import Operator
    from calls.supervision import supervision_take_over

    supervisor = OperatorFactory(organization=call.organization, first_name="花子")
    supervisor.user_permissions.add(Permission.objects.get(codename="supervise_call"))
    supervisor = Operator.objects.get(pk=supervisor.pk)
    supervision_take_over(call=call, user=supervisor)
    return supervisor


async def test_monitor_hears_who_holds_the_call_live_and_in_its_snapshot():
    """A take-over reaches the page as call.supervision; a socket that (re)connects
    later gets the holder in its call.snapshot."""
    operator, _stranger, call = await _world()
    communicator, connected, _ = await _connect(f"/ws/calls/{call.pk}/", operator)
    assert connected
    try:
        await _take_over(call)
        seen = []
        while not seen or seen[-1]["type"] != "call.supervision":
            seen.append(await communicator.receive_json_from(timeout=3))
        assert seen[-1] == {
            "type": "call.supervision",
            "call_id": call.pk,
            "holder": "supervisor",
            "mode": "take-over",
            "by_name": "花子",
        }
    finally:
        await communicator.disconnect()
    later, connected, _ = await _connect(f"/ws/calls/{call.pk}/?after=0", operator)
    assert connected
    try:
        snapshot = await later.receive_json_from(timeout=3)
        assert snapshot["type"] == "call.snapshot"
        assert snapshot["supervision"] == {
            "holder": "supervisor",
            "mode": "take-over",
            "by_name": "花子",
        }
    finally:
        await later.disconnect()
