"""Where the server's database work runs (callcenter/db.py, callcenter/asgi.py).

Against the real ASGI application and a file database, so that the DB threads,
the request threads and SQLite's locking are the ones the server has.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import OperationalError, connection
from django.db.utils import ConnectionHandler
from twilio.request_validator import RequestValidator

from callcenter import db as dbmod
from callcenter.asgi import application
from callcenter.db import db_sync_to_async
from calls import services
from calls.groups import call_monitor_group
from calls.models import CallSession
from calls.status import CallStatus
from tests.agents.factories import PhoneNumberFactory
from tests.calls.factories import CallSessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]
TOKEN = "test-auth-token"
BASE = "https://cc.example.com"
NUMBER = "+815012340001"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_VALIDATE_SIGNATURES = True
    settings.USE_OPENAI_REALTIME = True
    settings.MAX_LIVE_CALLS = 1000
    settings.ALLOWED_HOSTS = ["cc.example.com"]
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    yield settings
    dbmod.db_executor_reset()


def _thread_and_connection() -> tuple[str, object]:
    """The thread's name and its DB-API connection (the object itself: an id()
    could be reused once the old one is gone)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return threading.current_thread().name, connection.connection


async def test_db_work_runs_on_a_db_thread_that_keeps_its_connection(settings):
    settings.DB_THREADS = 1
    dbmod.db_executor_reset()
    loop_thread = threading.current_thread().name
    first = await db_sync_to_async(_thread_and_connection)()
    second = await db_sync_to_async(_thread_and_connection)()
    assert first[0].startswith("db") and first[0] != loop_thread
    # Django would close a CONN_MAX_AGE=0 connection after each call; a DB thread
    # keeps it for the next one.
    assert second[0] == first[0] and second[1] is first[1]


async def test_a_db_threads_old_connection_is_closed_and_replaced(settings):
    settings.DB_THREADS = 1
    dbmod.db_executor_reset()
    _, before = await db_sync_to_async(_thread_and_connection)()

    def age_it() -> None:
        assert connection.close_at is not None
        assert connection.close_at > time.monotonic() + 60  # kept, for a while
        connection.close_at = time.monotonic() - 1

    await db_sync_to_async(age_it)()
    _, after = await db_sync_to_async(_thread_and_connection)()
    assert after is not before


async def test_a_connection_left_in_a_transaction_is_not_handed_on(settings):
    settings.DB_THREADS = 1
    dbmod.db_executor_reset()

    def leave_a_transaction_open() -> None:
        connection.set_autocommit(False)
        CallSession.objects.count()

    def autocommit_state() -> bool:
        return connection.get_autocommit()

    await db_sync_to_async(leave_a_transaction_open)()
    assert await db_sync_to_async(autocommit_state)() is True


def test_under_a_sync_caller_the_work_stays_on_its_thread():
    """A test or a command owns its thread's connection and transaction."""
    here = threading.current_thread().name
    name, conn = async_to_sync(db_sync_to_async(_thread_and_connection))()
    assert name == here
    assert conn is connection.connection


def _sign(path: str, params: dict[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(BASE + path, params)


def _voice(index: int) -> dict[str, str]:
    return {
        "CallSid": f"CA{index:032d}",
        "AccountSid": "AC" + "0" * 32,
        "From": f"+8190{index:08d}",
        "To": NUMBER,
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
    }


async def _post_voice(client: httpx.AsyncClient, index: int) -> httpx.Response:
    path = "/api/twilio/voice/incoming"
    params = _voice(index)
    return await client.post(
        path, data=params, headers={"X-Twilio-Signature": _sign(path, params)}
    )


async def test_concurrent_webhooks_on_sqlite_are_all_answered(settings):
    """Forty inbound calls at once through the ASGI app: several DB threads write
    to one SQLite file at the same time; none fails with "database is locked"."""
    settings.DB_THREADS = 4
    dbmod.db_executor_reset()
    await db_sync_to_async(PhoneNumberFactory)(number=NUMBER)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        responses = await asyncio.gather(*(_post_voice(client, i) for i in range(40)))
    assert [r.status_code for r in responses] == [200] * 40
    assert all("<Stream" in r.text for r in responses)

    def statuses() -> list[str]:
        return list(CallSession.objects.values_list("status", flat=True))

    assert sorted(await db_sync_to_async(statuses)()) == [CallStatus.RINGING] * 40


async def test_webhooks_run_on_db_threads_and_start_no_thread_per_request(
    settings, monkeypatch
):
    settings.DB_THREADS = 2
    dbmod.db_executor_reset()
    await db_sync_to_async(PhoneNumberFactory)(number=NUMBER)
    from calls import webhooks

    seen: list[str] = []
    route = webhooks.call_inbound_route

    def recording_route(**kwargs):
        seen.append(threading.current_thread().name)
        return route(**kwargs)

    monkeypatch.setattr(webhooks, "call_inbound_route", recording_route)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        assert (await _post_voice(client, 0)).status_code == 200  # warm-up
        threads_before = {t.ident for t in threading.enumerate()}
        for batch in range(3):
            responses = await asyncio.gather(
                *(_post_voice(client, 1 + batch * 10 + i) for i in range(10))
            )
            assert {r.status_code for r in responses} == {200}
        new_threads = {t.ident for t in threading.enumerate()} - threads_before
    assert all(name.startswith("db") for name in seen)
    # Django alone would start a thread per request (and one more to join it).
    assert len(new_threads) <= settings.DB_THREADS, new_threads


async def test_broadcast_from_a_db_thread_arrives_in_order():
    call = await db_sync_to_async(CallSessionFactory)()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(call_monitor_group(call.pk), channel)

    def ten_events() -> None:
        for n in range(10):
            services.call_event_record(call=call, type="dtmf", payload={"n": n})

    await db_sync_to_async(ten_events)()
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(10)]
    assert [m["payload"]["n"] for m in received] == list(range(10))


@pytest.fixture
def sqlite_file(tmp_path):
    """Our SQLite backend on a file of its own (whatever the test database is):
    each thread gets its own connection from the handler, as from Django's."""
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "callcenter.db_sqlite3",
                "NAME": str(tmp_path / "writers.sqlite3"),
                "OPTIONS": {
                    "timeout": 10,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL;",
                },
            }
        }
    )
    with handler["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    yield handler
    handler.close_all()


def _write_rows(handler: ConnectionHandler, count: int) -> None:
    conn = handler["default"]
    for n in range(count):
        # What transaction.atomic() does on this backend in autocommit mode.
        conn.ensure_connection()
        conn._start_transaction_under_autocommit()
        assert conn.holds_writer  # this process's turn, up to the commit
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO t (n) VALUES (%s)", [n])
            cursor.execute("SELECT count(*) FROM t")
        conn.commit()
        assert not conn.holds_writer
        with conn.cursor() as cursor:  # a write outside a transaction
            cursor.execute("INSERT INTO t (n) VALUES (%s)", [-n])
        assert not conn.holds_writer
    conn.close()


def test_the_writers_of_one_process_take_turns_without_locking_errors(sqlite_file):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _write_rows(sqlite_file, 25)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with sqlite_file["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone()[0] == 8 * 25 * 2


def test_a_rolled_back_transaction_gives_the_turn_back(sqlite_file):
    conn = sqlite_file["default"]
    conn.ensure_connection()
    conn._start_transaction_under_autocommit()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO t (n) VALUES (1)")
    assert conn.holds_writer
    conn.rollback()
    assert not conn.holds_writer
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone()[0] == 0


def test_a_writer_that_waits_too_long_is_told_the_database_is_locked(sqlite_file):
    holding = threading.Event()
    done = threading.Event()

    def hold_the_turn() -> None:
        conn = sqlite_file["default"]
        conn.ensure_connection()
        conn._start_transaction_under_autocommit()
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO t (n) VALUES (1)")
        holding.set()
        done.wait(5)
        conn.commit()
        conn.close()

    holder = threading.Thread(target=hold_the_turn)
    holder.start()
    assert holding.wait(5)
    conn = sqlite_file["default"]
    conn.settings_dict["OPTIONS"]["timeout"] = 0.2
    try:
        with (
            pytest.raises(OperationalError, match="database is locked"),
            conn.cursor() as cursor,
        ):
            cursor.execute("INSERT INTO t (n) VALUES (2)")
    finally:
        done.set()
        holder.join()
    assert not conn.holds_writer
    with conn.cursor() as cursor:  # its turn now
        cursor.execute("INSERT INTO t (n) VALUES (3)")


async def test_a_call_is_set_up_while_the_bridges_writes_are_stuck(settings):
    """Webhooks (and stream connects and claims) have DB threads of their own: they
    do not queue behind the writes of the calls already up."""
    settings.DB_THREADS = 1
    dbmod.db_executor_reset()
    await db_sync_to_async(PhoneNumberFactory)(number=NUMBER)
    release = threading.Event()
    stuck = asyncio.ensure_future(db_sync_to_async(release.wait)(10))
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            response = await asyncio.wait_for(_post_voice(client, 7), 5)
        assert response.status_code == 200 and "<Stream" in response.text
        assert not stuck.done()
    finally:
        release.set()
        await stuck
