"""The organisation's notification settings page (F-77): webhook endpoints, who
gets the new-job email, and each endpoint's delivery log with "send again".

Views validate with a form and call one service; reads go through the scoped
selectors, so another organisation's endpoint or delivery is a 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from notifications.forms import JobEmailForm, WebhookEndpointForm
from notifications.models import NotificationSettings, WebhookEndpoint
from notifications.selectors import (
    deliveries_visible,
    endpoint_deliveries,
    endpoints_visible,
)
from notifications.services import (
    delivery_send_again,
    endpoint_delete,
    endpoint_save,
)


def _organization_id(request: HttpRequest) -> int:
    org_id = getattr(request.user, "organization_id", None)
    if org_id is None:
        raise Http404(_("Your account belongs to no organisation."))
    return int(org_id)


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    """List and add endpoints; choose who gets the new-job email."""
    org_id = _organization_id(request)
    prefs, _created = NotificationSettings.objects.get_or_create(organization_id=org_id)
    endpoint_form = WebhookEndpointForm(prefix="endpoint")
    email_form = JobEmailForm(
        organization_id=org_id,
        prefix="email",
        initial={"operators": list(prefs.job_email_operators.all())},
    )
    if request.method == "POST" and "add_endpoint" in request.POST:
        endpoint_form = WebhookEndpointForm(request.POST, prefix="endpoint")
        if endpoint_form.is_valid():
            endpoint = endpoint_form.save(commit=False)
            endpoint.organization_id = org_id
            endpoint_save(endpoint=endpoint)
            messages.success(request, _("Webhook endpoint added."))
            return redirect("notifications:settings")
    elif request.method == "POST" and "save_email" in request.POST:
        email_form = JobEmailForm(request.POST, organization_id=org_id, prefix="email")
        if email_form.is_valid():
            prefs.job_email_operators.set(email_form.cleaned_data["operators"])
            messages.success(request, _("Email recipients saved."))
            return redirect("notifications:settings")
    return render(
        request,
        "notifications/settings.html",
        {
            "endpoints": endpoints_visible(user=request.user).order_by("pk"),
            "endpoint_form": endpoint_form,
            "email_form": email_form,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One endpoint: change or delete it, and its delivery log."""
    endpoint: WebhookEndpoint = get_object_or_404(
        endpoints_visible(user=request.user), pk=pk
    )
    form = WebhookEndpointForm(instance=endpoint, prefix="endpoint")
    if request.method == "POST" and "delete" in request.POST:
        endpoint_delete(endpoint=endpoint)
        messages.success(request, _("Webhook endpoint deleted."))
        return redirect("notifications:settings")
    if request.method == "POST":
        form = WebhookEndpointForm(request.POST, instance=endpoint, prefix="endpoint")
        if form.is_valid():
            endpoint_save(endpoint=form.save(commit=False))
            messages.success(request, _("Webhook endpoint saved."))
            return redirect("notifications:endpoint", pk=endpoint.pk)
    page = Paginator(endpoint_deliveries(endpoint=endpoint), 50).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "notifications/endpoint.html",
        {"endpoint": endpoint, "form": form, "page": page},
    )


@login_required
@require_POST
def send_again(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(deliveries_visible(user=request.user), pk=pk)
    delivery_send_again(delivery=delivery)
    messages.success(
        request,
        _("%(event)s will be sent again.") % {"event": delivery.event.public_id},
    )
    return redirect("notifications:endpoint", pk=delivery.endpoint_id)
