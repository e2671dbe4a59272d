"""Close calls left open by a crashed process (F-52)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calls.reaper import calls_reap


class Command(BaseCommand):
    help = "Close stale live calls as failed. With --every N, repeat every N seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=int, default=0, help="loop period in seconds"
        )

    def handle(self, *args: Any, every: int, **options: Any) -> None:
        while True:
            closed = calls_reap()
            self.stdout.write(f"reaped {closed} call(s)")
            if not every:
                return
            time.sleep(every)
