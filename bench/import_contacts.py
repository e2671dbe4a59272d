"""Contacts import benchmark: 100 000 CSV rows into a campaign, UTF-8 and Shift_JIS.

    .venv/bin/python bench/import_contacts.py [--rows 100000]
        [--encodings utf-8,cp932] [--json out.json]

For each encoding a CSV file is written to a temporary directory (phone numbers
in mixed Japanese formats — hyphens, spaces, full-width digits, +81 —, a name, two
variable columns; 1 % of the rows invalid and 1 % repeated numbers, so the report
has work too). Each import runs in a fresh child process against a fresh SQLite
database (migrated first), and against PostgreSQL as well when DATABASE_URL is set
(the campaign it creates is deleted afterwards). The child prints the seconds,
the row rate and its peak RSS (`resource.getrusage`) before and after the import:
the difference is what the import itself cost in memory.

Target: under 60 s for 100 000 rows, memory bounded (not growing with the file).
Only local files and databases; see bench/README.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
TARGET_SECONDS = 60.0


def phone_text(n: int) -> str:
    """A valid mobile number for row n, written in one of several ways."""
    digits = f"090{10000000 + n:08d}"
    style = n % 5
    if style == 0:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if style == 1:
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    if style == 2:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}".translate(FULL_WIDTH)
    if style == 3:
        return f"+81 {digits[1:3]} {digits[3:7]} {digits[7:]}"
    return digits


def csv_write(path: Path, *, rows: int, encoding: str) -> int:
    """Write the benchmark CSV; return its size in bytes."""
    with path.open("w", encoding=encoding, newline="") as out:
        out.write("電話番号メモ,phone,name,plan,address\r\n")
        for n in range(rows):
            if n % 100 == 7:
                phone = "0120-xx"  # invalid
            elif n % 100 == 8:
                phone = phone_text(n - 2)  # two rows up: a duplicate
            else:
                phone = phone_text(n)
            out.write(
                f'メモ{n},{phone},顧客{n}様,プラン{n % 5},"東京都港区{n % 50}-{n % 7}, 1F"\r\n'
            )
    return path.stat().st_size


def maxrss_mib() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str) -> dict[str, Any]:
    """Import one file into a new campaign of this database; return the figures."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
    django.setup()
    from agents.models import AgentProfile, Organization
    from calls.campaigns.importing import contacts_import
    from calls.campaigns.models import Campaign

    org = Organization.objects.create(name=f"bench-{os.getpid()}-{time.time_ns()}")
    agent = AgentProfile.objects.create(
        organization=org,
        name="bench",
        instructions_template="{{customer_name}}様に{{plan}}をご案内します。",
        greeting_template="",
    )
    campaign = Campaign.objects.create(
        organization=org,
        agent=agent,
        name="bench",
        from_number="+815012345678",
        business_name="株式会社ベンチ",
        caller_name="佐藤",
        product="光回線",
    )
    before = maxrss_mib()
    started = time.perf_counter()
    with open(path, "rb") as fileobj:
        report = contacts_import(campaign=campaign, fileobj=fileobj)
    seconds = time.perf_counter() - started
    after = maxrss_mib()
    reasons: dict[str, int] = {}
    for row in report.rejected:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    stored = campaign.contacts.count()
    if os.environ.get("BENCH_CLEANUP"):  # a shared database: leave it as found
        campaign.delete()  # the agent is protected while a campaign uses it
        org.delete()
    return {
        "seconds": round(seconds, 2),
        "accepted": report.accepted,
        "stored": stored,
        "rejected": reasons,
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(after, 1),
    }


def run_child(path: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the import failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--encodings", default="utf-8,cp932")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        targets = [("sqlite", f"sqlite:///{tmp}/bench.sqlite3", False)]
        if os.environ.get("DATABASE_URL"):
            targets.append(("postgresql", os.environ["DATABASE_URL"], True))
        for encoding in args.encodings.split(","):
            path = Path(tmp) / f"contacts-{encoding}.csv"
            size = csv_write(path, rows=args.rows, encoding=encoding)
            for label, url, cleanup in targets:
                env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
                if cleanup:
                    env["BENCH_CLEANUP"] = "1"
                else:  # a fresh SQLite file per run
                    db = Path(url.removeprefix("sqlite:///"))
                    db.unlink(missing_ok=True)
                migrate(env)
                figures = run_child(path, env)
                figures.update(
                    database=label,
                    encoding=encoding,
                    rows=args.rows,
                    file_mib=round(size / 2**20, 1),
                    rows_per_s=round(args.rows / figures["seconds"]),
                    rss_import_mib=round(
                        figures["rss_peak_mib"] - figures["rss_before_mib"], 1
                    ),
                )
                results.append(figures)
                print(
                    f"{label:10} {encoding:6} {args.rows} rows "
                    f"({figures['file_mib']} MiB): {figures['seconds']:.1f} s, "
                    f"{figures['rows_per_s']} rows/s, accepted {figures['accepted']}, "
                    f"rejected {figures['rejected']}, peak RSS "
                    f"{figures['rss_peak_mib']} MiB (+{figures['rss_import_mib']} "
                    f"MiB during the import)",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    slow = [r for r in results if r["seconds"] >= TARGET_SECONDS]
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
