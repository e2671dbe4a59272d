"""Serve the project with Daphne on the embedded defaults (`make run`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve HTTP and WebSockets with Daphne (PORT and HOST from the environment)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT", "8000"))
        )

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        self.stdout.write(
            f"Serving on http://{host}:{port}/ (admin: /admin/, login demo/demo)"
        )
        self.stdout.flush()
        daphne = os.path.join(os.path.dirname(sys.executable), "daphne")
        os.execv(
            daphne,
            [
                daphne,
                "-b",
                host,
                "-p",
                str(port),
                "--proxy-headers",
                "callcenter.asgi:application",
            ],
        )
