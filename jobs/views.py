"""Operators' job pages (F-77): `/jobs/` (filters, live) and `/jobs/<id>/`."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from agents.models import Operator
from agents.selectors import organization_scope
from callcenter.errors import ApplicationError
from calls.summary.views import display_value
from jobs.forms import JobAssignForm, JobFilterForm, JobStatusForm
from jobs.live import job_message
from jobs.models import JOB_TRANSITIONS, Job
from jobs.selectors import job_get, job_list, job_search
from jobs.services import job_update

JOBS_PER_PAGE = 50


def _operators(request: HttpRequest, job: Job | None = None) -> Any:
    operators = organization_scope(Operator.objects.all(), user=request.user)
    if job is not None:
        operators = operators.filter(organization_id=job.organization_id)
    return operators.order_by("username")


def _job_or_404(request: HttpRequest, pk: int) -> Job:
    try:
        return job_get(user=request.user, job_id=pk)
    except Job.DoesNotExist:
        raise Http404("No such job") from None


@login_required
@require_GET
def job_list_page(request: HttpRequest) -> HttpResponse:
    """Job cards, newest first, filtered; `?partial=1` gives the table alone."""
    form = JobFilterForm(request.GET or None, operators=_operators(request))
    data = form.cleaned_data if form.is_valid() else {}
    assignee = data.get("assignee") or ""
    jobs = job_search(
        user=request.user,
        status=data.get("status") or None,
        unassigned=assignee == "none",
        assignee_id=int(assignee) if assignee.isdigit() else None,
        q=data.get("q") or None,
    )
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "query": request.GET.urlencode()}
    if request.GET.get("partial"):
        return render(request, "jobs/_job_table.html", context)
    return render(request, "jobs/job_list.html", context)


@login_required
@require_GET
def job_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One job: fields, the call's summary and transcript link, status actions."""
    job = _job_or_404(request, pk)
    return render(
        request,
        "jobs/job_detail.html",
        {
            "job": job,
            "next_statuses": sorted(JOB_TRANSITIONS[job.status]),
            "assign_form": JobAssignForm(
                initial={"assignee": job.assignee_id},
                operators=_operators(request, job),
            ),
            "fields": [
                (key, display_value(value))
                for key, value in sorted((job.fields or {}).items())
            ]
            if isinstance(job.fields, dict)
            else [],
        },
    )


@login_required
@require_POST
def job_status_action(request: HttpRequest, pk: int) -> HttpResponse:
    """Move the job on (accept, done, cancel); a wrong step is a message, not a 500."""
    job = _job_or_404(request, pk)
    form = JobStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("status", [])))
        return redirect("jobs:detail", pk=job.pk)
    try:
        job_update(job=job, status=form.cleaned_data["status"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("jobs:detail", pk=job.pk)


@login_required
@require_POST
def job_assign_action(request: HttpRequest, pk: int) -> HttpResponse:
    """Set or clear the job's assignee (an operator of its organisation)."""
    job = _job_or_404(request, pk)
    form = JobAssignForm(request.POST, operators=_operators(request, job))
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("assignee", [])))
        return redirect("jobs:detail", pk=job.pk)
    try:
        job_update(job=job, assignee=form.cleaned_data["assignee"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("jobs:detail", pk=job.pk)


@login_required
@require_GET
def jobs_since(request: HttpRequest) -> JsonResponse:
    """Jobs made after `?after=<id>` (at most 20, oldest first), as the socket sends
    them; without `after`, none and the newest id. The pages poll this beside their
    socket, so a toast shows even where the worker cannot reach the page's server
    through the channel layer (one process's in-memory layer, Redis down)."""
    jobs = job_list(user=request.user)
    after = request.GET.get("after", "")
    if not after.isdigit():
        newest = jobs.order_by("-pk").values_list("pk", flat=True).first()
        return JsonResponse({"last_id": newest or 0, "jobs": []})
    found = list(jobs.filter(pk__gt=int(after)).order_by("pk")[:20])
    return JsonResponse(
        {
            "last_id": found[-1].pk if found else int(after),
            "jobs": [job_message(job, "job.created") for job in found],
        }
    )
