"""The Celery app (F-62): `celery -A callcenter worker|beat`.

Settings come from Django's, prefixed `CELERY_`; tasks are found in each app's
`tasks` module and in `calls.campaigns.tasks`.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

app = Celery("callcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["calls.campaigns"])
