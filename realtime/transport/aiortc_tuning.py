"""What the web transport changes in aiortc 1.16's internals, each for a measured reason.

- Host candidates: aioice reads every interface and leaves out 127.0.0.1, through a
  module function; `host_addresses_choose` puts the configured list in its place.
- The RTP audio-level header (RFC 6465): aiortc computes it for every frame it sends
  in a Python loop over all 960 samples (≈ 0.3 ms a frame here, 15 ms of CPU a
  second per call). `audio_level_install` swaps in the same formula over every
  fourth sample, and a plain compare for silence (≈ 20× cheaper); the level is
  advisory (an SFU's speaker indicator), whole dB either way.
- The receiver's jitter buffer: see `webrtc_audio.ArrivalOrderJitterBuffer`.

Each is for the whole process and idempotent; tests pin aiortc's behaviour.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Sequence
from typing import Any, Final

import aioice.ice
import aiortc.rtp

__all__ = [
    "AIORTC_AUDIO_LEVEL",
    "audio_level_dbov",
    "audio_level_install",
    "host_addresses_choose",
]

_MAX_SAMPLE: Final = 32767
_MIN_LEVEL: Final = -127
_STRIDE: Final = 4

_chosen_addresses: tuple[str, ...] | None = None
_aioice_host_addresses = aioice.ice.get_host_addresses
AIORTC_AUDIO_LEVEL: Final = aiortc.rtp.compute_audio_level_dbov  # for comparison


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _chosen_addresses is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [
        a
        for a in _chosen_addresses
        if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
    ]


def host_addresses_choose(addresses: Sequence[str]) -> None:
    """Offer exactly ``addresses`` as host candidates (empty: aioice's own choice)."""
    global _chosen_addresses
    _chosen_addresses = tuple(addresses) or None
    aioice.ice.get_host_addresses = _host_addresses


def audio_level_dbov(frame: Any) -> int:
    """RFC 6465 audio level (0 … -127 dBov) of an s16 frame, from every 4th sample."""
    data = bytes(frame.planes[0])[: frame.samples * 2 * len(frame.layout.channels)]
    if not data.strip(b"\0"):
        return _MIN_LEVEL
    samples = array("h", data)[::_STRIDE]
    energy = sum(map(operator.mul, samples, samples))
    rms = math.sqrt(energy / (len(samples) * _MAX_SAMPLE * _MAX_SAMPLE))
    if rms <= 0:
        return _MIN_LEVEL
    return round(min(max(20 * math.log10(rms), _MIN_LEVEL), 0))


def audio_level_install() -> None:
    """Have aiortc's senders use `audio_level_dbov`."""
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov
