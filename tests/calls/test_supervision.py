"""Supervision services (F-75): who may act, on which calls, and what each action leaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from agents.models import Operator
from callcenter.errors import ApplicationError
from calls.control import CallNotLive
from calls.groups import call_control_group, call_monitor_group
from calls.models import CallSession
from calls.selectors import call_supervision_history, call_supervision_state
from calls.status import CallStatus
from calls.supervision import (
    CallNotSupervisable,
    SupervisionForbidden,
    supervision_barge,
    supervision_barge_end,
    supervision_hand_back,
    supervision_take_over,
    supervision_whisper,
)
from tests.agents.factories import OperatorFactory
from tests.calls.factories import CallSessionFactory
from tests.calls.layer_inbox import group_inbox, in_memory_layer  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("in_memory_layer")]


def supervisor_of(call: CallSession, **fields: Any) -> Operator:
    user = OperatorFactory(organization=call.organization, **fields)
    user.user_permissions.add(Permission.objects.get(codename="supervise_call"))
    return Operator.objects.get(pk=user.pk)  # no cached permissions


@pytest.fixture
def live_call() -> CallSession:
    return CallSessionFactory(status=CallStatus.AI_RESPONDING)


@pytest.fixture
def bridge(live_call: CallSession) -> Callable[[], list[dict[str, Any]]]:
    return group_inbox(call_control_group(live_call.pk))


@pytest.fixture
def monitor(live_call: CallSession) -> Callable[[], list[dict[str, Any]]]:
    return group_inbox(call_monitor_group(live_call.pk))


ACTIONS: dict[str, Callable[..., Any]] = {
    "whisper": lambda call, user: supervision_whisper(call=call, user=user, text="x"),
    "barge": lambda call, user: supervision_barge(call=call, user=user),
    "barge_end": lambda call, user: supervision_barge_end(call=call, user=user),
    "take_over": lambda call, user: supervision_take_over(call=call, user=user),
    "hand_back": lambda call, user: supervision_hand_back(call=call, user=user),
}


@pytest.mark.parametrize("action", ACTIONS)
def test_without_the_permission_nothing_is_sent_or_recorded(
    action: str, live_call: CallSession, bridge: Callable[[], list[Any]]
) -> None:
    """An operator without calls.supervise_call gets 403; no event, no command."""
    user = OperatorFactory(organization=live_call.organization)
    with pytest.raises(SupervisionForbidden) as refused:
        ACTIONS[action](live_call, user)
    assert refused.value.http_status == 403
    assert refused.value.code == "permission_denied"
    assert bridge() == []
    assert not live_call.events.filter(type__startswith="supervise-").exists()
    live_call.refresh_from_db()
    assert live_call.held_by_id is None


@pytest.mark.parametrize("action", ACTIONS)
def test_an_ended_call_is_409_not_live(action: str) -> None:
    call = CallSessionFactory(status=CallStatus.COMPLETED)
    receive = group_inbox(call_control_group(call.pk))
    with pytest.raises(CallNotLive) as refused:
        ACTIONS[action](call, supervisor_of(call))
    assert refused.value.http_status == 409
    assert receive() == []
    assert not call.events.exists()


@pytest.mark.parametrize("action", ACTIONS)
def test_a_call_with_a_human_is_not_the_bridges(action: str) -> None:
    call = CallSessionFactory(status=CallStatus.HUMAN_CONNECTED)
    receive = group_inbox(call_control_group(call.pk))
    with pytest.raises(CallNotSupervisable) as refused:
        ACTIONS[action](call, supervisor_of(call))
    assert refused.value.http_status == 409
    assert refused.value.code == "call_not_supervisable"
    assert receive() == []
    assert not call.events.filter(type__startswith="supervise-").exists()


def test_whisper_is_the_operator_instruction_with_who(
    live_call: CallSession, bridge: Callable[[], list[Any]]
) -> None:
    user = supervisor_of(live_call, first_name="花子", last_name="佐藤")
    supervision_whisper(call=live_call, user=user, text="料金は折り返しと伝えて")
    assert bridge() == [
        {
            "type": "call.control",
            "command": "instruct",
            "text": "料金は折り返しと伝えて",
            "by_id": user.pk,
            "by_name": user.get_full_name(),
        }
    ]
    event = live_call.events.get(type="supervise-whisper")
    assert event.payload["by_id"] == user.pk
    assert event.payload["text"] == "料金は折り返しと伝えて"
    assert not live_call.events.filter(type="instruct-requested").exists()


def test_take_over_holds_the_call_and_hand_back_returns_it(
    live_call: CallSession,
    bridge: Callable[[], list[Any]],
    monitor: Callable[[], list[Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = supervisor_of(live_call)
    with django_capture_on_commit_callbacks(execute=True):
        result = supervision_take_over(call=live_call, user=user, listener="L1")
    assert (result.holder, result.mode, result.held_by) == (
        "supervisor",
        "take-over",
        user.pk,
    )
    live_call.refresh_from_db()
    assert live_call.held_by_id == user.pk
    assert bridge() == [
        {
            "type": "call.control",
            "command": "supervise-take-over",
            "by_id": user.pk,
            "by_name": user.username,
            "listener": "L1",
        }
    ]
    supervision = [m for m in monitor() if m["type"] == "call.supervision"]
    assert supervision == [
        {
            "type": "call.supervision",
            "call_id": live_call.pk,
            "holder": "supervisor",
            "mode": "take-over",
            "by_name": user.username,
        }
    ]
    with django_capture_on_commit_callbacks(execute=True):
        result = supervision_hand_back(call=live_call, user=user)
    assert (result.holder, result.mode, result.held_by) == ("ai", None, None)
    live_call.refresh_from_db()
    assert live_call.held_by_id is None
    assert [m["command"] for m in bridge()] == ["supervise-hand-back"]
    assert [m["holder"] for m in monitor() if m["type"] == "call.supervision"] == ["ai"]
    types = list(live_call.events.values_list("type", flat=True))
    assert types == ["supervise-take-over", "supervise-hand-back"]


def test_another_supervisor_cannot_take_over_a_held_call(
    live_call: CallSession, bridge: Callable[[], list[Any]]
) -> None:
    first, second = supervisor_of(live_call), supervisor_of(live_call)
    supervision_take_over(call=live_call, user=first)
    bridge()
    with pytest.raises(CallNotSupervisable):
        supervision_take_over(call=live_call, user=second)
    with pytest.raises(CallNotSupervisable):
        supervision_barge(call=live_call, user=second)
    assert bridge() == []
    live_call.refresh_from_db()
    assert live_call.held_by_id == first.pk


def test_barge_then_barge_end(
    live_call: CallSession, bridge: Callable[[], list[Any]]
) -> None:
    """A barge holds no row (held_by stays null); its mode comes from the events."""
    user = supervisor_of(live_call)
    result = supervision_barge(call=live_call, user=user)
    assert (result.holder, result.mode, result.held_by) == ("supervisor", "barge", None)
    assert bridge() == [
        {
            "type": "call.control",
            "command": "supervise-barge",
            "by_id": user.pk,
            "by_name": user.username,
        }
    ]
    result = supervision_barge_end(call=live_call, user=user)
    assert (result.holder, result.mode) == ("ai", None)
    assert [m["command"] for m in bridge()] == ["supervise-barge-end"]
    with pytest.raises(CallNotSupervisable):  # nothing left to end
        supervision_barge_end(call=live_call, user=user)
    with pytest.raises(CallNotSupervisable):  # the AI already holds it
        supervision_hand_back(call=live_call, user=user)
    assert bridge() == []


def test_a_layer_failure_records_nothing(
    live_call: CallSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bridge unreachable (502): no event, held_by unchanged."""

    def down(**kwargs: Any) -> None:
        raise ConnectionError("redis down")

    monkeypatch.setattr("calls.control.call_control_send", down)
    with pytest.raises(ApplicationError) as failed:
        supervision_take_over(call=live_call, user=supervisor_of(live_call))
    assert failed.value.http_status == 502
    live_call.refresh_from_db()
    assert live_call.held_by_id is None
    assert not live_call.events.exists()


def test_the_bridge_losing_the_supervisor_leaves_the_ai_holding(
    live_call: CallSession,
) -> None:
    """After the bridge's automatic hand-back (held_by cleared, event with by_id
    null) the state is the AI's again."""
    user = supervisor_of(live_call)
    supervision_take_over(call=live_call, user=user)
    CallSession.objects.filter(pk=live_call.pk).update(held_by=None)
    live_call.events.create(
        type="supervise-hand-back", payload={"by_id": None, "reason": "supervisor-lost"}
    )
    live_call.refresh_from_db()
    assert call_supervision_state(call=live_call)["holder"] == "ai"
    history = call_supervision_history(call=live_call)
    assert [(r["action"], r["reason"]) for r in history] == [
        ("take-over", ""),
        ("hand-back", "supervisor-lost"),
    ]


def test_history_pairs_listen_start_and_stop() -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    who = {"by_id": 3, "by_name": "佐藤"}
    call.events.create(type="supervise-listen-start", payload={"listener": "A", **who})
    call.events.create(
        type="supervise-listen-start",
        payload={"listener": "B", "by_id": 4, "by_name": "鈴木"},
    )
    call.events.create(type="supervise-whisper", payload={"text": "急いで", **who})
    call.events.create(
        type="supervise-listen-stop", payload={"listener": "A", "seconds": 12.5, **who}
    )
    call.events.create(type="status", payload={"to": "completed"})  # not supervision
    rows = call_supervision_history(call=call)
    assert [(r["action"], r["by_name"]) for r in rows] == [
        ("listen", "佐藤"),
        ("listen", "鈴木"),
        ("whisper", "佐藤"),
    ]
    assert rows[0]["seconds"] == 12.5 and rows[0]["ended_at"] is not None
    assert rows[1]["ended_at"] is None  # still listening
    assert rows[2]["text"] == "急いで"


def test_history_fragment_in_both_languages_with_the_organisations_time() -> None:
    """Times show in Asia/Tokyo (the page names the zone once, not the fragment);
    Japanese and English both read."""
    from datetime import UTC, datetime

    from django.template.loader import render_to_string
    from django.utils import translation

    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    who = {"by_id": 3, "by_name": "佐藤"}
    start = call.events.create(
        type="supervise-listen-start", payload={"listener": "A", **who}
    )
    stop = call.events.create(
        type="supervise-listen-stop", payload={"listener": "A", "seconds": 30, **who}
    )
    call.events.create(type="supervise-take-over", payload=who)
    call.events.filter(pk=start.pk).update(
        created_at=datetime(2026, 1, 5, 2, 38, 0, tzinfo=UTC)
    )
    call.events.filter(pk=stop.pk).update(
        created_at=datetime(2026, 1, 5, 2, 38, 30, tzinfo=UTC)
    )
    context = {"supervision_history": call_supervision_history(call=call)}
    with translation.override("ja"):
        ja = render_to_string("calls/_supervision_history.html", context)
    with translation.override("en"):
        en = render_to_string("calls/_supervision_history.html", context)
    assert "11:38:00" in ja and "11:38:30" in ja and "Asia/Tokyo" not in ja
    assert "監視と介入の記録" in ja and "通話を代わりました" in ja and "佐藤" in ja
    assert "Listening and interventions" in en
    assert "listened (until 11:38:30, 30 s)" in en
    assert "took over the call" in en
    with translation.override("en"):
        empty = render_to_string(
            "calls/_supervision_history.html", {"supervision_history": []}
        )
    assert "No one has listened to or stepped into this call." in empty


def test_an_ended_call_is_held_by_no_one(live_call: CallSession) -> None:
    from calls.services import call_session_end

    supervision_take_over(call=live_call, user=supervisor_of(live_call))
    call_session_end(call=live_call, reason="hangup")
    live_call.refresh_from_db()
    assert live_call.held_by_id is None
    assert call_supervision_state(call=live_call)["holder"] == "ai"


def test_the_admin_shows_who_holds_the_call(
    client: Any, live_call: CallSession
) -> None:
    from django.urls import reverse

    from tests.agents.factories import OperatorFactory as Factory

    holder = supervisor_of(live_call, username="sato-supervisor")
    supervision_take_over(call=live_call, user=holder)
    client.force_login(Factory(is_superuser=True))
    page = client.get(
        reverse("admin:calls_callsession_change", args=[live_call.pk])
    ).content.decode()
    assert "sato-supervisor" in page
    assert 'name="held_by"' not in page  # read-only
