"""The protocol layer and the emulators import nothing from Django.

Each check runs in a fresh interpreter, so Django modules the test process has
already imported (pytest-django, other tests) cannot hide or fake a result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PURE_PACKAGES = ["realtime.protocol", "realtime.emulators", "realtime.supervision"]

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]] + [
    info.name
    for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + ".")
]
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "modules": names,
    "django": sorted(m for m in sys.modules if m == "django" or m.startswith("django.")),
    "channels": sorted(m for m in sys.modules if m == "channels" or m.startswith("channels.")),
}))
"""


def probe(package: str) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, package],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_package_imports_no_django(package):
    """Importing every module of the package loads no django or channels module."""
    found = probe(package)
    assert found["django"] == [], f"{package} pulls in {found['django'][:5]}"
    assert found["channels"] == [], f"{package} pulls in {found['channels'][:5]}"


def test_protocol_package_is_complete():
    """The probe really imports the protocol modules it is meant to check."""
    modules = set(probe("realtime.protocol")["modules"])
    assert {
        "realtime.protocol.errors",
        "realtime.protocol.twilio_media",
        "realtime.protocol.openai_events",
        "realtime.protocol.bridge_state",
    } <= modules
