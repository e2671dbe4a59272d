"""Helpers for browser tests: find Chromium, run the service, log in, shoot.

pytest-django's `live_server` is WSGI-only (no WebSockets) and its test database is
invisible to another process, so the service runs in a subprocess on free ports with
its own SQLite file (migrated and seeded with `seed_demo`) and its own media folder
(`tests.ui.service_settings`: the project's settings, MEDIA_ROOT from the
environment). Two ways to run it:

- `ServiceProcess`: Daphne alone. Data the test needs is made with
  `ServiceProcess.django(code)`, which runs Python in a `manage.py shell` against the
  same database and channel layer (set REDIS_URL so that broadcasts made there reach
  the server's sockets).
- `DemoService`: `manage.py serve` in demo mode, as `make run` starts it: the fake
  OpenAI Realtime server and the Twilio emulator (with its `/_emulator/` control API)
  as children, then the ASGI server (uvicorn by default), wired by URL. A simulated
  call is placed through the control API (`place_call`); bridge and monitor sockets
  share the server's in-memory channel layer, so no Redis is needed.

Then `chromium_context()`, `login()`, `screenshot()`; `TRANSCRIPT_TIMING_JS` times
when each transcript line appears on a monitor page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = Path(
    os.environ.get("SCREENSHOT_DIR", REPO / "artifacts" / "screenshots")
)
CHROMIUM_CANDIDATES = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
SERVICE_SETTINGS = "tests.ui.service_settings"
STARTUP_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None (then browser tests skip)."""
    explicit = os.environ.get("CHROMIUM_PATH")
    for candidate in (explicit, *CHROMIUM_CANDIDATES):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if find_chromium() is None:
        return (
            "no Chromium found (looked for /usr/bin/chromium; install it with "
            "`apt-get install -y chromium` or set CHROMIUM_PATH)"
        )
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """The service under Daphne in a subprocess, with its own migrated database."""

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="callcenter-ui-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "service.log"
        self.db_path = self.workdir / "db.sqlite3"
        self.media_root = self.workdir / "media"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_BASE_URL": self.base_url,
            "DJANGO_SETTINGS_MODULE": SERVICE_SETTINGS,
            "CALLCENTER_MEDIA_ROOT": str(self.media_root),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        # The subprocess must not inherit pytest-django's test database name.
        self.env.pop("DJANGO_LIVE_TEST_SERVER_ADDRESS", None)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def redis_url(self) -> str:
        return self.env.get("REDIS_URL", "")

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a manage.py command against the service's database; return stdout."""
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def django(self, code: str) -> str:
        """Run Python inside Django (same DB and channel layer); return what it prints."""
        return self.manage("shell", "--no-imports", "-c", code).strip()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the service's SQLite database directly (fast; no Django start-up)."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql, params).fetchall()

    def command(self) -> list[str]:
        """What runs the service (Daphne on `self.port`)."""
        daphne = Path(sys.executable).with_name("daphne")
        return [
            str(daphne),
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "callcenter.asgi:application",
        ]

    def start(self) -> ServiceProcess:
        self.manage("migrate", "--noinput")
        self.manage("seed_demo")
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children can be stopped as a group
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"The service exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"The service did not listen on {self.port}:\n{self.log()}")

    def log(self, tail: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # `serve` stops its own children on SIGTERM
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # Stuck: kill it and whatever it started (its own process group).
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DemoService(ServiceProcess):
    """`manage.py serve` in demo mode: emulators and the server, as `make run` starts them."""

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env=env)
        self.realtime_port = free_port()
        self.twilio_port = free_port()
        self.responses_port = free_port()
        self.emulator_url = f"http://127.0.0.1:{self.twilio_port}"
        self.env.update(
            {
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "DEMO_REALTIME_PORT": str(self.realtime_port),
                "DEMO_TWILIO_PORT": str(self.twilio_port),
                "DEMO_RESPONSES_PORT": str(self.responses_port),
                # The worker's broker folder is this service's own (F-76 summaries).
                "CELERY_FILESYSTEM_DIR": str(self.workdir / "celery"),
                # Demo mode, and the in-memory channel layer: set, not removed, so a
                # developer's .env cannot bring them back.
                "OPENAI_API_KEY": "",
                "REDIS_URL": "",
                **(env or {}),
            }
        )
        self.http = httpx.Client(timeout=10.0)

    def command(self) -> list[str]:
        return [sys.executable, str(REPO / "manage.py"), "serve"]

    def stop(self) -> None:
        self.http.close()
        super().stop()

    # -- the Twilio emulator's control API --------------------------------------------

    def emulator(self, method: str, path: str, body: Any = None) -> Any:
        """Call the control API (`/_emulator/…`); return its JSON, or fail."""
        reply = self.http.request(method, f"{self.emulator_url}{path}", json=body)
        if reply.status_code >= 300:
            raise AssertionError(
                f"{method} {path} → {reply.status_code} {reply.text}\n{self.log()}"
            )
        return reply.json()

    def place_call(
        self,
        script: list[dict[str, Any]],
        *,
        from_: str = "+819012345678",
        to: str = "+815012345678",
    ) -> str:
        """Ring the service's inbound number from a simulated caller; the CallSid."""
        created = self.emulator(
            "POST",
            "/_emulator/inbound-calls",
            {
                "from": from_,
                "to": to,
                "voice_url": f"{self.base_url}/api/twilio/voice/incoming",
                "status_callback": f"{self.base_url}/api/twilio/status",
                "script": script,
            },
        )
        return str(created["sid"])

    def emulator_call(self, sid: str) -> dict[str, Any]:
        """`GET /_emulator/calls/<sid>`: status, conference, log …"""
        return dict(self.emulator("GET", f"/_emulator/calls/{sid}"))

    def emulator_calls(self) -> list[dict[str, Any]]:
        """`GET /_emulator/calls`: every call the emulator knows."""
        return list(self.emulator("GET", "/_emulator/calls")["calls"])

    def hang_up(self, sid: str) -> dict[str, Any]:
        """The remote party of `sid` hangs up."""
        return dict(self.emulator("POST", f"/_emulator/calls/{sid}/hang-up"))


def wait_for(
    what: str, probe: Callable[[], Any], *, timeout: float = 15.0, every: float = 0.1
) -> Any:
    """Poll `probe` until it returns something truthy; return it, or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def db_time_ms(value: str) -> float:
    """A DateTimeField as SQLite holds it (UTC text) → milliseconds since the epoch."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000


# Install with `context.add_init_script(TRANSCRIPT_TIMING_JS)`: on a monitor page,
# window.__lineSeenAt maps each transcript entry id that arrived over the socket to
# Date.now() when it showed; server-rendered lines are left out; window.__partialSeen
# counts partial lines (text typing in) seen.
TRANSCRIPT_TIMING_JS = """
(() => {
  window.__lineSeenAt = {};
  window.__partialSeen = 0;
  const initial = new Set();
  let loaded = false;
  const mark = () => {
    if (!loaded) return;
    document.querySelectorAll("#transcript li[data-entry-id]").forEach((li) => {
      const id = li.dataset.entryId;
      if (id && !initial.has(id) && !(id in window.__lineSeenAt)) {
        window.__lineSeenAt[id] = Date.now();
      }
    });
    if (document.querySelector("#transcript li.partial")) window.__partialSeen += 1;
  };
  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("transcript");
    if (!list) return;
    list.querySelectorAll("li[data-entry-id]").forEach((li) => initial.add(li.dataset.entryId));
    loaded = true;
    new MutationObserver(mark).observe(list, {
      subtree: true, childList: true, attributes: true, characterData: true,
    });
  });
})();
"""


@contextmanager
def chromium_context(
    *, locale: str = "ja-JP", extra_args: tuple[str, ...] = (), **options: Any
) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile.

    ``extra_args`` go after the usual flags (e.g. the fake microphone's).
    """
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    assert executable, chromium_missing_reason()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=[*CHROMIUM_ARGS, *extra_args],
                locale=locale,
                viewport={"width": 1280, "height": 900},
                **options,
            )
            context.set_default_timeout(10_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def login(
    page: Any,
    base_url: str,
    *,
    username: str = DEMO_USERNAME,
    password: str = DEMO_PASSWORD,
) -> None:
    """Log in through the login page and land on the dashboard."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード").fill(password)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(f"{base_url}/")


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG under SCREENSHOT_DIR (artifacts/screenshots/) and say where."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path
