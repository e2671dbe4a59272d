"""URLs of the web voice channel (F-74), mounted at the root."""

from __future__ import annotations

from django.urls import path

from calls.web import views

app_name = "web"
urlpatterns = [
    path("agents/<int:pk>/try/", views.try_page, name="try"),
    path("agents/<int:pk>/try/offer/", views.try_offer, name="try-offer"),
    path("talk/<str:public_id>/", views.talk_page, name="talk"),
    path("talk/<str:public_id>/offer/", views.talk_offer, name="talk-offer"),
]
