"""The Django project; loads the Celery app so `shared_task` binds to it."""

from callcenter.celery import app as celery_app

__all__ = ["celery_app"]
