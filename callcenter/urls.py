"""URL map. Each area owns its own urls module; order matters for the /api/ prefixes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    # Twilio webhooks (signed, no session): F-10 … F-14.
    path("api/twilio/", include("calls.webhook_urls")),
    # Public REST API (token or session auth): F-42.
    path("api/", include("callcenter.api_urls")),
    # The web voice channel: /agents/<id>/try/ and the public /talk/<id>/ (F-74).
    path("", include("calls.web.urls")),
    # Operators' pages: F-35 … F-39.
    path("agents/", include("agents.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("calls.campaigns.urls")),
    # Job cards (F-77).
    path("", include("jobs.urls")),
    path("", include("calls.urls")),
]
