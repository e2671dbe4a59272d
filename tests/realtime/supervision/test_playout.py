"""The AI's audio as the caller hears it: queued, paced, re-timed at marks, cleared."""

from __future__ import annotations

import pytest

from realtime.supervision.playout import FRAME_S, Playout

FRAME = 160  # μ-law 20 ms


def frames(*labels: int) -> bytes:
    return b"".join(bytes([label]) * FRAME for label in labels)


def heard(playout: Playout, start: float, ticks: int) -> list[int | None]:
    """The first byte of the frame handed out at each 20 ms tick from ``start``."""
    out: list[int | None] = []
    for tick in range(ticks):
        frame = playout.next_frame(start + tick * FRAME_S)
        out.append(None if frame is None else frame[0])
    return out


def test_audio_sent_in_a_burst_plays_at_real_time_from_its_arrival() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1, 2, 3), now=10.0)
    assert playout.next_frame(9.98) is None  # not yet arrived at the caller
    assert heard(playout, 10.0, 5) == [1, 2, 3, None, None]


def test_later_audio_waits_behind_what_is_playing() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1, 2), now=0.0)
    assert heard(playout, 0.0, 1) == [1]
    playout.queue(frames(3), now=0.005)  # while frame 1 plays
    # frame 3 plays after frame 2, not as soon as it arrived
    assert heard(playout, 0.02, 3) == [2, 3, None]


def test_audio_after_a_pause_starts_when_it_arrives() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1), now=0.0)
    assert heard(playout, 0.0, 2) == [1, None]
    playout.queue(frames(2), now=1.0)
    assert playout.next_frame(0.9) is None
    assert heard(playout, 1.0, 1) == [2]


def test_a_late_mark_echo_holds_the_rest_back() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1, 2), now=0.0)
    playout.mark("m1")
    playout.queue(frames(3, 4), now=0.0)
    assert heard(playout, 0.0, 2) == [1, 2]
    # Twilio says it reached m1 (after frame 2) only at 0.10, not at 0.04
    assert playout.mark_played("m1", 0.10)
    assert heard(playout, 0.04, 3) == [None, None, None]
    assert heard(playout, 0.10, 3) == [3, 4, None]


def test_an_early_mark_echo_skips_audio_the_caller_already_heard() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(*range(1, 21)), now=0.0)
    playout.mark("end")
    playout.queue(frames(30), now=0.0)
    assert heard(playout, 0.0, 2) == [1, 2]
    # The caller's playback ran ahead: all 20 frames heard by 0.05.
    assert playout.mark_played("end", 0.05)
    assert heard(playout, 0.06, 2) == [30, None]
    assert playout.skipped == 18


def test_clear_drops_what_was_not_played_and_its_marks() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1, 2, 3), now=0.0)
    playout.mark("m")
    assert heard(playout, 0.0, 1) == [1]
    assert playout.clear() == 2
    assert heard(playout, 0.02, 2) == [None, None]
    assert not playout.mark_played("m", 0.1)  # echoed after the clear: unknown
    playout.queue(frames(9), now=0.5)
    assert heard(playout, 0.5, 1) == [9]


def test_partial_frames_are_completed_by_later_audio() -> None:
    playout = Playout(FRAME)
    playout.queue(bytes([7]) * 100, now=0.0)
    assert playout.waiting == 0
    playout.queue(bytes([7]) * 60, now=0.0)
    assert playout.waiting == 1
    assert playout.next_frame(0.0) == bytes([7]) * FRAME


def test_unknown_mark_changes_nothing() -> None:
    playout = Playout(FRAME)
    playout.queue(frames(1), now=0.0)
    assert not playout.mark_played("never-sent", 5.0)
    assert heard(playout, 0.0, 1) == [1]


def test_a_frame_must_have_a_size() -> None:
    with pytest.raises(ValueError):
        Playout(0)
