"""The embedded broker never shows a consumer a half-written message (F-62)."""

from __future__ import annotations

import os
from queue import Empty

import pytest
from kombu import Connection

import callcenter.broker  # noqa: F401


def test_a_message_appears_only_once_it_is_whole(tmp_path, monkeypatch):
    """While the message is being written, the queue looks empty to a consumer; a
    kombu `filesystem://` consumer could move the empty file away and die on it."""
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    with Connection("fsatomic://", transport_options=options) as conn:
        channel = conn.default_channel
        seen_while_writing = []
        real_replace = os.replace

        def replace(src, dst):
            try:
                channel._get("dial")
            except Empty:
                seen_while_writing.append("nothing")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        channel._put("dial", {"body": "x" * 10_000})
        assert seen_while_writing == ["nothing"]
        assert channel._get("dial") == {"body": "x" * 10_000}
        with pytest.raises(Empty):
            channel._get("dial")
