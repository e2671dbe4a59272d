"""The greeting audio cache (F-73): keys, disk format, LRU bound, bad files."""

from __future__ import annotations

import os
import random
import time

import pytest

from realtime import greeting_cache as gc
from realtime.greeting_cache import GreetingCache, greeting_cache_for, greeting_key

TEXT = "お電話ありがとうございます。デモ商事です。"
AUDIO = random.Random(3).randbytes(8000)  # 1 s of μ-law


def key(text: str = TEXT, **overrides: object) -> str:
    fields: dict[str, object] = {
        "profile_id": 1,
        "voice": "marin",
        "speed": 1.0,
        "model": "gpt-realtime",
        "audio_format": "audio/pcmu",
        "text": text,
    }
    fields.update(overrides)
    return greeting_key(**fields)  # type: ignore[arg-type]


def test_key_changes_with_everything_that_changes_the_audio():
    base = key()
    assert key() == base
    assert len(base) == 64
    others = {
        key(text=TEXT + "。"),
        key(profile_id=2),
        key(voice="cedar"),
        key(speed=1.1),
        key(model="gpt-realtime-mini"),
        key(audio_format="audio/pcm"),
    }
    assert base not in others and len(others) == 6


def test_an_entry_written_is_read_back_by_another_process(tmp_path):
    cache = GreetingCache(tmp_path, 8)
    assert cache.get(key()) is None  # a miss first
    entry = cache.put(key(), TEXT, AUDIO)
    assert entry is not None and entry.audio == AUDIO
    assert cache.get(key()) is entry  # from memory
    other = GreetingCache(tmp_path, 8)  # another process: from disk
    read = other.get(key())
    assert read is not None
    assert read.text == TEXT and read.audio == AUDIO
    assert read.chunks_b64 == entry.chunks_b64
    assert (other.hits, other.misses) == (1, 0)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key()}.greeting"]


def test_missing_file_is_a_miss(tmp_path):
    cache = GreetingCache(tmp_path / "not-there-yet", 8)
    assert cache.get(key()) is None
    assert cache.misses == 1


def _corrupt(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-100])
    elif how == "flipped":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "magic":
        path.write_bytes(b"NOTGREET" + data[8:])
    elif how == "header":
        path.write_bytes(data[:20])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))


@pytest.mark.parametrize(
    "how", ["truncated", "flipped", "magic", "header", "empty", "garbage"]
)
def test_a_corrupt_file_is_a_miss_and_is_removed(tmp_path, how, caplog):
    GreetingCache(tmp_path, 8).put(key(), TEXT, AUDIO)
    path = tmp_path / f"{key()}.greeting"
    _corrupt(path, how)
    cache = GreetingCache(tmp_path, 8)
    assert cache.get(key()) is None
    assert cache.corrupt == 1 and cache.misses == 1
    assert not path.exists()  # the next live greeting writes a good one
    assert "corrupt" in caplog.text


def test_an_unreadable_file_is_a_miss(tmp_path):
    (tmp_path / f"{key()}.greeting").mkdir()  # reading a folder fails
    cache = GreetingCache(tmp_path, 8)
    assert cache.get(key()) is None


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path):
    cache = GreetingCache(tmp_path, 2)
    keys = [key(text=f"{TEXT}{n}") for n in range(3)]
    cache.put(keys[0], TEXT, AUDIO)
    time.sleep(0.01)
    cache.put(keys[1], TEXT, AUDIO)
    time.sleep(0.01)
    reader = GreetingCache(tmp_path, 2)
    assert reader.get(keys[0]) is not None  # used: now the most recent on disk
    time.sleep(0.01)
    cache.put(keys[2], TEXT, AUDIO)
    on_disk = {p.name.split(".")[0] for p in tmp_path.iterdir()}
    assert on_disk == {keys[0], keys[2]}
    assert len(cache) == 2
    # The memory LRU is bounded too.
    assert len(cache._memory) == 2 and keys[0] not in cache._memory


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path, monkeypatch):
    cache = GreetingCache(tmp_path, 8)
    cache.put(key(), TEXT, AUDIO)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(gc.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key(), "別の挨拶です。", AUDIO[:800])
    # The old entry is whole; no temporary file is left behind.
    assert [p.name for p in tmp_path.iterdir()] == [f"{key()}.greeting"]
    assert GreetingCache(tmp_path, 8).get(key()).text == TEXT


def test_an_entry_no_call_could_play_is_refused(tmp_path):
    cache = GreetingCache(tmp_path, 8)
    with pytest.raises(ValueError):
        cache.put(key(), TEXT, b"")
    assert not list(tmp_path.iterdir())


def test_size_zero_turns_the_cache_off(tmp_path):
    cache = GreetingCache(tmp_path, 0)
    assert not cache.enabled
    assert cache.put(key(), TEXT, AUDIO) is None
    assert cache.get(key()) is None
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError):
        GreetingCache(tmp_path, -1)


def test_only_keys_name_files(tmp_path):
    cache = GreetingCache(tmp_path, 8)
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


def test_one_cache_per_folder_and_size_in_a_process(tmp_path):
    assert greeting_cache_for(tmp_path, 4) is greeting_cache_for(tmp_path, 4)
    assert greeting_cache_for(tmp_path, 4) is not greeting_cache_for(tmp_path, 5)
