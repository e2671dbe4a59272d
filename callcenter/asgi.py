"""ASGI entry point: HTTP through Django, WebSockets through Channels routing."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

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

# What is loaded by now lives as long as the process. Frozen, it is left out of the
# cyclic collector's full passes, which the audio path's steady allocation triggers
# often (bench/README.md).
gc.freeze()
