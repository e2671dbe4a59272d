"""The Celery app (F-62): `celery -A callcenter worker|beat`.

Settings come from Django's, prefixed `CELERY_`; tasks are found in each app's
`tasks` module and in `calls.campaigns.tasks`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import beat_init, celeryd_init

import callcenter.broker  # noqa: F401  (registers the fsatomic:// broker)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

app = Celery("callcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["calls.campaigns"])


@celeryd_init.connect
@beat_init.connect
def filesystem_broker_folders(**_: Any) -> None:
    """Create the filesystem broker's folders (the embedded broker, F-62)."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
