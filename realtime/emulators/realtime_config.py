"""The fake Realtime server's session object: defaults and ``session.update``."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "default_session",
    "default_transcription_session",
    "merge_session",
]

DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. "
    "Act like a human, but remember that you aren't a human."
)

_VAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "server_vad": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    },
}


def default_session(session_id: str, model: str) -> dict[str, Any]:
    """Return the full default session a new connection starts with (A2)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": copy.deepcopy(_VAD_DEFAULTS["server_vad"]),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    }


def default_transcription_session(session_id: str) -> dict[str, Any]:
    """Return the default session of an ``intent=transcription`` connection."""
    vad = {
        k: v
        for k, v in _VAD_DEFAULTS["server_vad"].items()
        if k not in ("create_response", "interrupt_response", "idle_timeout_ms")
    }
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": vad,
            }
        },
    }


def _complete(value: dict[str, Any]) -> dict[str, Any]:
    """Fill a newly chosen tagged object with its server defaults."""
    kind = value.get("type")
    if kind == "audio/pcm":
        return {"type": "audio/pcm", "rate": 24000, **value}
    if kind in _VAD_DEFAULTS:
        return {**copy.deepcopy(_VAD_DEFAULTS[kind]), **value}
    return copy.deepcopy(value)


def merge_session(
    current: dict[str, Any], update: Mapping[str, Any], *, top: bool = True
) -> dict[str, Any]:
    """Return ``current`` with ``update`` deep-merged into it.

    Objects merge field by field; other values (arrays, null, strings) replace.
    A tagged object (``type``) whose tag changes is replaced and completed with
    its defaults, so ``{"type":"audio/pcmu"}`` does not inherit a PCM ``rate``.
    The model is fixed for the session's life, so it is not changed.
    """
    merged = copy.deepcopy(current)
    for name, value in update.items():
        if top and name == "model" and "model" in merged:
            continue
        old = merged.get(name)
        if isinstance(value, dict) and isinstance(old, dict):
            if "type" in value and value.get("type") != old.get("type"):
                merged[name] = _complete(value)
            else:
                merged[name] = merge_session(old, value, top=False)
        elif isinstance(value, dict):
            merged[name] = _complete(value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged
