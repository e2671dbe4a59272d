"""Helpers for browser tests: find Chromium, run the service under Daphne, log in, shoot.

pytest-django's `live_server` is WSGI-only (no WebSockets) and its test database is
invisible to another process, so the service runs as a real Daphne subprocess on a
free port with its own SQLite file, migrated and seeded with `seed_demo`. Data the
test needs in that database is made with `ServiceProcess.django(code)`, which runs
Python in a `manage.py shell` against the same database and channel layer (set
REDIS_URL so that broadcasts made there reach the server's sockets).

Reusable by later tests (a simulated call, a real handoff): start a
`ServiceProcess` with extra environment, `login()`, `screenshot()`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
        self.log_path = self.workdir / "daphne.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_BASE_URL": self.base_url,
            "DJANGO_SETTINGS_MODULE": "callcenter.settings",
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

    def start(self) -> ServiceProcess:
        self.manage("migrate", "--noinput")
        self.manage("seed_demo")
        daphne = Path(sys.executable).with_name("daphne")
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                str(daphne),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "callcenter.asgi:application",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Daphne exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Daphne did not listen on {self.port}:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def chromium_context(*, locale: str = "ja-JP", **options: Any) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
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
                args=CHROMIUM_ARGS,
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
