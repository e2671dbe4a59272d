"""Job pages (F-77), mounted at the site root."""

from __future__ import annotations

from django.urls import path

from jobs import views

app_name = "jobs"
urlpatterns = [
    path("jobs/", views.job_list_page, name="list"),
    path("jobs/since/", views.jobs_since, name="since"),
    path("jobs/<int:pk>/", views.job_detail_page, name="detail"),
    path("jobs/<int:pk>/status", views.job_status_action, name="status"),
    path("jobs/<int:pk>/assign", views.job_assign_action, name="assign"),
]
