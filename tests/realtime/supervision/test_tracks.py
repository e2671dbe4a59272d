"""A listener's track: the hub's packets in order on its own RTP clock, bounded."""

from __future__ import annotations

import fractions

import pytest
from aiortc.mediastreams import MediaStreamError

from realtime.supervision import tracks
from realtime.supervision.tracks import FanoutTrack


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_packets_go_out_in_order_on_a_48_khz_clock() -> None:
    track = FanoutTrack(silence=b"S")
    for payload in (b"a", b"b", b"c"):
        track.push(payload, None)
    packets = [await track.recv() for _ in range(3)]
    assert [bytes(p) for p in packets] == [b"a", b"b", b"c"]
    assert [p.pts for p in packets] == [0, 960, 1920]
    assert {p.time_base for p in packets} == {fractions.Fraction(1, 48000)}


async def test_the_time_from_arrival_to_sent_is_reported_once_sent() -> None:
    clock = Clock()
    sent: list[float] = []
    track = FanoutTrack(silence=b"S", on_sent=sent.append, clock=clock)
    track.push(b"a", 99.990)  # came in 10 ms ago
    await track.recv()
    assert sent == []  # handed to aiortc, not yet out
    clock.now = 100.002
    track.push(b"b", None)  # silence or AI audio: not measured
    await track.recv()  # aiortc asks again: "a" went out
    assert sent == [pytest.approx(0.012)]
    track.push(b"c", 100.002)
    await track.recv()
    assert len(sent) == 1  # "b" carried no arrival time


async def test_a_listener_far_behind_loses_its_oldest_packets() -> None:
    track = FanoutTrack(silence=b"S")
    for index in range(tracks.MAX_QUEUED + 5):
        track.push(bytes([index]), None)
    assert track.dropped == 5
    assert bytes(await track.recv()) == bytes([5])


async def test_silence_goes_out_when_nothing_came(monkeypatch) -> None:
    monkeypatch.setattr(tracks, "IDLE_S", 0.0)
    track = FanoutTrack(silence=b"S")
    assert bytes(await track.recv()) == b"S"


async def test_a_stopped_track_ends() -> None:
    track = FanoutTrack(silence=b"S")
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_after_a_pause_the_rtp_clock_moves_on_by_its_length() -> None:
    clock = Clock()
    track = FanoutTrack(silence=b"S", clock=clock)
    track.push(b"a", None)
    track.push(b"b", None)
    assert (await track.recv()).pts == 0
    clock.now += 0.001  # queued behind: the next 20 ms
    assert (await track.recv()).pts == 960
    clock.now += 0.200  # ten frames of silence, nothing sent
    track.push(b"c", None)
    assert (await track.recv()).pts == 960 + 10 * 960
