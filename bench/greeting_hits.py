"""The demo campaign's greeting-cache hit rate (F-73), through the service's own code.

    .venv/bin/python bench/greeting_hits.py [--size 256] [--runs 2] [--json out.json]

On a throw-away SQLite database migrated and seeded by `manage.py` (seed_demo's
営業デモ profile), the campaign `simulate_campaign` creates is created and its
contact CSV imported, run after run (the demo's advice: run it again). Each dial
that reaches the media stream — as the demo's far ends answer: 山田, 佐藤 and 田中
at once, 鈴木 on the retry after a busy, 高橋's answering machine never (voicemail
TwiML, no stream) — gets its CallSession and Attempt as the dialer makes them, and
its config from `realtime.call_setup.bridge_config_build`, which looks the
rendered greeting (opening + 「{{customer_name}}様、…」) up in a `GreetingCache` of
`--size` entries on disk. A miss is filled as the live greeting would fill it. 田中
refuses in the demo, so he is on the do-not-call list for the runs after the first.

Prints hits / dials per run and overall, and the distinct rendered greetings.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.service import base_env, database_prepare, database_url

# Far-end behaviour of each demo callee (simulate_campaign.CALLEES): which dial
# reaches the stream.
STREAM_ON_ATTEMPT = {
    "+819011110001": 1,  # 山田: answers
    "+819011110002": 1,  # 佐藤: answers
    "+819011110003": None,  # 高橋: answering machine → voicemail, no stream
    "+819011110004": 2,  # 鈴木: busy, answers the retry
    "+819011110005": 1,  # 田中: answers, refuses further calls
}
REFUSER = "+819011110005"
AUDIO = b"\xff" * 8000  # what the live greeting would have filled (1 s)


def measure(size: int, runs: int) -> dict[str, Any]:
    import django

    django.setup()
    from calls.campaigns.dialing import _campaign_call
    from calls.campaigns.importing import contacts_import
    from calls.campaigns.models import Attempt, Contact, DoNotCall
    from calls.management.commands.simulate_campaign import (
        Command as SimulateCampaign,
    )
    from calls.management.commands.simulate_campaign import contacts_csv
    from realtime.call_setup import bridge_config_build

    per_run: list[dict[str, Any]] = []
    greetings: dict[str, str] = {}
    for run in range(1, runs + 1):
        campaign = SimulateCampaign()._create_campaign()
        report = contacts_import(campaign=campaign, fileobj=io.BytesIO(contacts_csv()))
        hits = dials = 0
        for contact in Contact.objects.filter(campaign=campaign).order_by("pk"):
            reached = STREAM_ON_ATTEMPT.get(contact.phone)
            if reached is None:
                continue
            for number in range(1, reached + 1):
                attempt = Attempt.objects.create(contact=contact, number=number)
                call = _campaign_call(attempt)
                if number < reached:
                    continue  # busy: no stream, no greeting
                config = bridge_config_build(call=call)
                assert config.greeting_cache is not None and config.greeting_key
                dials += 1
                said = config.greeting or ""  # the instruction around the text
                text = said.split("「", 1)[-1].removesuffix("」")
                greetings[config.greeting_key[:12]] = text
                if config.cached_greeting is not None:
                    hits += 1
                else:
                    config.greeting_cache.put(config.greeting_key, text, AUDIO)
            if contact.phone == REFUSER:
                DoNotCall.objects.get_or_create(
                    organization=campaign.organization,
                    phone=contact.phone,
                    defaults={"source": DoNotCall.Source.CALL, "reason": "断り"},
                )
        per_run.append(
            {
                "run": run,
                "contacts": report.accepted,
                "dials_reaching_the_stream": dials,
                "hits": hits,
                "hit_rate": round(hits / dials, 3) if dials else None,
            }
        )
    total_dials = sum(r["dials_reaching_the_stream"] for r in per_run)
    total_hits = sum(r["hits"] for r in per_run)
    return {
        "cache_size": size,
        "runs": per_run,
        "overall_hit_rate": round(total_hits / total_dials, 3) if total_dials else None,
        "distinct_greetings": len(greetings),
        "greetings": greetings,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Demo campaign (営業デモ), greeting cache of {result['cache_size']} entries:",
        "| run | contacts imported | dials reaching the stream | cache hits | hit rate |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["runs"]:
        rate = "–" if r["hit_rate"] is None else f"{r['hit_rate'] * 100:.0f} %"
        lines.append(
            f"| {r['run']} | {r['contacts']} | {r['dials_reaching_the_stream']} "
            f"| {r['hits']} | {rate} |"
        )
    overall = result["overall_hit_rate"]
    lines.append(
        f"overall: {'–' if overall is None else f'{overall * 100:.0f} %'}; "
        f"{result['distinct_greetings']} distinct rendered greetings:"
    )
    lines += [f"  {key}… {text}" for key, text in result["greetings"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="cache entries")
    parser.add_argument("--runs", type=int, default=2, help="campaign runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.size <= 0:
        parser.error("--size must be positive (0 turns the cache off)")
    with tempfile.TemporaryDirectory(prefix="greeting-hits-") as tmp:
        env = base_env(
            database=database_url(Path(tmp) / "hits.sqlite3"),
            fake_url="ws://127.0.0.1:9/v1/realtime",
            api_key="sk-bench",
        )
        env.update(
            GREETING_CACHE_SIZE=str(args.size),
            GREETING_CACHE_DIR=str(Path(tmp) / "greetings"),
        )
        database_prepare(env)
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
        result = measure(args.size, args.runs)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
