from __future__ import annotations

import json
import logging

from callcenter.logging import CallIdFilter, JsonFormatter, bind_call_id


def _format(record: logging.LogRecord) -> dict:
    CallIdFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_call_id_is_on_every_line_inside_the_block():
    """Lines logged while a call id is bound carry it; lines outside carry null."""
    with bind_call_id(42):
        inside = _format(
            logging.makeLogRecord({"msg": "媒体 %s", "args": ("開始",), "name": "x"})
        )
    outside = _format(logging.makeLogRecord({"msg": "idle", "name": "x"}))
    assert inside["call_id"] == "42"
    assert inside["message"] == "媒体 開始"
    assert outside["call_id"] is None


def test_extra_fields_are_kept():
    line = _format(
        logging.makeLogRecord({"msg": "m", "event": "start", "call_id": "7"})
    )
    assert line["event"] == "start"
    assert line["call_id"] == "7"
