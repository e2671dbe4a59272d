"""bench/legacy_turns.py's pairing of round trips with the service's turn figures."""

from __future__ import annotations

import pytest

from bench.legacy_turns import pair_turns, speech
from realtime.emulators.speech_script import HangsUp, Says


def test_own_share_is_the_round_trip_less_the_model():
    trips, models, own, inside, rounds = pair_turns(
        {"CA1": [320.0, 640.0], "CA2": [310.0]},
        {
            "CA1": [
                {"model_ms": 300, "own_ms": 12, "rounds": 1},
                {"model_ms": 610, "own_ms": 20, "rounds": 2},
            ],
            "CA2": [{"model_ms": 320, "own_ms": 3, "rounds": 1}],
        },
    )
    assert trips == [320.0, 640.0, 310.0]
    assert own == [20.0, 30.0, 0.0]  # never negative
    assert inside == [12.0, 20.0, 3.0] and rounds == [1, 2, 1]
    assert models == [300.0, 610.0, 320.0]


def test_a_turn_missing_on_either_side_is_an_error():
    with pytest.raises(RuntimeError):
        pair_turns({"CA1": [320.0, 330.0]}, {"CA1": [{"model_ms": 1, "own_ms": 1}]})


def test_every_caller_says_goodbye_then_leaves():
    script = speech(3, offset=1)
    assert len(script) == 5 and isinstance(script[-1], HangsUp)
    assert isinstance(script[-2], Says) and "失礼します" in script[-2].text
