"""Operators' call pages (F-36 … F-38); mounted at the site root."""

from __future__ import annotations

from django.urls import path

from calls import supervise_views, views
from calls.summary.views import call_summary_fragment

app_name = "calls"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("calls/", views.call_list_page, name="list"),
    path("calls/live/", views.live_calls_fragment, name="live"),
    path("calls/today/", views.today_fragment, name="today"),
    path("calls/<int:pk>/", views.call_detail, name="detail"),
    path("calls/<int:pk>/summary/", call_summary_fragment, name="summary"),
    path("calls/<int:pk>/hangup", views.call_hangup, name="hangup"),
    path("calls/<int:pk>/instruct", views.call_instruct_view, name="instruct"),
    path(
        "calls/<int:pk>/supervise/offer/",
        supervise_views.supervise_offer,
        name="supervise-offer",
    ),
    path("calls/<int:pk>/do-not-call", views.call_do_not_call, name="do-not-call"),
    path(
        "calls/<int:pk>/recordings/<int:rec_id>/audio",
        views.recording_audio,
        name="recording-audio",
    ),
]
