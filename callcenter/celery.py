"""The Celery app (F-62): `celery -A callcenter worker|beat`.

Settings come from Django's, prefixed `CELERY_`; tasks are found in
`calls.campaigns.tasks`, `calls.summary.tasks` and `notifications.tasks`. The filesystem broker's folders
(no CELERY_BROKER_URL, no REDIS_URL) are made by the settings, so a fresh checkout
needs nothing else.
"""

from __future__ import annotations

import os

from celery import Celery

import callcenter.broker  # noqa: F401  (registers the fsatomic:// broker)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

app = Celery("callcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["calls.campaigns", "calls.summary", "notifications"])
