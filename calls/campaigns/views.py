"""Operators' campaign pages (F-48, F-67) and the do-not-call list page (F-65).

Views validate, call one service or selector and render. Every view requires login
and reads through `campaigns_visible` / `dnc_visible`, so another organisation's
campaign is a 404. Buttons are CSRF-protected POSTs that redirect back with a
message; a refused start names what the opening lacks.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from agents.prompts import PLACEHOLDER
from agents.selectors import user_organization_id
from callcenter.errors import ApplicationError, ErrorCode
from calls.campaigns import services
from calls.campaigns.disclosure import disclosure_values
from calls.campaigns.forms import WEEKDAYS, CampaignForm, DoNotCallForm, ImportForm
from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall
from calls.campaigns.selectors import campaign_progress, campaigns_visible, dnc_visible
from calls.campaigns.services import EDITABLE

CONTACTS_PER_PAGE = 100
# What the disclosure rule names (`disclosure_missing`), in the operator's words.
MISSING_LABELS = {
    "business_name": gettext_lazy("事業者名"),
    "caller_name": gettext_lazy("担当者名"),
    "product": gettext_lazy("商品・サービス"),
    "purpose": gettext_lazy("勧誘目的の文言（ご案内・営業 など）"),
}
ACTIONS = {
    "start": services.campaign_start,
    "pause": services.campaign_pause,
    "resume": services.campaign_resume,
    "cancel": services.campaign_cancel,
}
REJECT_REASONS = {
    "invalid": gettext_lazy("番号が不正"),
    "duplicate": gettext_lazy("重複"),
    "dnc": gettext_lazy("発信禁止リスト"),
    "missing_variable": gettext_lazy("変数が不足"),
}
# Which buttons a status shows; the page's script shows and hides them live.
BUTTON_STATUSES = {
    "start": "draft",
    "pause": "running",
    "resume": "paused",
    "cancel": "draft running paused",
}


def _campaign_or_404(request: HttpRequest, pk: int) -> Campaign:
    campaign = campaigns_visible(user=request.user).filter(pk=pk).first()
    if campaign is None:
        raise Http404("No such campaign")
    return campaign


def contact_status_labels() -> dict[str, str]:
    return {value: str(label) for value, label in Contact.Status.choices}


def campaign_status_labels() -> dict[str, str]:
    return {value: str(label) for value, label in Campaign.Status.choices}


@login_required
@require_GET
def campaign_list_page(request: HttpRequest) -> HttpResponse:
    """Every campaign of the organisation with its status, progress and counts."""
    campaigns = list(campaigns_visible(user=request.user))
    labels = contact_status_labels()
    for campaign in campaigns:
        live = campaign_progress(campaign=campaign)
        campaign.live = live  # type: ignore[attr-defined]
        campaign.count_items = [  # type: ignore[attr-defined]
            (labels.get(status, status), n) for status, n in live["counts"].items()
        ]
    return render(request, "campaigns/campaign_list.html", {"campaigns": campaigns})


def _save_form(request: HttpRequest, form: CampaignForm) -> Campaign | None:
    campaign: Campaign = form.save(commit=False)
    if campaign.pk is None:
        campaign.organization = campaign.agent.organization
        campaign.created_by = request.user  # type: ignore[assignment]
    try:
        return services.campaign_save(campaign=campaign)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return None


@login_required
def campaign_create(request: HttpRequest) -> HttpResponse:
    """A new campaign, saved as a draft."""
    form = CampaignForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        campaign = _save_form(request, form)
        if campaign is not None:
            messages.success(request, _("キャンペーンを作成しました（下書き）。"))
            return redirect("campaigns:detail", pk=campaign.pk)
    return render(
        request, "campaigns/campaign_form.html", {"form": form, "campaign": None}
    )


@login_required
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a draft or paused campaign; others are shown, not changed."""
    campaign = _campaign_or_404(request, pk)
    if campaign.status not in EDITABLE:
        messages.error(
            request,
            _("実行中・終了したキャンペーンは編集できません。一時停止してください。"),
        )
        return redirect("campaigns:detail", pk=campaign.pk)
    form = CampaignForm(request.POST or None, instance=campaign, user=request.user)
    if request.method == "POST" and form.is_valid():
        saved = _save_form(request, form)
        if saved is not None:
            messages.success(request, _("キャンペーンを保存しました。"))
            return redirect("campaigns:detail", pk=saved.pk)
    return render(
        request, "campaigns/campaign_form.html", {"form": form, "campaign": campaign}
    )


def _detail_context(
    request: HttpRequest, campaign: Campaign, **extra: Any
) -> dict[str, Any]:
    last_call = Attempt.objects.filter(
        contact=OuterRef("pk"), call__isnull=False
    ).order_by("-number")
    contacts = (
        Contact.objects.filter(campaign=campaign)
        .annotate(
            last_call_id=Subquery(last_call.values("call_id")[:1]),
            last_summary=Subquery(last_call.values("call__summary")[:1]),
        )
        .order_by("pk")
    )
    status_filter = request.GET.get("status", "")
    if status_filter in Contact.Status.values:
        contacts = contacts.filter(status=status_filter)
    page = Paginator(contacts, CONTACTS_PER_PAGE).get_page(request.GET.get("page"))
    progress = campaign_progress(campaign=campaign)
    weekdays = dict(WEEKDAYS)
    return {
        "campaign": campaign,
        "live": progress,
        "count_rows": [
            (value, label, progress["counts"].get(value, 0))
            for value, label in Contact.Status.choices
        ],
        "days_label": "・".join(str(weekdays.get(d, d)) for d in campaign.days or []),
        "opening_preview": opening_preview(campaign),
        "page": page,
        "status_filter": status_filter,
        "contact_statuses": Contact.Status.choices,
        "contact_labels": contact_status_labels(),
        "campaign_labels": campaign_status_labels(),
        "editable": campaign.status in EDITABLE,
        "buttons": BUTTON_STATUSES,
        "import_form": ImportForm(),
        **extra,
    }


@login_required
@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The campaign page: live progress and outcomes, buttons, import, contacts."""
    campaign = _campaign_or_404(request, pk)
    return render(
        request, "campaigns/campaign_detail.html", _detail_context(request, campaign)
    )


def opening_preview(campaign: Campaign) -> str:
    """The opening with its disclosure values; contact variables left as {{name}}."""
    values = disclosure_values(campaign)
    return PLACEHOLDER.sub(
        lambda m: values.get(m.group(1)) or m.group(0), campaign.opening
    )


def disclosure_message(missing: list[str]) -> str:
    names = ", ".join(str(MISSING_LABELS.get(name, name)) for name in missing)
    return _(
        "開始できません。冒頭の名乗りに次が足りません: %(missing)s"
        "（特定商取引法 第16条）。"
    ) % {"missing": names}


@login_required
@require_POST
def campaign_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Start, pause, resume or cancel; a refusal is shown as an error message."""
    campaign = _campaign_or_404(request, pk)
    service = ACTIONS.get(action)
    if service is None:
        raise Http404("No such action")
    try:
        campaign = service(campaign=campaign)
    except ApplicationError as exc:
        if exc.code == ErrorCode.DISCLOSURE_INCOMPLETE:
            messages.error(request, disclosure_message(exc.details.get("missing", [])))
        else:
            messages.error(
                request,
                _("この操作はできません（現在の状態: %(status)s）。")
                % {"status": campaign.get_status_display()},
            )
        return redirect("campaigns:detail", pk=campaign.pk)
    messages.success(
        request,
        _("状態が「%(status)s」になりました。")
        % {"status": campaign.get_status_display()},
    )
    return redirect("campaigns:detail", pk=campaign.pk)


@login_required
@require_POST
def campaign_import(request: HttpRequest, pk: int) -> HttpResponse:
    """Import a CSV of contacts; the page shows every rejected line and why."""
    from calls.campaigns.importing import contacts_import

    campaign = _campaign_or_404(request, pk)
    form = ImportForm(request.POST, request.FILES)
    report: dict[str, Any] | None = None
    status = 200
    if form.is_valid():
        try:
            report = contacts_import(
                campaign=campaign, fileobj=form.cleaned_data["file"]
            ).as_dict()
        except ApplicationError as exc:
            form.add_error("file", exc.message)
            status = exc.http_status
        else:
            for row in report["rejected"]:
                row["reason_label"] = str(
                    REJECT_REASONS.get(row["reason"], row["reason"])
                )
            services.campaign_broadcast(campaign_id=campaign.pk)
    else:
        status = 400
    context = _detail_context(request, campaign, import_form=form, report=report)
    return render(request, "campaigns/campaign_detail.html", context, status=status)


# --- Do-not-call list (F-65) ------------------------------------------------------


@login_required
def dnc_page(request: HttpRequest) -> HttpResponse:
    """The organisation's do-not-call list: add a number, see and remove entries."""
    form = DoNotCallForm(request.POST or None)
    organization_id = user_organization_id(request.user)
    if request.method == "POST" and form.is_valid():
        if organization_id is None:
            form.add_error(None, _("組織に所属していないため追加できません。"))
        else:
            services.dnc_add(
                organization=request.user.organization,  # type: ignore[union-attr]
                phone=form.cleaned_data["phone"],
                reason=form.cleaned_data["reason"],
                source=DoNotCall.Source.OPERATOR,
                created_by=request.user,  # type: ignore[arg-type]
            )
            messages.success(request, _("発信禁止リストに追加しました。"))
            return redirect("campaigns:dnc")
    page = Paginator(dnc_visible(user=request.user), 100).get_page(
        request.GET.get("page")
    )
    return render(request, "campaigns/dnc_list.html", {"form": form, "page": page})


@login_required
@require_POST
def dnc_delete(request: HttpRequest, pk: int) -> HttpResponse:
    entry = dnc_visible(user=request.user).filter(pk=pk).first()
    if entry is None:
        raise Http404("No such entry")
    services.dnc_remove(entry=entry)
    messages.success(request, _("発信禁止リストから外しました。"))
    return redirect("campaigns:dnc")
