"""The notification settings page (F-77); mounted at /notifications/."""

from __future__ import annotations

from django.urls import path

from notifications import views

app_name = "notifications"
urlpatterns = [
    path("", views.settings_page, name="settings"),
    path("endpoints/<int:pk>/", views.endpoint_page, name="endpoint"),
    path("deliveries/<int:pk>/send-again", views.send_again, name="send-again"),
]
