"""A call event in words for the timeline (F-37, F-38).

Operators read a sentence ("担当者の電話を呼び出しました · TwiML: 会議 handoff-7 に参加");
the raw payload stays behind the page's "details" toggle. The monitor page renders
the saved events with `event_text`, and the monitor socket adds the same text to the
events it forwards live (calls/consumers.py), so a line reads the same either way.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

VALUE_MAX_CHARS = 80
# In the sentence already (by_name), or ids that tell an operator nothing.
HIDDEN_KEYS = frozenset({"by_id", "by_name", "listener"})

# What happened, per event type; the payload's facts follow. Types not listed show
# their facts alone (the line shows the type too).
EVENT_SENTENCES: dict[str, Promise] = {
    "stream-start": gettext_lazy("音声ストリームが始まりました"),
    "stream-ended": gettext_lazy("音声ストリームが終わりました"),
    "stream-lost": gettext_lazy("音声ストリームが途切れました"),
    "stream-resumed": gettext_lazy("音声ストリームが再開しました"),
    "model-connected": gettext_lazy("AIモデルに接続しました"),
    "model-reconnect": gettext_lazy("AIモデルに再接続しています"),
    "model-failed": gettext_lazy("AIモデルとの接続に失敗しました"),
    "handoff-initiated": gettext_lazy("担当者への引き継ぎを始めました"),
    "handoff-agent-dialled": gettext_lazy("担当者の電話を呼び出しました"),
    "handoff-agent-status": gettext_lazy("担当者の電話の状態が変わりました"),
    "handoff-caller-moved": gettext_lazy("お客様を担当者との会議に移しました"),
    "handoff-failed": gettext_lazy("担当者に引き継げませんでした"),
    "handoff-refused": gettext_lazy("引き継ぎは行いませんでした"),
    "hangup-requested": gettext_lazy("オペレーターが切断を指示しました"),
    "instruct-requested": gettext_lazy("オペレーターがAIに指示しました"),
    "twilio-status": gettext_lazy("Twilio から通話の状態が届きました"),
    "supervise-listen-start": gettext_lazy("%(name)s が聴き始めました"),
    "supervise-listen-stop": gettext_lazy("%(name)s が聴くのをやめました"),
    "supervise-whisper": gettext_lazy("%(name)s がAIにささやきました"),
    "supervise-barge": gettext_lazy("%(name)s が割り込みました"),
    "supervise-barge-end": gettext_lazy("%(name)s が割り込みを終えました"),
    "supervise-take-over": gettext_lazy("%(name)s が通話を代わりました"),
    "supervise-hand-back": gettext_lazy("通話をAIに戻しました"),
    "supervise-phone-listen": gettext_lazy("%(name)s が電話で聴き始めました"),
}


def _short(value: Any) -> str:
    text = str(value)
    if len(text) <= VALUE_MAX_CHARS:
        return text
    return text[: VALUE_MAX_CHARS - 1] + "…"


def _verb_in_words(verb: ElementTree.Element) -> str:
    text = (verb.text or "").strip()
    if verb.tag == "Say":
        return _("「%(text)s」と読み上げる") % {"text": _short(text)}
    if verb.tag == "Play":
        return _("音声を再生する")
    if verb.tag == "Pause":
        return _("%(seconds)s 秒待つ") % {"seconds": verb.get("length", "1")}
    if verb.tag == "Hangup":
        return _("切断する")
    if verb.tag == "Connect" and verb.find("Stream") is not None:
        return _("AIの音声ストリームにつなぐ")
    if verb.tag == "Dial":
        room = verb.find("Conference")
        if room is not None:
            return _("会議 %(room)s に参加する") % {"room": (room.text or "").strip()}
        number = verb.find("Number")
        target = (number.text if number is not None else text) or "?"
        return _("%(number)s に発信する") % {"number": target.strip()}
    return verb.tag


def twiml_in_words(document: str) -> str:
    """`<Response><Say>…</Say><Hangup/></Response>` → 「…」と読み上げる → 切断する."""
    try:
        root = ElementTree.fromstring(document)  # our own TwiML: no entities
    except ElementTree.ParseError:
        return _short(document)
    steps = [_verb_in_words(verb) for verb in root]
    return "TwiML: " + (" → ".join(steps) if steps else _("何もしない"))


def _value_in_words(key: str, value: Any) -> str:
    if isinstance(value, str) and value.lstrip().startswith("<?xml"):
        return twiml_in_words(value)
    if isinstance(value, bool):
        value = _("はい") if value else _("いいえ")
    return f"{key}: {_short(value)}"


def event_text(kind: str, payload: Any) -> str:
    """One line in words for a timeline event."""
    if kind == "status" and isinstance(payload, dict):
        text = f"{payload.get('from', '?')} → {payload.get('to', '?')}"
        return f"{text} ({payload['reason']})" if payload.get("reason") else text
    if kind == "tool-call" and isinstance(payload, dict):
        return tool_call_summary(payload)
    # The line shows the type beside this text: an unknown type's name is not repeated.
    sentence = str(EVENT_SENTENCES[kind]) if kind in EVENT_SENTENCES else ""
    if isinstance(payload, dict):
        if "%(name)s" in sentence:  # who did it, by name (F-75's supervise-* events)
            sentence = sentence % {"name": payload.get("by_name") or "?"}
        facts = [
            _value_in_words(k, v)
            for k, v in payload.items()
            if v not in ("", None) and k not in HIDDEN_KEYS
        ]
    else:
        facts = [_short(payload)] if payload else []
    return " · ".join(part for part in (sentence, *facts) if part)


def tool_call_summary(payload: dict[str, Any]) -> str:
    """`tool @ server: ok, 120 ms, 53 B` or `tool @ server: error (why), 12 ms` (F-78).

    Built-in, MCP and HTTP tools alike; the event never holds secrets or headers.
    """
    name = str(payload.get("tool") or payload.get("name") or "?")
    where = f"{name} @ {payload['server']}" if payload.get("server") else name
    output = payload.get("output")
    error = payload.get("error") or (
        output.get("error") if isinstance(output, dict) else ""
    )
    parts = [
        "ok" if payload.get("ok") else f"error ({_short(error)})" if error else "error"
    ]
    if isinstance(payload.get("ms"), int | float):
        parts.append(f"{payload['ms']:g} ms")
    size = payload.get("output_bytes")
    if isinstance(size, int):
        parts.append(f"{size} B")
    return f"{where}: {', '.join(parts)}"
