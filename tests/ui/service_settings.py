"""The project's settings for a service the browser tests start: its own media folder.

`tests.ui.browser` runs the service with DJANGO_SETTINGS_MODULE pointing here and
CALLCENTER_MEDIA_ROOT in its temporary directory, so recordings a test stores never
land in the checkout's media/. Nothing else differs from `callcenter.settings`.
"""

from __future__ import annotations

import os
from pathlib import Path

from callcenter.settings import *  # noqa: F403

MEDIA_ROOT = Path(os.environ["CALLCENTER_MEDIA_ROOT"])
