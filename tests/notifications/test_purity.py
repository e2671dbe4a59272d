"""The signing, SSRF guard and sender modules import nothing from Django (they are
typed strictly and reusable by the HTTP tools of F-78): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PURE = ["notifications.signing", "notifications.urlsafety", "notifications.sender"]

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m == "django" or m.startswith("django."))))
"""


def test_pure_modules_import_no_django():
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *PURE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
