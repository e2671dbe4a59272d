"""Agent settings pages (F-39); mounted at /agents/."""

from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents"
urlpatterns = [
    path("", views.agent_list_page, name="list"),
    path("preview/", views.template_preview, name="preview"),
    path("<int:pk>/", views.agent_settings, name="detail"),
    path("<int:pk>/legacy/", views.legacy_convert, name="legacy"),
    path("<int:pk>/tools/test/", views.tools_test_view, name="tools-test"),
]
