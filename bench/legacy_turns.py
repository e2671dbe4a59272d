"""Legacy path turns (F-72): our own share of each `<Gather>` turn at N concurrent calls.

    .venv/bin/python bench/legacy_turns.py [--calls 20] [--turns 8]
        [--model-ms 300] [--speak-ms 120] [--stagger-s 5] [--json out.json]

The service runs as `make run` runs it (uvicorn, bench/service.py) on a throw-away
SQLite database migrated and seeded by `manage.py` (seed_demo's legacy number
+815012345679: a Realtime share of 0 %, so every call takes the legacy path). The
fake OpenAI Responses API (realtime/emulators/fake_responses.py) runs in a
process of its own and answers each request after `--model-ms` (a text model's time). The
Twilio emulator places `--calls` inbound calls, spread evenly over `--stagger-s`
seconds (calls do not all ring in the same instant), all of them live together;
each caller answers every `<Gather>` with a line (a question, a booking that runs
`schedule_appointment` every fourth turn), `--turns` times, then says goodbye
(`end_call`). Speech takes `--speak-ms` a character both ways (Twilio's `<Say>`
of the AI's line, the caller's words), 120 ms by default: Japanese speech at about
eight characters a second, as on a real call (`Timings.realistic()`).

One warm-up call first is not measured (imports, database connections, the
`openai` client's pool). Per turn:

- round trip: the emulator's `<Gather>` action POST sent → its TwiML received
  (Twilio's view of the webhook);
- model: the service's own time in the text model's calls (the `legacy-turn`
  event's `model_ms`, measured around the `openai` client calls);
- our own share = round trip − model: the webhook's parsing and signature check,
  the database work (the caller's line, the history, the prompt, the AI's line,
  events, usage, latency), the tools, the TwiML, and the HTTP between emulator and
  server. Target: p99 ≤ 30 ms at 20 concurrent legacy calls (issue 14).

The service's in-process figure (`own_ms` of the event: view entry → TwiML
built, minus the model) is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Spread
from bench.report import spread
from bench.service import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ROOT,
    Service,
    base_env,
    database_prepare,
    database_url,
    free_port,
    machine_busy_seconds,
    wait_for_quiet,
)
from realtime.emulators.speech_script import HangsUp, Says, Utterance
from realtime.emulators.twilio_api import (
    Call,
    Timings,
    TwilioEmulator,
    max_overlap,
)

API_KEY = "sk-bench"
LEGACY_NUMBER = "+815012345679"  # seed_demo: 受付デモ(従来経路), Realtime share 0 %
TARGET_OWN_P99_MS = 30.0
LINES = (
    "営業時間を教えてください",
    "料金について教えてください",
    "駐車場はありますか",
    "明日の午後に予約をお願いします",
)


class TimedEmulator(TwilioEmulator):
    """The Twilio emulator, timing each `<Gather>` action round trip per call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips: dict[str, list[float]] = defaultdict(list)

    async def _request(
        self,
        kind: str,
        url: str,
        method: str,
        params: Mapping[str, str],
        call: Call | None,
        **options: Any,
    ) -> Any:
        started = time.perf_counter()
        response = await super()._request(kind, url, method, params, call, **options)
        if kind == "action" and call is not None and response is not None:
            self.round_trips[call.sid].append((time.perf_counter() - started) * 1000)
        return response


def speech(turns: int, offset: int = 0) -> list[Utterance]:
    lines: list[Utterance] = [
        Says(LINES[(t + offset) % len(LINES)]) for t in range(turns)
    ]
    return [*lines, Says("以上です。失礼します"), HangsUp()]


@dataclass(slots=True)
class Result:
    calls: int
    turns_per_call: int
    model_ms: int
    turns: int
    failed_calls: int
    live_together: int
    round_trip: Spread
    model: Spread
    own: Spread
    own_in_process: Spread
    own_plain: Spread  # turns of one model call, no tool
    own_with_tools: Spread  # turns with tool calls (two model calls)
    machine_busy_cores_before: float
    machine_busy_cores_during: float
    server_cpu_s: float
    wall_s: float

    @property
    def met(self) -> bool:
        return self.turns > 0 and self.own.p99 <= TARGET_OWN_P99_MS


def pair_turns(
    round_trips: Mapping[str, list[float]],
    events: Mapping[str, list[dict[str, Any]]],
) -> tuple[list[float], list[float], list[float], list[float], list[int]]:
    """(round trip, model, own, own in process) per turn, matched per CallSid in
    order (each action round trip is one `legacy-turn` event of the same call)."""
    trips: list[float] = []
    models: list[float] = []
    own: list[float] = []
    inside: list[float] = []
    rounds: list[int] = []
    for sid, times in round_trips.items():
        turns = events.get(sid, [])
        if len(turns) != len(times):
            raise RuntimeError(
                f"call {sid}: {len(times)} round trips but {len(turns)} turns saved"
            )
        for trip, turn in zip(times, turns, strict=True):
            trips.append(trip)
            models.append(float(turn["model_ms"]))
            own.append(max(trip - float(turn["model_ms"]), 0.0))
            inside.append(float(turn["own_ms"]))
            rounds.append(int(turn["rounds"]))
    return trips, models, own, inside, rounds


def saved_turns(db_path: Path) -> dict[str, list[dict[str, Any]]]:
    """The service's `legacy-turn` events per CallSid, in order."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT s.twilio_call_sid, e.payload FROM calls_callevent e "
            "JOIN calls_callsession s ON s.id = e.call_id "
            "WHERE e.type = 'legacy-turn' ORDER BY e.id"
        ).fetchall()
    turns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sid, payload in rows:
        turns[sid].append(json.loads(payload))
    return turns


def start_fake(model_ms: int) -> tuple[subprocess.Popen[bytes], int]:
    """The fake text model in a process of its own (this one's loop is the
    emulator's), answering each request after `model_ms`."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime.emulators.fake_responses",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
            "--delay-ms",
            str(model_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return process, port


async def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


async def run(args: argparse.Namespace, workdir: Path) -> Result:
    fake, fake_port = start_fake(args.model_ms)
    await wait_listening(fake_port)
    db_path = workdir / "bench.sqlite3"
    try:
        env = base_env(
            database=database_url(db_path),
            fake_url="ws://127.0.0.1:9/v1",
            api_key=API_KEY,
        )
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{fake_port}/v1"
        await asyncio.to_thread(database_prepare, env)
        service = Service("uvicorn", env, workdir / "service.log")
        try:
            await asyncio.to_thread(service.wait_ready)
            timings = Timings(
                say_s_per_char=args.speak_ms / 1000, callback_timeout_s=15.0
            )
            async with TimedEmulator(
                ACCOUNT_SID, AUTH_TOKEN, timings=timings
            ) as twilio:
                # One call first, not measured: imports, connections, the
                # client's pool (a server that has been up a while has them).
                warm = await twilio.inbound_call(
                    from_="+819099999999",
                    to=LEGACY_NUMBER,
                    voice_url=f"{service.base_url}/api/twilio/voice/incoming",
                    speech_script=speech(2),
                )
                await warm.wait_finished(timeout=120)
                twilio.round_trips.clear()
                warm_sid = warm.sid
                busy_before = await asyncio.to_thread(
                    wait_for_quiet, max_busy_cores=0.3, timeout_s=20
                )
                # This process's own pauses would count as the server's time.
                gc.collect()
                gc.disable()
                cpu_before = service.cpu_seconds()
                machine_before = machine_busy_seconds()
                started = time.monotonic()

                async def ring(i: int) -> Any:
                    await asyncio.sleep(i * args.stagger_s / max(args.calls, 1))
                    return await twilio.inbound_call(
                        from_=f"+8190{10000000 + i}",
                        to=LEGACY_NUMBER,
                        voice_url=f"{service.base_url}/api/twilio/voice/incoming",
                        speech_script=speech(args.turns, offset=i),
                    )

                handles = await asyncio.gather(*(ring(i) for i in range(args.calls)))
                finished = await asyncio.gather(
                    *(h.wait_finished(timeout=600) for h in handles)
                )
                wall = time.monotonic() - started
                gc.enable()
                machine_busy = (machine_busy_seconds() - machine_before) / wall
                cpu = service.cpu_seconds() - cpu_before
                failed = sum(1 for call in finished if call.errors)
                live_together = max_overlap(
                    (call._answered_at or 0.0, call._ended_at) for call in finished
                )
                trips_by_call = dict(twilio.round_trips)
        finally:
            service.stop()
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    saved = saved_turns(db_path)
    saved.pop(warm_sid, None)
    trips, models, own, inside, rounds = pair_turns(trips_by_call, saved)
    return Result(
        calls=args.calls,
        turns_per_call=args.turns + 1,
        model_ms=args.model_ms,
        turns=len(trips),
        failed_calls=failed,
        live_together=live_together,
        round_trip=Spread.of(trips),
        model=Spread.of(models),
        own=Spread.of(own),
        own_in_process=Spread.of(inside),
        own_plain=Spread.of([o for o, r in zip(own, rounds, strict=True) if r == 1]),
        own_with_tools=Spread.of(
            [o for o, r in zip(own, rounds, strict=True) if r > 1]
        ),
        machine_busy_cores_before=busy_before,
        machine_busy_cores_during=machine_busy,
        server_cpu_s=cpu,
        wall_s=wall,
    )


def print_result(result: Result) -> None:
    print(
        f"Legacy path: {result.calls} concurrent calls × {result.turns_per_call} turns "
        f"= {result.turns} turns; text model {result.model_ms} ms a request; "
        f"{result.live_together} calls live at once at the most"
    )
    print(
        f"machine busy before: {result.machine_busy_cores_before:.2f} cores, during: "
        f"{result.machine_busy_cores_during:.2f} cores; server CPU "
        f"{result.server_cpu_s:.2f} s in {result.wall_s:.1f} s"
    )
    print("                                p50 / p99 / max (ms)")
    print(f"  <Gather> action round trip    {spread(result.round_trip)}")
    print(f"  text model (service's view)   {spread(result.model)}")
    print(f"  our own share (trip − model)  {spread(result.own)}")
    print(f"  our own share, in process     {spread(result.own_in_process)}")
    print(f"  … turns without a tool        {spread(result.own_plain)}")
    print(f"  … turns with a tool call      {spread(result.own_with_tools)}")
    verdict = "met" if result.met else "NOT met"
    print(
        f"target: our own share p99 ≤ {TARGET_OWN_P99_MS:.0f} ms at 20 calls — "
        f"{verdict} ({result.own.p99:.1f} ms); calls with Twilio errors: "
        f"{result.failed_calls}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--turns", type=int, default=8, help="turns before goodbye")
    parser.add_argument("--model-ms", type=int, default=300)
    parser.add_argument(
        "--speak-ms", type=float, default=120.0, help="speech per character"
    )
    parser.add_argument(
        "--stagger-s", type=float, default=5.0, help="calls ring spread over this"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="legacy-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print_result(result)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=2, default=str))
    return 0 if result.met and not result.failed_calls else 1


if __name__ == "__main__":
    raise SystemExit(main())
