"""`/api/jobs/` (F-77): job cards of your organisation — list, create, change, delete.

Reads go through the organisation-scoped selector (another organisation's job is a
404); writes through `jobs.services`, which announce `job.created` / `job.updated`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from agents.api.views import ServiceModelViewSet, crud_docs
from callcenter.api_docs import error_response
from jobs.api.serializers import JobFilterSerializer, JobSerializer
from jobs.models import Job
from jobs.selectors import job_list, job_search
from jobs.services import job_create, job_delete, job_update


@extend_schema_view(
    list=extend_schema(summary="List jobs", parameters=[JobFilterSerializer]),
    update=extend_schema(
        summary="Replace a job",
        responses={200: JobSerializer, 409: error_response(409)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a job",
        responses={200: JobSerializer, 409: error_response(409)},
    ),
)
@crud_docs(plural="jobs", one="a job")
class JobViewSet(ServiceModelViewSet):
    """Job cards (F-77)."""

    serializer_class = JobSerializer
    model = Job

    def get_queryset(self) -> QuerySet[Job]:
        return job_list(user=self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filters = JobFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = dict(filters.validated_data)
        jobs = job_search(
            user=request.user,
            status=data.get("status"),
            assignee_id=data.get("assignee"),
            unassigned=data.get("unassigned", False),
            q=data.get("q"),
        )
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    def perform_create(self, serializer: serializers.ModelSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = job_create(
            organization=data["organization"],
            title=data["title"],
            fields=data.get("fields"),
            customer=data.get("customer"),
            call=data.get("call"),
            assignee=data.get("assignee"),
        )

    def perform_update(self, serializer: serializers.ModelSerializer) -> None:
        data = serializer.validated_data
        kwargs: dict[str, Any] = {
            "title": data.get("title"),
            "fields": data.get("fields"),
            "status": data.get("status"),
        }
        for name in ("assignee", "customer"):
            if name in data:
                kwargs[name] = data[name]
        serializer.instance = job_update(job=serializer.instance, **kwargs)

    def perform_destroy(self, instance: Job) -> None:
        job_delete(job=instance)
