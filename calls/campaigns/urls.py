"""Operators' campaign and do-not-call pages; mounted at the site root."""

from __future__ import annotations

from django.urls import path, re_path

from calls.campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("campaigns/", views.campaign_list_page, name="list"),
    path("campaigns/new/", views.campaign_create, name="new"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="detail"),
    path("campaigns/<int:pk>/edit/", views.campaign_edit, name="edit"),
    path("campaigns/<int:pk>/import", views.campaign_import, name="import"),
    re_path(
        r"^campaigns/(?P<pk>[0-9]+)/(?P<action>start|pause|resume|cancel)$",
        views.campaign_action,
        name="action",
    ),
    path("dnc/", views.dnc_page, name="dnc"),
    path("dnc/<int:pk>/delete", views.dnc_delete, name="dnc-delete"),
]
