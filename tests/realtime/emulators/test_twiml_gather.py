"""The Twilio emulator reads `<Gather>` and `<Say>` voices as Twilio does: documents
it refuses (12200), values it only warns about (13327, 13512, 13331, 13338) and
voices that cannot speak the language (13511)."""

from __future__ import annotations

import pytest

from realtime.emulators import twiml
from realtime.emulators.speech_script import HangsUp, Says, Silent, parse_speech_script
from realtime.emulators.twiml_gather import say_voice_error


def _gather(attrs: str, body: str = "") -> twiml.Gather:
    (verb,) = twiml.parse_twiml(f"<Response><Gather {attrs}>{body}</Gather></Response>")
    assert isinstance(verb, twiml.Gather)
    return verb


def test_defaults_are_twilios():
    verb = _gather('input="speech"')
    assert verb.timeout == 5 and verb.language == "en-US"
    assert verb.action is None and verb.method == "POST"
    assert verb.action_on_empty_result is False and verb.speech_timeout is None


@pytest.mark.parametrize(
    ("attrs", "body"),
    [
        ('input="voice"', ""),
        ('input="speech" timeout="0"', ""),
        ('input="speech" method="PUT"', ""),
        ('input="speech"', "<Dial>+815012345678</Dial>"),
        ('input="speech" hints="' + "あ" * 101 + '"', ""),
    ],
)
def test_documents_twilio_refuses(attrs, body):
    with pytest.raises(twiml.TwimlError) as caught:
        _gather(attrs, body)
    assert caught.value.code == twiml.TwimlErrorCode.SCHEMA_VALIDATION


@pytest.mark.parametrize(
    ("attrs", "code"),
    [
        ('input="speech" language="ja-JP" speechTimeout="soon"', 13327),
        ('input="speech" language="ja"', 13512),
        ('input="speech" language="ja-JP" speechModel="numbers_and_commands"', 13331),
        ('input="speech" language="ja-JP" speechModel="no_such_model"', 13331),
        ('input="speech" language="ja-JP" actionOnEmptyResult="yes"', 13338),
    ],
)
def test_values_twilio_warns_about(attrs, code):
    verb = _gather(attrs)
    assert [c for c, _ in verb.warnings] == [code]


def test_nested_say_keeps_its_voice():
    verb = _gather(
        'input="speech" language="ja-JP" speechModel="phone_call"',
        '<Say language="ja-JP" voice="Polly.Takumi">はい</Say><Pause length="1"/>',
    )
    say, pause = verb.nested
    assert isinstance(say, twiml.Say) and say.voice == "Polly.Takumi"
    assert isinstance(pause, twiml.Pause)
    assert not verb.warnings


@pytest.mark.parametrize(
    ("voice", "language", "ok"),
    [
        ("Polly.Mizuki", "ja-JP", True),
        ("Polly.Kazuha-Neural", "ja-JP", True),
        ("Google.ja-JP-Neural2-B", "ja-JP", True),
        ("Google.ja-JP-Wavenet-D", None, True),
        ("alice", "ja-JP", True),
        (None, "ja-JP", True),
        ("Polly.Joanna", "ja-JP", False),
        ("Google.en-US-Standard-A", "ja-JP", False),
        ("Polly.Nobody", "ja-JP", False),
        ("Google.ja-JP-Fancy-A", "ja-JP", False),
    ],
)
def test_say_voice_checks(voice, language, ok):
    assert (say_voice_error(voice, language) is None) is ok


def test_speech_script_from_the_control_api():
    assert parse_speech_script(["say:はい", "silent", "hangup"]) == [
        Says("はい"),
        Silent(),
        HangsUp(),
    ]
    with pytest.raises(ValueError):
        parse_speech_script(["shout:はい"])
    with pytest.raises(ValueError):
        Says("はい", confidence=1.5)
