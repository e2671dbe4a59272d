"""ASGI entry point: HTTP through Django, WebSockets through Channels routing."""

import gc
import os
from importlib import import_module
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from callcenter.db import RequestThreads  # noqa: E402


class PinnedThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler with each request's sync steps on one of a few
    long-lived threads (callcenter.db.RequestThreads), not on a new thread."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads(settings.DB_THREADS)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves only HTTP, not {scope['type']}")
        index = self.threads.pick()
        try:
            async with ThreadSensitiveContext(executor=self.threads.executor(index)):
                await self.handle(scope, receive, send)
        finally:
            self.threads.release(index)


django_asgi_app = PinnedThreadASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from callcenter.routing import (  # noqa: E402
    operator_websocket_urlpatterns,
    twilio_websocket_urlpatterns,
)

application = ProtocolTypeRouter(
    {
        # Static files are served by the app itself so `make run` needs no proxy.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": URLRouter(
            [
                # Twilio's Media Streams carry no cookies and no Origin: they are
                # authenticated by signature and one-time token in the consumer (F-15).
                *twilio_websocket_urlpatterns,
                # Operators' pages: session login and same-origin only (F-35).
                # A prefix (re_path without `$`): URLRouter only un-anchors path()
                # routes whose callback is itself a router, not a wrapped one.
                re_path(
                    r"^ws/",
                    AllowedHostsOriginValidator(
                        AuthMiddlewareStack(URLRouter(operator_websocket_urlpatterns))
                    ),
                ),
            ]
        ),
    }
)

# The URLconf, and with it every view and what they import (the `openai` package of
# the legacy path, F-72: thousands of long-lived objects), loaded now rather than on
# the first request, so it is frozen with the rest.
import_module(settings.ROOT_URLCONF)

# What is loaded by now lives as long as the process. Frozen, it is left out of the
# cyclic collector's full passes, which the audio path's steady allocation triggers
# often (bench/README.md).
gc.freeze()
